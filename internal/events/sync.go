package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
)

// Page is what one read of the log returns.
type Page struct {
	Events  []Event
	Next    Token
	HasMore bool
	// Ended says that some event lies in a stretch of the reader's membership that has
	// ended: the reader may be a former member of its room (chat.HydrateFor then looks).
	Ended bool
	after []Token // the token that resumes right after each event
}

// TokenAfter is the token that resumes right after the page's i-th event.
func (p *Page) TokenAfter(i int) Token { return p.after[i] }

// Current returns a token for "now": reading from it returns only events committed later.
func Current(ctx context.Context, q *db.Queries) (Token, error) {
	pos, err := q.CurrentPosition(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("current snapshot: %w", err)
	}
	return Token{Epoch: EpochOf(pos.Epoch), Since: pos.Snap}, nil
}

// Log reads the event log for one reader at a time. MaxBacklog bounds what a token may cost:
// a token with more events than that behind it in the reader's rooms (in what is left of its
// batch, or since it) is refused with apperr.FullSyncRequired, so no read scans more than
// MaxBacklog + 1 events, however old its token is.
type Log struct{ MaxBacklog int }

// tooFarBehind refuses a token with more than MaxBacklog events behind it: the client starts
// over, as for ErrFullSyncRequired.
func (l Log) tooFarBehind() error {
	return apperr.New(apperr.FullSyncRequired,
		"this sync token is more than %d events behind: start over with GET /v1/sync without since", l.MaxBacklog)
}

// Read returns up to limit events of user's rooms after tok, up to now. With nothing new,
// Next is tok itself, so an idle reader keeps its token. A token of another database epoch
// is ErrFullSyncRequired.
func (l Log) Read(ctx context.Context, q *db.Queries, user uuid.UUID, tok Token, limit int) (Page, error) {
	return l.ReadUntil(ctx, q, user, tok, "", limit)
}

// ReadUntil is Read up to the snapshot until instead of now (the WebSocket replays up to
// the batch it joined the live stream at). A token inside a batch first finishes that batch
// (up to its own end snapshot), then goes on to until in the same call.
func (l Log) ReadUntil(ctx context.Context, q *db.Queries, user uuid.UUID, tok Token, until string, limit int) (Page, error) {
	if limit < 1 || l.MaxBacklog < 1 {
		return Page{}, errors.New("events: limit and MaxBacklog must be positive")
	}
	now, err := Current(ctx, q)
	if err != nil {
		return Page{}, err
	}
	if now.Epoch != tok.Epoch {
		return Page{}, ErrFullSyncRequired
	}
	if until == "" {
		until = now.Since
	}
	page := Page{Next: tok}
	for {
		upto := tok.Upto
		if upto == "" {
			upto = until
		}
		if tok.Since == upto { // nothing can be between a snapshot and itself
			if tok.InBatch() {
				page.Next = Token{Epoch: tok.Epoch, Since: upto}
			}
			return page, nil
		}
		room := limit - len(page.Events)
		rows, err := q.SyncEvents(ctx, db.SyncEventsParams{
			UserID: user, Since: tok.Since, Upto: upto,
			AfterRoom: tok.AfterRoom, AfterSeq: tok.AfterSeq, Lim: int32(room + 1),
			MaxBacklog: int32(l.MaxBacklog),
		})
		if err != nil {
			return Page{}, fmt.Errorf("read events: %w", err)
		}
		if len(rows) > 0 && int(rows[0].Backlog) > l.MaxBacklog {
			return Page{}, l.tooFarBehind()
		}
		more := len(rows) > room
		if more {
			rows = rows[:room]
		}
		for _, r := range rows {
			e, err := fromRow(r.RoomID, r.Seq, r.Type, r.ActorID, r.UserID, r.MessageID, r.Data, r.CreatedAt)
			if err != nil {
				return Page{}, err
			}
			page.Events = append(page.Events, e)
			page.Ended = page.Ended || r.PeriodEnd != nil
			page.after = append(page.after, Token{Epoch: tok.Epoch, Since: tok.Since, Upto: upto, AfterRoom: e.RoomID, AfterSeq: e.Seq})
		}
		switch {
		case more:
			page.HasMore = true
			page.Next = page.after[len(page.after)-1]
			return page, nil
		case !tok.InBatch() && len(page.Events) == 0:
			return page, nil // nothing new: keep the token
		}
		// This window is done: continue from its end snapshot.
		page.Next = Token{Epoch: tok.Epoch, Since: upto}
		if upto == until || len(page.Events) == limit {
			page.HasMore = upto != until
			return page, nil
		}
		tok = page.Next
	}
}

// Batch is what the realtime fan-out reads at once: every room's events committed after
// the previous batch's end and visible in this one's (End), in (room, seq) order.
type Batch struct {
	Start  Token // the previous batch's end
	End    Token
	Events []Event
}

// TokenAfter is the token for a reader that got the batch's events up to e (in (room, seq)
// order, those of its rooms): the same for every reader, whatever its rooms.
func (b *Batch) TokenAfter(e Event) Token {
	return Token{Epoch: b.End.Epoch, Since: b.Start.Since, Upto: b.End.Since, AfterRoom: e.RoomID, AfterSeq: e.Seq}
}

// tailPage bounds the rows of one read of a batch; a batch reads as many pages as it has.
const tailPage = 1000

// Tail reads the next batch after from, in the snapshot of q's transaction (run it in
// WithSnapshot: REPEATABLE READ). When the epoch changed since from, the batch has no
// events and End is in the new epoch: the caller starts over.
func Tail(ctx context.Context, q *db.Queries, from Token) (Batch, error) {
	end, err := Current(ctx, q)
	if err != nil {
		return Batch{}, err
	}
	b := Batch{Start: from, End: end}
	if end.Epoch != from.Epoch {
		return b, nil
	}
	var afterRoom uuid.UUID
	var afterSeq int64
	for {
		rows, err := q.TailEvents(ctx, db.TailEventsParams{Since: from.Since, AfterRoom: afterRoom, AfterSeq: afterSeq, Lim: tailPage})
		if err != nil {
			return Batch{}, fmt.Errorf("tail events: %w", err)
		}
		for _, r := range rows {
			e, err := fromRow(r.RoomID, r.Seq, r.Type, r.ActorID, r.UserID, r.MessageID, r.Data, r.CreatedAt)
			if err != nil {
				return Batch{}, err
			}
			b.Events = append(b.Events, e)
		}
		if len(rows) < tailPage {
			return b, nil
		}
		last := rows[len(rows)-1]
		afterRoom, afterSeq = last.RoomID, last.Seq
	}
}
