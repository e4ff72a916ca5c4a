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
		page, err := events.Read(ctx, q, user, tok, limit)
		if err != nil {
			return err
		}
		res.NextToken, res.HasMore = s.tokens.Encode(page.Next), page.HasMore
		res.Events, err = s.Hydrate(ctx, q, user, page.Events)
		return err
	})
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync: %w", err)
	}
	return res, nil
}

// Hydrate attaches the messages and rooms that events refer to, in two queries, as viewer
// sees them (uuid.Nil for everyone).
func (s *Service) Hydrate(ctx context.Context, q *db.Queries, viewer uuid.UUID, evs []events.Event) ([]Event, error) {
	var msgIDs, roomIDs []uuid.UUID
	for _, e := range evs {
		if e.MessageID != nil {
			msgIDs = append(msgIDs, *e.MessageID)
		}
		if e.Type == events.RoomUpdated || e.Type == events.RoomDeleted {
			roomIDs = append(roomIDs, e.RoomID)
		}
	}
	msgs, err := s.byID(ctx, q, viewer, msgIDs)
	if err != nil {
		return nil, err
	}
	rms, err := s.rooms.ByID(ctx, q, roomIDs)
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = Event{Event: e}
		if e.MessageID != nil {
			if m, ok := msgs[*e.MessageID]; ok {
				out[i].Message = &m
			}
		}
		if r, ok := rms[e.RoomID]; ok && (e.Type == events.RoomUpdated || e.Type == events.RoomDeleted) {
			out[i].Room = &r
		}
	}
	return out, nil
}
