package events

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
)

// Token is where a reader is in the log of all its rooms. Since is a PostgreSQL snapshot:
// every event whose transaction is visible in it has been delivered, and nothing else. While
// a reader pages through one batch, Upto pins the batch's end snapshot and AfterRoom/AfterSeq
// say how far into it (in (room, seq) order) the reader got.
//
// Unlike a "highest id seen" cursor, a snapshot knows which transactions were still in
// flight when it was taken, so an event that commits late (with a lower id or xid than ones
// already delivered) is still delivered, exactly once.
//
// Seen records what a WebSocket delivered live beyond Since: per room, every event up to
// that seq (live delivery is contiguous per room). Reads skip those events.
type Token struct {
	Since     string              `json:"s"`
	Upto      string              `json:"u,omitempty"`
	AfterRoom uuid.UUID           `json:"r,omitempty"`
	AfterSeq  int64               `json:"q,omitempty"`
	Seen      map[uuid.UUID]int64 `json:"v,omitempty"`
}

// WithSeen returns a copy of t that also records room delivered up to seq.
func (t Token) WithSeen(room uuid.UUID, seq int64) Token {
	seen := make(map[uuid.UUID]int64, len(t.Seen)+1)
	for r, s := range t.Seen {
		seen[r] = s
	}
	seen[room] = seq
	t.Seen = seen
	return t
}

func (t Token) seenArrays() ([]uuid.UUID, []int64) {
	rooms := make([]uuid.UUID, 0, len(t.Seen))
	seqs := make([]int64, 0, len(t.Seen))
	for r, s := range t.Seen {
		rooms = append(rooms, r)
		seqs = append(seqs, s)
	}
	return rooms, seqs
}

const tokenKind = "sync"

// maxSeen bounds the seen entries of a token (one per room at most).
const maxSeen = 1000

// snapshotPattern is the text form of pg_snapshot: xmin:xmax:xip,xip,…
var snapshotPattern = regexp.MustCompile(`^\d{1,20}:\d{1,20}:(\d{1,20}(,\d{1,20})*)?$`)

// Tokens encodes and decodes sync tokens.
type Tokens struct{ signer *cursor.Signer }

// NewTokens returns a codec signing with signer.
func NewTokens(signer *cursor.Signer) Tokens { return Tokens{signer: signer} }

var errBadToken = apperr.New(apperr.Invalid, "the sync token is malformed or was altered; start over without `since`")

// Decode checks and decodes a token.
func (t Tokens) Decode(s string) (Token, error) {
	var tok Token
	if err := t.signer.Decode(tokenKind, s, &tok); err != nil {
		return Token{}, errBadToken
	}
	if !snapshotPattern.MatchString(tok.Since) || (tok.Upto != "" && !snapshotPattern.MatchString(tok.Upto)) || len(tok.Seen) > maxSeen {
		return Token{}, errBadToken
	}
	return tok, nil
}

// Encode signs a token.
func (t Tokens) Encode(tok Token) string { return t.signer.Encode(tokenKind, tok) }

// Page is what one read of the log returns.
type Page struct {
	Events  []Event
	Next    Token
	HasMore bool
}

// Current returns a token for "now": reading from it returns only events committed later.
func Current(ctx context.Context, q *db.Queries) (Token, error) {
	snap, err := q.CurrentSnapshot(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("current snapshot: %w", err)
	}
	return Token{Since: snap}, nil
}

// Read returns up to limit events of user's rooms after tok. With nothing new, Next is tok
// itself, so an idle reader keeps its token.
func Read(ctx context.Context, q *db.Queries, user uuid.UUID, tok Token, limit int) (Page, error) {
	if limit < 1 {
		return Page{}, errors.New("events: limit must be positive")
	}
	upto := tok.Upto
	if upto == "" {
		snap, err := q.CurrentSnapshot(ctx)
		if err != nil {
			return Page{}, fmt.Errorf("current snapshot: %w", err)
		}
		upto = snap
	}
	seenRooms, seenSeqs := tok.seenArrays()
	rows, err := q.SyncEvents(ctx, db.SyncEventsParams{
		UserID: user, Since: tok.Since, Upto: upto,
		AfterRoom: tok.AfterRoom, AfterSeq: tok.AfterSeq,
		SeenRooms: seenRooms, SeenSeqs: seenSeqs, Lim: int32(limit + 1),
	})
	if err != nil {
		return Page{}, fmt.Errorf("read events: %w", err)
	}
	page := Page{HasMore: len(rows) > limit}
	if page.HasMore {
		rows = rows[:limit]
	}
	for _, r := range rows {
		e, err := fromRow(r.RoomID, r.Seq, r.Type, r.ActorID, r.UserID, r.MessageID, r.Data, r.CreatedAt)
		if err != nil {
			return Page{}, err
		}
		page.Events = append(page.Events, e)
	}
	switch {
	case page.HasMore:
		last := page.Events[len(page.Events)-1]
		page.Next = Token{Since: tok.Since, Upto: upto, AfterRoom: last.RoomID, AfterSeq: last.Seq, Seen: tok.Seen}
	case tok.Upto == "" && len(page.Events) == 0:
		page.Next = tok
	default: // this batch is done: continue from its end snapshot
		page.Next, err = advance(ctx, q, tok.Seen, upto)
		if err != nil {
			return Page{}, err
		}
	}
	return page, nil
}

// advance returns a token at snapshot snap, keeping only the seen entries it does not cover.
func advance(ctx context.Context, q *db.Queries, seen map[uuid.UUID]int64, snap string) (Token, error) {
	next := Token{Since: snap}
	if len(seen) == 0 {
		return next, nil
	}
	rooms, seqs := Token{Seen: seen}.seenArrays()
	rows, err := q.SeenStillNeeded(ctx, db.SeenStillNeededParams{SeenRooms: rooms, SeenSeqs: seqs, Snap: snap})
	if err != nil {
		return Token{}, fmt.Errorf("compact token: %w", err)
	}
	for _, r := range rows {
		next = next.WithSeen(r.RoomID, r.Seq)
	}
	return next, nil
}

// Catchup is where a live reader stands after reading the log up to a snapshot: the token to
// resume from and, per room of the reader, the seq of the latest event in that snapshot.
type Catchup struct {
	Token   Token
	LastSeq map[uuid.UUID]int64
}

// Position returns, in the snapshot of q's transaction (run it in WithSnapshot), the current
// token for user and each of their rooms' latest seq. seen carries over entries the snapshot
// does not cover.
func Position(ctx context.Context, q *db.Queries, user uuid.UUID, seen map[uuid.UUID]int64) (Catchup, error) {
	snap, err := q.CurrentSnapshot(ctx)
	if err != nil {
		return Catchup{}, fmt.Errorf("current snapshot: %w", err)
	}
	tok, err := advance(ctx, q, seen, snap)
	if err != nil {
		return Catchup{}, err
	}
	rows, err := q.MemberRoomSeqs(ctx, user)
	if err != nil {
		return Catchup{}, fmt.Errorf("room positions: %w", err)
	}
	c := Catchup{Token: tok, LastSeq: make(map[uuid.UUID]int64, len(rows))}
	for _, r := range rows {
		c.LastSeq[r.ID] = r.LastSeq
	}
	for r, s := range tok.Seen {
		if s > c.LastSeq[r] {
			c.LastSeq[r] = s
		}
	}
	return c, nil
}

// Range returns room's events from..to (inclusive), in seq order.
func Range(ctx context.Context, q *db.Queries, room uuid.UUID, from, to int64) ([]Event, error) {
	rows, err := q.EventRange(ctx, db.EventRangeParams{RoomID: room, FromSeq: from, ToSeq: to})
	if err != nil {
		return nil, fmt.Errorf("event range: %w", err)
	}
	out := make([]Event, 0, len(rows))
	for _, r := range rows {
		e, err := fromRow(r.RoomID, r.Seq, r.Type, r.ActorID, r.UserID, r.MessageID, r.Data, r.CreatedAt)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
