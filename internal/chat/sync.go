package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// Event is a room event with what it refers to, as of the read: a message's current state
// (a tombstone once deleted, whichever event refers to it) and, for room events, the room.
type Event struct {
	events.Event
	Message *Message
	Room    *rooms.Room
}

// SyncResult is one answer of GET /v1/sync.
type SyncResult struct {
	Events    []Event
	NextToken string
	HasMore   bool
	// Rooms is set only for a fresh sync (no since): the caller's rooms.
	Rooms []rooms.Room
}

// MaxSyncWait bounds a long-poll.
const MaxSyncWait = 30 * time.Second

// Sync returns the caller's events after since (or, without since, the current token and
// the caller's rooms). With wait > 0 and nothing new it waits for the next event, up to wait.
func (s *Service) Sync(ctx context.Context, user uuid.UUID, since string, limit int, wait time.Duration) (SyncResult, error) {
	if since == "" {
		return s.freshSync(ctx, user)
	}
	tok, err := s.tokens.Decode(since)
	if err != nil {
		return SyncResult{}, err
	}
	if wait <= 0 {
		return s.read(ctx, user, tok, limit)
	}
	if wait > MaxSyncWait {
		wait = MaxSyncWait
	}
	// Watch before the first read: a commit between the read and the wait still wakes us.
	roomIDs, err := db.New(s.pool).MemberRoomIDs(ctx, user)
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync: %w", err)
	}
	wake, stop := s.hub.Watch(user, roomIDs)
	defer stop()
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		res, err := s.read(ctx, user, tok, limit)
		if err != nil || len(res.Events) > 0 || res.HasMore {
			return res, err
		}
		if !events.Wait(waitCtx, wake) {
			return res, nil // timed out: an empty page with the same token
		}
	}
}

func (s *Service) freshSync(ctx context.Context, user uuid.UUID) (SyncResult, error) {
	var res SyncResult
	err := postgres.WithSnapshot(ctx, s.pool, func(q *db.Queries) error {
		tok, err := events.Current(ctx, q)
		if err != nil {
			return err
		}
		res.NextToken = s.tokens.Encode(tok)
		res.Rooms, err = s.rooms.Joined(ctx, q, user)
		return err
	})
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync: %w", err)
	}
	res.Events = []Event{}
	return res, nil
}

func (s *Service) read(ctx context.Context, user uuid.UUID, tok events.Token, limit int) (SyncResult, error) {
	var res SyncResult
	err := postgres.WithSnapshot(ctx, s.pool, func(q *db.Queries) error {
		page, err := s.log.Read(ctx, q, user, tok, limit)
		if err != nil {
			return err
		}
		res.NextToken, res.HasMore = s.tokens.Encode(page.Next), page.HasMore
		res.Events, err = s.HydrateFor(ctx, q, user, user, page)
		return err
	})
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync: %w", err)
	}
	return res, nil
}

// Hydrate attaches the messages and rooms that events refer to, as of the read, as viewer
// sees them (uuid.Nil for everyone).
func (s *Service) Hydrate(ctx context.Context, q *db.Queries, viewer uuid.UUID, evs []events.Event) ([]Event, error) {
	return s.HydrateAsOf(ctx, q, viewer, evs, nil)
}

// HydrateFor is Hydrate for a page of what reader receives: in a room reader is no longer a
// member of, each event shows the message and the room as they were when reader's membership
// ended, so nothing that happened after reaches them through an earlier event. Only a page
// with an event from an ended stretch of membership costs the query that finds out.
func (s *Service) HydrateFor(ctx context.Context, q *db.Queries, reader, viewer uuid.UUID, page events.Page) ([]Event, error) {
	if !page.Ended {
		return s.Hydrate(ctx, q, viewer, page.Events)
	}
	bounds, err := formerMemberBounds(ctx, q, reader, page.Events)
	if err != nil {
		return nil, err
	}
	return s.HydrateAsOf(ctx, q, viewer, page.Events, bounds)
}

// formerMemberBounds returns, for each event, the seq that reader's last stretch of its room's
// log ended at if reader is no longer a member of the room, or 0 (nil when all are 0).
func formerMemberBounds(ctx context.Context, q *db.Queries, reader uuid.UUID, evs []events.Event) ([]int64, error) {
	seen := map[uuid.UUID]bool{}
	var roomIDs []uuid.UUID
	for _, e := range evs {
		if !seen[e.RoomID] && (e.MessageID != nil || hasRoom(e)) {
			seen[e.RoomID] = true
			roomIDs = append(roomIDs, e.RoomID)
		}
	}
	if len(roomIDs) == 0 {
		return nil, nil
	}
	ends, err := q.MembershipEnds(ctx, db.MembershipEndsParams{UserID: reader, RoomIds: roomIDs})
	if err != nil || len(ends) == 0 {
		return nil, err
	}
	end := make(map[uuid.UUID]int64, len(ends))
	for _, r := range ends {
		end[r.RoomID] = r.ToSeq
	}
	bounds := make([]int64, len(evs))
	for i, e := range evs {
		bounds[i] = end[e.RoomID]
	}
	return bounds, nil
}

func hasRoom(e events.Event) bool {
	return e.Type == events.RoomUpdated || e.Type == events.RoomDeleted
}

// HydrateAsOf is Hydrate where bounds[i] > 0 renders event i's message and room as they were
// right after seq bounds[i] of its room (bounds may be nil: all as of the read).
func (s *Service) HydrateAsOf(ctx context.Context, q *db.Queries, viewer uuid.UUID, evs []events.Event, bounds []int64) ([]Event, error) {
	bound := func(i int) int64 {
		if bounds == nil {
			return 0
		}
		return bounds[i]
	}
	var msgIDs, roomIDs []uuid.UUID
	var msgsAt, roomsAt []events.AsOf
	for i, e := range evs {
		b := bound(i)
		if e.MessageID != nil {
			if b > 0 {
				msgsAt = append(msgsAt, events.AsOf{ID: *e.MessageID, Seq: b})
			} else {
				msgIDs = append(msgIDs, *e.MessageID)
			}
		}
		if hasRoom(e) {
			if b > 0 {
				roomsAt = append(roomsAt, events.AsOf{ID: e.RoomID, Seq: b})
			} else {
				roomIDs = append(roomIDs, e.RoomID)
			}
		}
	}
	msgs, err := s.byID(ctx, q, viewer, msgIDs)
	if err != nil {
		return nil, err
	}
	oldMsgs, err := s.byIDAsOf(ctx, q, viewer, msgsAt)
	if err != nil {
		return nil, err
	}
	rms, err := s.rooms.ByID(ctx, q, roomIDs)
	if err != nil {
		return nil, err
	}
	oldRooms, err := s.rooms.ByIDAsOf(ctx, q, roomsAt)
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = Event{Event: e}
		b := bound(i)
		if e.MessageID != nil {
			m, ok := msgs[*e.MessageID]
			if b > 0 {
				m, ok = oldMsgs[events.AsOf{ID: *e.MessageID, Seq: b}]
			}
			if ok {
				out[i].Message = &m
			}
		}
		if hasRoom(e) {
			r, ok := rms[e.RoomID]
			if b > 0 {
				r, ok = oldRooms[events.AsOf{ID: e.RoomID, Seq: b}]
			}
			if ok {
				out[i].Room = &r
			}
		}
	}
	return out, nil
}
