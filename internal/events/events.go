// Package events is the room event log: appending an event with the room's next seq inside
// the caller's transaction, reading "everything since a token" exactly, and waking waiters
// when something new is committed.
package events

import (
	"context"
	"encoding/json"
	"fmt"
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
