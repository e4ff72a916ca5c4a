// Package events is the room event log: appending an event with the room's next seq inside
// the caller's transaction, reading "everything since a token" exactly, and waking waiters
// when something new is committed.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/db"
)

// Event types. Keep in step with EventType in api/openapi.yaml.
const (
	MessageCreated  = "message.created"
	MessageEdited   = "message.edited"
	MessageDeleted  = "message.deleted"
	ReactionAdded   = "reaction.added"
	ReactionRemoved = "reaction.removed"
	MemberJoined    = "member.joined"
	MemberLeft      = "member.left"
	MemberInvited   = "member.invited"
	MemberKicked    = "member.kicked"
	MemberBanned    = "member.banned"
	MemberUnbanned  = "member.unbanned"
	MemberUpdated   = "member.updated"
	RoomUpdated     = "room.updated"
	RoomDeleted     = "room.deleted"
	ReadUpdated     = "read.updated"
	Tip             = "tip"
)

// Event is one entry of a room's log.
type Event struct {
	RoomID    uuid.UUID
	Seq       int64
	Type      string
	ActorID   uuid.UUID
	UserID    *uuid.UUID // whom a membership or read event is about
	MessageID *uuid.UUID
	Data      Data
	CreatedAt time.Time
}

// Data is the small, type-specific part of an event, stored as JSON.
type Data struct {
	Role        string     `json:"role,omitempty"`
	MutedUntil  *time.Time `json:"muted_until,omitempty"`
	DisplayName string     `json:"display_name,omitempty"`
	Emoji       string     `json:"emoji,omitempty"`
	ReadSeq     int64      `json:"read_seq,omitempty"`
	// A tip: its id, amount and message (UserID is the recipient, ActorID the sender).
	TipID   *uuid.UUID `json:"tip_id,omitempty"`
	Amount  int64      `json:"amount,omitempty"`
	Message string     `json:"message,omitempty"`
}

// Append writes e with seq, which the caller took with LockRoomForEvent in the same
// transaction (so the room's row lock orders the commit).
func Append(ctx context.Context, q *db.Queries, seq int64, e Event) (Event, error) {
	data, err := json.Marshal(e.Data)
	if err != nil {
		return Event{}, fmt.Errorf("encode event data: %w", err)
	}
	if string(data) == "{}" {
		data = nil
	}
	row, err := q.InsertEvent(ctx, db.InsertEventParams{
		RoomID: e.RoomID, Seq: seq, Type: e.Type, ActorID: e.ActorID,
		UserID: e.UserID, MessageID: e.MessageID, Data: data,
	})
	if err != nil {
		return Event{}, fmt.Errorf("append %s event: %w", e.Type, err)
	}
	return fromRow(row.RoomID, row.Seq, row.Type, row.ActorID, row.UserID, row.MessageID, row.Data, row.CreatedAt)
}

func fromRow(roomID uuid.UUID, seq int64, typ string, actor uuid.UUID, user, msg *uuid.UUID, data []byte, at time.Time) (Event, error) {
	e := Event{RoomID: roomID, Seq: seq, Type: typ, ActorID: actor, UserID: user, MessageID: msg, CreatedAt: at}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &e.Data); err != nil {
			return Event{}, fmt.Errorf("decode event data: %w", err)
		}
	}
	return e, nil
}

// AsOf names a room, or a message by ID, as it was right after seq Seq of its room.
type AsOf struct {
	ID  uuid.UUID
	Seq int64
}

// Split returns the distinct entries of at as two parallel slices, for a query's arrays.
func Split(at []AsOf) ([]uuid.UUID, []int64) {
	seen := make(map[AsOf]bool, len(at))
	ids, seqs := make([]uuid.UUID, 0, len(at)), make([]int64, 0, len(at))
	for _, a := range at {
		if !seen[a] {
			seen[a] = true
			ids, seqs = append(ids, a.ID), append(seqs, a.Seq)
		}
	}
	return ids, seqs
}

// IsRemoval reports whether e ends its user's membership of the room.
func IsRemoval(e Event) bool {
	return e.Type == MemberLeft || e.Type == MemberKicked || e.Type == MemberBanned
}

// RemovalBounds returns, for each of evs (in (room, seq) order), the seq of the first event
// of its room at or after it in evs that ends someone's membership, or 0 if none does.
// Rendered as of that seq, an event shows the user removed there nothing that happened
// after; the members who stay receive the later events, each with the state after it. It is
// nil when no event of evs is a removal.
func RemovalBounds(evs []Event) []int64 {
	if !slices.ContainsFunc(evs, IsRemoval) {
		return nil
	}
	out := make([]int64, len(evs))
	var room uuid.UUID
	var next int64
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.RoomID != room {
			room, next = e.RoomID, 0
		}
		if IsRemoval(e) {
			next = e.Seq
		}
		out[i] = next
	}
	return out
}
