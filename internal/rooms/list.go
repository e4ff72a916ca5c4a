package rooms

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/events"
)

// Page is one page of a list and the cursor of the next ("" on the last page).
type Page[T any] struct {
	Items      []T
	NextCursor string
}

// Scopes of the room list.
const (
	ScopeJoined  = "joined"
	ScopePublic  = "public"
	ScopeInvited = "invited"
)

type timeCursor struct {
	T  time.Time `json:"t"`
	ID uuid.UUID `json:"i"`
}

type nameCursor struct {
	Name string    `json:"n"`
	ID   uuid.UUID `json:"i"`
}

var errBadCursor = &apperr.Error{Code: apperr.Invalid, Message: "the cursor is malformed or belongs to another list",
	Fields: []apperr.FieldError{{Field: "query.cursor", Message: "is not a cursor of this list"}}}

func (s *Service) decode(kind, token string, v any) error {
	if token == "" {
		return nil
	}
	if err := s.cursors.Decode(kind, token, v); err != nil {
		return errBadCursor
	}
	return nil
}

// List returns a page of rooms in a scope; query filters public rooms by name prefix.
func (s *Service) List(ctx context.Context, caller uuid.UUID, scope, query, cursorToken string, limit int) (Page[Room], error) {
	q := db.New(s.pool)
	kind := "rooms:" + scope
	var page Page[Room]
	switch scope {
	case ScopeJoined, "":
		kind = "rooms:" + ScopeJoined
		var c timeCursor
		if err := s.decode(kind, cursorToken, &c); err != nil {
			return page, err
		}
		rows, err := q.ListJoinedRooms(ctx, db.ListJoinedRoomsParams{UserID: caller, AfterJoinedAt: c.T, AfterRoomID: c.ID, Lim: int32(limit + 1)})
		if err != nil {
			return page, fmt.Errorf("list joined rooms: %w", err)
		}
		for i, r := range rows {
			if i == limit {
				last := rows[limit-1]
				page.NextCursor = s.cursors.Encode(kind, timeCursor{T: last.JoinedAt, ID: last.Room.ID})
				break
			}
			room := FromRow(r.Room)
			room.Membership = &Membership{Role: r.Role, ReadSeq: r.ReadSeq, UnreadCount: r.UnreadCount, JoinedAt: r.JoinedAt, MutedUntil: activeMute(r.MutedUntil)}
			page.Items = append(page.Items, room)
		}
	case ScopePublic:
		var c nameCursor
		if err := s.decode(kind, cursorToken, &c); err != nil {
			return page, err
		}
		rows, err := q.ListPublicRooms(ctx, db.ListPublicRoomsParams{
			Prefix: likePrefix(strings.ToLower(strings.TrimSpace(query))), AfterName: c.Name, AfterID: c.ID, Lim: int32(limit + 1),
		})
		if err != nil {
			return page, fmt.Errorf("list public rooms: %w", err)
		}
		for i, r := range rows {
			if i == limit {
				last := rows[limit-1]
				page.NextCursor = s.cursors.Encode(kind, nameCursor{Name: *last.NameKey, ID: last.ID})
				break
			}
			page.Items = append(page.Items, FromRow(r))
		}
	case ScopeInvited:
		var c timeCursor
		if err := s.decode(kind, cursorToken, &c); err != nil {
			return page, err
		}
		rows, err := q.ListInvitedRooms(ctx, db.ListInvitedRoomsParams{UserID: caller, AfterCreatedAt: c.T, AfterRoomID: c.ID, Lim: int32(limit + 1)})
		if err != nil {
			return page, fmt.Errorf("list invited rooms: %w", err)
		}
		for i, r := range rows {
			if i == limit {
				last := rows[limit-1]
				page.NextCursor = s.cursors.Encode(kind, timeCursor{T: last.InvitedAt, ID: last.Room.ID})
				break
			}
			page.Items = append(page.Items, FromRow(r.Room))
		}
	default:
		return page, apperr.New(apperr.Invalid, "unknown scope %q", scope)
	}
	return page, nil
}

// likePrefix makes a LIKE pattern matching strings that start with prefix literally.
func likePrefix(prefix string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(prefix) + "%"
}

// ListMembers returns a page of a room's members, in joining order (members only).
func (s *Service) ListMembers(ctx context.Context, roomID, caller uuid.UUID, cursorToken string, limit int) (Page[MemberInfo], error) {
	q := db.New(s.pool)
	var page Page[MemberInfo]
	if _, err := s.RequireMember(ctx, q, roomID, caller); err != nil {
		return page, err
	}
	kind := "members:" + roomID.String()
	var c timeCursor
	if err := s.decode(kind, cursorToken, &c); err != nil {
		return page, err
	}
	rows, err := q.ListMembers(ctx, db.ListMembersParams{RoomID: roomID, AfterJoinedAt: c.T, AfterUserID: c.ID, Lim: int32(limit + 1)})
	if err != nil {
		return page, fmt.Errorf("list members: %w", err)
	}
	for i, r := range rows {
		if i == limit {
			last := rows[limit-1]
			page.NextCursor = s.cursors.Encode(kind, timeCursor{T: last.JoinedAt, ID: last.UserID})
			break
		}
		page.Items = append(page.Items, MemberInfo{UserID: r.UserID, DisplayName: r.DisplayName, Role: r.Role, JoinedAt: r.JoinedAt, MutedUntil: activeMute(r.MutedUntil)})
	}
	return page, nil
}

// ByID returns rooms by id (including deleted ones, which sync still reports), for
// rendering events.
func (s *Service) ByID(ctx context.Context, q *db.Queries, ids []uuid.UUID) (map[uuid.UUID]Room, error) {
	out := make(map[uuid.UUID]Room, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.RoomsByID(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("rooms by id: %w", err)
	}
	for _, r := range rows {
		out[r.ID] = FromRow(r)
	}
	return out, nil
}

// Joined returns the summary of all the caller's rooms (for a fresh sync), oldest first.
func (s *Service) Joined(ctx context.Context, q *db.Queries, caller uuid.UUID) ([]Room, error) {
	rows, err := q.ListJoinedRooms(ctx, db.ListJoinedRoomsParams{UserID: caller, Lim: MaxRoomsPerUser})
	if err != nil {
		return nil, fmt.Errorf("joined rooms: %w", err)
	}
	out := make([]Room, 0, len(rows))
	for _, r := range rows {
		room := FromRow(r.Room)
		room.Membership = &Membership{Role: r.Role, ReadSeq: r.ReadSeq, UnreadCount: r.UnreadCount, JoinedAt: r.JoinedAt, MutedUntil: activeMute(r.MutedUntil)}
		out = append(out, room)
	}
	return out, nil
}

// MaxRoomsPerUser is how many rooms one account can be a member of (creating a room makes
// its owner one). It bounds a fresh sync's room summary, which lists every joined room.
const MaxRoomsPerUser = 1000

// ByIDAsOf returns each room of at as it was right after its seq: the settings then, the
// members whose stretch of the log covered that seq, and that seq as the room's last.
func (s *Service) ByIDAsOf(ctx context.Context, q *db.Queries, at []events.AsOf) (map[events.AsOf]Room, error) {
	out := make(map[events.AsOf]Room, len(at))
	if len(at) == 0 {
		return out, nil
	}
	ids, seqs := events.Split(at)
	current, err := s.ByID(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	rows, err := q.RoomsAsOf(ctx, db.RoomsAsOfParams{Ids: ids, Bounds: seqs})
	if err != nil {
		return nil, fmt.Errorf("rooms as of: %w", err)
	}
	for _, r := range rows {
		room, ok := current[r.RoomID]
		if !ok {
			continue
		}
		if r.Revised {
			room.Name, room.Topic, room.SlowModeSeconds, room.Archived = r.Name, r.Topic, int(r.SlowModeSeconds), r.ArchivedAt != nil
		}
		room.MemberCount, room.LastSeq = int(r.MemberCount), r.Bound
		out[events.AsOf{ID: r.RoomID, Seq: r.Bound}] = room
	}
	return out, nil
}
