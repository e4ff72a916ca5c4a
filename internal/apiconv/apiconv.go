// Package apiconv converts domain values to the contract's types (gen/api), for the HTTP
// handlers and the WebSocket gateway alike.
package apiconv

import (
	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// Room converts a room.
func Room(r rooms.Room) api.Room {
	out := api.Room{
		Id: r.ID, Name: r.Name, Topic: r.Topic, Visibility: api.Visibility(r.Visibility), EntryPrice: r.EntryPrice,
		OwnerId: r.OwnerID, SlowModeSeconds: r.SlowModeSeconds, Archived: r.Archived, LastSeq: r.LastSeq,
		MemberCount: r.MemberCount, CreatedAt: r.CreatedAt,
	}
	if m := r.Membership; m != nil {
		out.Membership = &api.Membership{Role: api.Role(m.Role), ReadSeq: m.ReadSeq, UnreadCount: m.UnreadCount, JoinedAt: m.JoinedAt, MutedUntil: m.MutedUntil}
	}
	return out
}

// Member converts a member.
func Member(m rooms.MemberInfo) api.Member {
	return api.Member{UserId: m.UserID, DisplayName: m.DisplayName, Role: api.Role(m.Role), JoinedAt: m.JoinedAt, MutedUntil: m.MutedUntil}
}

// Message converts a message.
func Message(m chat.Message) api.Message {
	out := api.Message{
		Id: m.ID, RoomId: m.RoomID, Seq: m.Seq, ClientMsgId: m.ClientMsgID, AuthorId: m.AuthorID,
		Body: m.Body, ReplyTo: m.ReplyTo, Deleted: m.Deleted, CreatedAt: m.CreatedAt, EditedAt: m.EditedAt,
		Reactions: make([]api.ReactionCount, len(m.Reactions)),
	}
	for i, r := range m.Reactions {
		out.Reactions[i] = api.ReactionCount{Emoji: r.Emoji, Count: r.Count, Me: r.Me}
	}
	return out
}

// Event converts a hydrated room event.
func Event(e chat.Event) api.RoomEvent {
	out := api.RoomEvent{
		Type: api.EventType(e.Type), RoomId: e.RoomID, Seq: e.Seq, ActorId: e.ActorID,
		CreatedAt: e.CreatedAt, UserId: e.UserID,
	}
	if e.Message != nil {
		m := Message(*e.Message)
		out.Message = &m
	}
	if e.Room != nil {
		r := Room(*e.Room)
		out.Room = &r
	}
	d := e.Data
	if d.Role != "" && e.UserID != nil {
		out.Member = &api.Member{UserId: *e.UserID, DisplayName: d.DisplayName, Role: api.Role(d.Role), JoinedAt: e.CreatedAt, MutedUntil: d.MutedUntil}
	}
	if d.Emoji != "" && e.MessageID != nil {
		out.Reaction = &api.Reaction{MessageId: *e.MessageID, Emoji: d.Emoji}
	}
	if e.Type == events.Tip && d.TipID != nil && e.UserID != nil {
		out.Tip = &api.RoomTip{Id: *d.TipID, RoomId: e.RoomID, SenderId: e.ActorID, RecipientId: *e.UserID,
			Amount: d.Amount, Message: d.Message, Seq: e.Seq, CreatedAt: e.CreatedAt}
	}
	if d.ReadSeq > 0 {
		out.ReadSeq = &d.ReadSeq
	}
	return out
}
