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
type Token struct {
	Since     string    `json:"s"`
	Upto      string    `json:"u,omitempty"`
	AfterRoom uuid.UUID `json:"r,omitempty"`
	AfterSeq  int64     `json:"q,omitempty"`
}

const tokenKind = "sync"

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
	if !snapshotPattern.MatchString(tok.Since) || (tok.Upto != "" && !snapshotPattern.MatchString(tok.Upto)) {
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
	rows, err := q.SyncEvents(ctx, db.SyncEventsParams{
		UserID: user, Since: tok.Since, Upto: upto,
		AfterRoom: tok.AfterRoom, AfterSeq: tok.AfterSeq, Lim: int32(limit + 1),
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
		page.Next = Token{Since: tok.Since, Upto: upto, AfterRoom: last.RoomID, AfterSeq: last.Seq}
	case tok.Upto != "":
		page.Next = Token{Since: tok.Upto} // this batch is done
	case len(page.Events) == 0:
		page.Next = tok
	default:
		page.Next = Token{Since: upto}
	}
	return page, nil
}
