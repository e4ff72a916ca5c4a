// Package rooms holds rooms and membership: roles, invitations, bans, mutes, slow mode and
// archiving, and the rule every room-scoped request goes through — deny by default.
package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Roles, ranked owner > moderator > member.
const (
	Owner     = "owner"
	Moderator = "moderator"
	Member    = "member"
)

// Rank orders roles; nobody acts on a rank at or above their own.
func Rank(role string) int {
	switch role {
	case Owner:
		return 3
	case Moderator:
		return 2
	case Member:
		return 1
	}
	return 0
}

// Room is a room as callers see it; Membership is set when the caller is a member.
type Room struct {
	ID              uuid.UUID
	Name            string
	Topic           string
	Visibility      string
	EntryPrice      int64
	OwnerID         uuid.UUID
	SlowModeSeconds int
	MemberCount     int
	LastSeq         int64
	Archived        bool
	CreatedAt       time.Time
	Membership      *Membership
}

// Membership is a user's standing in a room.
type Membership struct {
	Role        string
	ReadSeq     int64
	UnreadCount int64
	JoinedAt    time.Time
	MutedUntil  *time.Time
}

// MemberInfo is an entry of a room's member list.
type MemberInfo struct {
	UserID      uuid.UUID
	DisplayName string
	Role        string
	JoinedAt    time.Time
	MutedUntil  *time.Time
}

// FromRow converts a room row.
func FromRow(r db.Room) Room {
	return Room{
		ID: r.ID, Name: r.Name, Topic: r.Topic, Visibility: r.Visibility, EntryPrice: r.EntryPrice,
		OwnerID: r.OwnerID, SlowModeSeconds: int(r.SlowModeSeconds), MemberCount: int(r.MemberCount),
		LastSeq: r.LastSeq, Archived: r.ArchivedAt != nil, CreatedAt: r.CreatedAt,
	}
}

// Service implements rooms and membership.
type Service struct {
	pool    *pgxpool.Pool
	broker  events.Broker
	cursors *cursor.Signer
	logger  *slog.Logger
	entry   EntryCharger
}

// EntryCharger takes a paid room's entry price from a joining user, inside the join's
// transaction q (the room is locked): it fails, and the join with it, when the user cannot
// pay. The wallet implements it.
type EntryCharger interface {
	ChargeEntry(ctx context.Context, q *db.Queries, room db.Room, user uuid.UUID) error
}

// SetEntryCharger enables joining paid rooms; without one, joining them fails.
func (s *Service) SetEntryCharger(c EntryCharger) { s.entry = c }

// NewService wires the rooms service.
func NewService(pool *pgxpool.Pool, broker events.Broker, cursors *cursor.Signer, logger *slog.Logger) *Service {
	return &Service{pool: pool, broker: broker, cursors: cursors, logger: logger}
}

// Errors every room-scoped operation shares. A room the caller may not see is "not found",
// never "forbidden": its existence is not revealed.
var (
	ErrRoomNotFound = apperr.New(apperr.NotFound, "no such room")
	errNotModerator = apperr.New(apperr.Forbidden, "only moderators and the owner may do this")
	errOutranked    = apperr.New(apperr.Forbidden, "you cannot act on a member whose role is at or above yours")
	errArchived     = apperr.New(apperr.Archived, "the room is archived (read-only)")
)

// errNoEvent rolls back a transaction that took a seq but had nothing to record, so the
// room's seq stays gap-free.
var errNoEvent = errors.New("no event")

// Tx is a room write in progress: the room is locked and Seq is reserved for the one event
// the write appends.
type Tx struct {
	Q      *db.Queries
	Room   db.Room
	Seq    int64
	Actor  uuid.UUID
	Member *db.RoomMember // the actor's membership, nil for a non-member
}

// Write runs fn with roomID locked and its next seq reserved. fn returns the event to
// append (with Seq filled in for it) or nil when nothing changed, in which case the
// transaction rolls back and the seq is not used. After commit, a notice goes out.
func (s *Service) Write(ctx context.Context, roomID, actor uuid.UUID, fn func(tx *Tx) (*events.Event, error)) (events.Event, bool, error) {
	var appended events.Event
	err := postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		room, err := q.LockRoomForEvent(ctx, roomID)
		if postgres.IsNoRows(err) {
			return ErrRoomNotFound
		}
		if err != nil {
			return err
		}
		tx := &Tx{Q: q, Room: room, Seq: room.LastSeq, Actor: actor}
		member, err := q.GetMember(ctx, db.GetMemberParams{RoomID: roomID, UserID: actor})
		switch {
		case err == nil:
			tx.Member = &member
		case !postgres.IsNoRows(err):
			return err
		}
		e, err := fn(tx)
		if err != nil {
			return err
		}
		if e == nil {
			return errNoEvent
		}
		e.RoomID, e.ActorID = roomID, actor
		appended, err = events.Append(ctx, q, tx.Seq, *e)
		return err
	})
	if errors.Is(err, errNoEvent) {
		return events.Event{}, false, nil
	}
	if err != nil {
		return events.Event{}, false, err
	}
	s.Publish(ctx, appended)
	return appended, true, nil
}

// Publish tells every instance that e was committed. A lost notice only delays waiters, so a
// failure is logged, not returned.
func (s *Service) Publish(ctx context.Context, e events.Event) {
	if err := s.broker.Publish(context.WithoutCancel(ctx), events.Notice{RoomID: e.RoomID, Seq: e.Seq, UserID: e.UserID}); err != nil {
		s.logger.WarnContext(ctx, "publish event notice", "room_id", e.RoomID, "seq", e.Seq, "error", err.Error())
	}
}

// requireMember returns the actor's membership or "not found".
func (tx *Tx) requireMember() (*db.RoomMember, error) {
	if tx.Member == nil {
		return nil, ErrRoomNotFound
	}
	return tx.Member, nil
}

func (tx *Tx) requireModerator() (*db.RoomMember, error) {
	m, err := tx.requireMember()
	if err != nil {
		return nil, err
	}
	if Rank(m.Role) < Rank(Moderator) {
		return nil, errNotModerator
	}
	return m, nil
}

// RequireWritable refuses writes to an archived room.
func (tx *Tx) RequireWritable() error {
	if tx.Room.ArchivedAt != nil {
		return errArchived
	}
	return nil
}

// CreateInput describes a new room.
type CreateInput struct {
	Name            string
	Topic           string
	Visibility      string
	EntryPrice      int64
	SlowModeSeconds int
}

func validName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n < 1 || n > 100 {
		return "", &apperr.Error{Code: apperr.Invalid, Message: "the name must be 1 to 100 characters, not only spaces",
			Fields: []apperr.FieldError{{Field: "body.name", Message: "must be 1 to 100 characters"}}}
	}
	return name, nil
}

func validTopic(topic string) (string, error) {
	topic = strings.TrimSpace(topic)
	if utf8.RuneCountInString(topic) > 500 {
		return "", &apperr.Error{Code: apperr.Invalid, Message: "the topic must be at most 500 characters",
			Fields: []apperr.FieldError{{Field: "body.topic", Message: "must be at most 500 characters"}}}
	}
	return topic, nil
}

// Create makes a room owned by owner, who joins it as its first event.
func (s *Service) Create(ctx context.Context, owner uuid.UUID, in CreateInput) (Room, error) {
	name, err := validName(in.Name)
	if err != nil {
		return Room{}, err
	}
	topic, err := validTopic(in.Topic)
	if err != nil {
		return Room{}, err
	}
	if in.Visibility == "" {
		in.Visibility = "public"
	}
	var (
		created db.Room
		joined  events.Event
	)
	err = postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		room, err := q.CreateRoom(ctx, db.CreateRoomParams{
			Name: name, Topic: topic, Visibility: in.Visibility, EntryPrice: in.EntryPrice,
			OwnerID: owner, SlowModeSeconds: int32(in.SlowModeSeconds),
		})
		if err != nil {
			return err
		}
		if room, err = q.LockRoomForEvent(ctx, room.ID); err != nil {
			return err
		}
		if err := join(ctx, q, room.ID, owner, Owner, room.LastSeq); err != nil {
			return err
		}
		name, err := q.GetUserName(ctx, owner)
		if err != nil {
			return err
		}
		room.MemberCount++
		created = room
		joined, err = events.Append(ctx, q, room.LastSeq, events.Event{
			RoomID: room.ID, Type: events.MemberJoined, ActorID: owner, UserID: &owner,
			Data: events.Data{Role: Owner, DisplayName: name},
		})
		return err
	})
	if err != nil {
		return Room{}, fmt.Errorf("create room: %w", err)
	}
	// The owner's open sockets start following the room on this event.
	s.Publish(ctx, joined)
	return s.Get(ctx, created.ID, owner)
}

// join records a new member and opens their readable stretch of the log at seq.
func join(ctx context.Context, q *db.Queries, roomID, user uuid.UUID, role string, seq int64) error {
	if err := q.LockUser(ctx, user); err != nil {
		return err
	}
	n, err := q.CountRoomsOfUser(ctx, user)
	if err != nil {
		return err
	}
	if n >= MaxRoomsPerUser {
		return apperr.New(apperr.RoomLimit, "you are a member of %d rooms, the most one account can be in; leave one first", MaxRoomsPerUser)
	}
	if _, err := q.InsertMember(ctx, db.InsertMemberParams{RoomID: roomID, UserID: user, Role: role, JoinedSeq: seq}); err != nil {
		return err
	}
	if err := q.OpenPeriod(ctx, db.OpenPeriodParams{RoomID: roomID, UserID: user, FromSeq: seq}); err != nil {
		return err
	}
	if err := q.DeleteInvite(ctx, db.DeleteInviteParams{RoomID: roomID, UserID: user}); err != nil {
		return err
	}
	return q.AddMemberCount(ctx, db.AddMemberCountParams{ID: roomID, Delta: 1})
}

// removeMember ends a membership at seq (the event that ends it is the member's last).
func removeMember(ctx context.Context, q *db.Queries, roomID, user uuid.UUID, seq int64) error {
	if err := q.ClosePeriod(ctx, db.ClosePeriodParams{RoomID: roomID, UserID: user, ToSeq: &seq}); err != nil {
		return err
	}
	if err := q.DeleteMember(ctx, db.DeleteMemberParams{RoomID: roomID, UserID: user}); err != nil {
		return err
	}
	return q.AddMemberCount(ctx, db.AddMemberCountParams{ID: roomID, Delta: -1})
}

// Get returns a room the caller may see: as a member, or as anyone for a public room, or as
// an invitee.
func (s *Service) Get(ctx context.Context, roomID, caller uuid.UUID) (Room, error) {
	q := db.New(s.pool)
	row, err := q.GetRoom(ctx, roomID)
	if postgres.IsNoRows(err) {
		return Room{}, ErrRoomNotFound
	}
	if err != nil {
		return Room{}, fmt.Errorf("get room: %w", err)
	}
	room := FromRow(row)
	m, err := q.GetMember(ctx, db.GetMemberParams{RoomID: roomID, UserID: caller})
	switch {
	case err == nil:
		unread, err := q.UnreadCount(ctx, db.UnreadCountParams{RoomID: roomID, ReadSeq: m.ReadSeq, UserID: caller})
		if err != nil {
			return Room{}, fmt.Errorf("unread count: %w", err)
		}
		room.Membership = &Membership{Role: m.Role, ReadSeq: m.ReadSeq, UnreadCount: unread, JoinedAt: m.JoinedAt, MutedUntil: activeMute(m.MutedUntil)}
		return room, nil
	case !postgres.IsNoRows(err):
		return Room{}, fmt.Errorf("get membership: %w", err)
	}
	if room.Visibility == "public" {
		return room, nil
	}
	if _, err := q.GetInvite(ctx, db.GetInviteParams{RoomID: roomID, UserID: caller}); err == nil {
		return room, nil
	} else if !postgres.IsNoRows(err) {
		return Room{}, fmt.Errorf("get invite: %w", err)
	}
	return Room{}, ErrRoomNotFound
}

// RequireMember returns the caller's membership of a room, or "not found" — the check for
// every read in a room.
func (s *Service) RequireMember(ctx context.Context, q *db.Queries, roomID, caller uuid.UUID) (db.RoomMember, error) {
	if _, err := q.GetRoom(ctx, roomID); postgres.IsNoRows(err) {
		return db.RoomMember{}, ErrRoomNotFound
	} else if err != nil {
		return db.RoomMember{}, err
	}
	m, err := q.GetMember(ctx, db.GetMemberParams{RoomID: roomID, UserID: caller})
	if postgres.IsNoRows(err) {
		return db.RoomMember{}, ErrRoomNotFound
	}
	return m, err
}

func activeMute(until *time.Time) *time.Time {
	if until == nil || !until.After(time.Now()) {
		return nil
	}
	return until
}

// UpdateInput changes a room; nil fields stay as they are.
type UpdateInput struct {
	Name            *string
	Topic           *string
	SlowModeSeconds *int
	Archived        *bool
}

// Update changes a room's settings (moderators), or archives it (owner).
func (s *Service) Update(ctx context.Context, roomID, actor uuid.UUID, in UpdateInput) (Room, error) {
	var err error
	if in.Name != nil {
		var name string
		if name, err = validName(*in.Name); err != nil {
			return Room{}, err
		}
		in.Name = &name
	}
	if in.Topic != nil {
		var topic string
		if topic, err = validTopic(*in.Topic); err != nil {
			return Room{}, err
		}
		in.Topic = &topic
	}
	_, _, err = s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		m, err := tx.requireModerator()
		if err != nil {
			return nil, err
		}
		if in.Archived != nil && m.Role != Owner {
			return nil, apperr.New(apperr.Forbidden, "only the owner may archive or unarchive the room")
		}
		if in.Archived == nil {
			if err := tx.RequireWritable(); err != nil {
				return nil, err
			}
		}
		var slow *int32
		if in.SlowModeSeconds != nil {
			v := int32(*in.SlowModeSeconds)
			slow = &v
		}
		if _, err := tx.Q.UpdateRoom(ctx, db.UpdateRoomParams{ID: roomID, Name: in.Name, Topic: in.Topic, SlowModeSeconds: slow, Archived: in.Archived, Seq: tx.Seq}); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.RoomUpdated}, nil
	})
	if err != nil {
		return Room{}, fmt.Errorf("update room: %w", err)
	}
	return s.Get(ctx, roomID, actor)
}

// Delete removes a room (owner only): members get a room.deleted event, the last of the
// room they can read, and are members no more.
func (s *Service) Delete(ctx context.Context, roomID, actor uuid.UUID) error {
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		m, err := tx.requireMember()
		if err != nil {
			return nil, err
		}
		if m.Role != Owner {
			return nil, apperr.New(apperr.Forbidden, "only the owner may delete the room")
		}
		if err := tx.Q.DeleteRoom(ctx, db.DeleteRoomParams{ID: roomID, Seq: &tx.Seq}); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.RoomDeleted}, nil
	})
	if err != nil {
		return fmt.Errorf("delete room: %w", err)
	}
	return nil
}

// Join makes the caller a member: of a public room unless banned, of a private room when
// invited. Joining twice changes nothing. A paid room's entry price is charged through the
// EntryCharger in the same transaction.
//
// idempotencyKey is the request's Idempotency-Key (the HTTP layer replays repeats of it): a
// non-member joining a paid room must send one, even when the rejoin turns out free (one
// rule a client can follow), and is refused before any credit moves. Members joining
// again, and joins of free rooms, need none.
func (s *Service) Join(ctx context.Context, roomID, actor uuid.UUID, idempotencyKey string) (Room, error) {
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		if tx.Member != nil {
			return nil, nil
		}
		invited := false
		if _, err := tx.Q.GetInvite(ctx, db.GetInviteParams{RoomID: roomID, UserID: actor}); err == nil {
			invited = true
		} else if !postgres.IsNoRows(err) {
			return nil, err
		}
		if tx.Room.Visibility != "public" && !invited {
			return nil, ErrRoomNotFound
		}
		if _, err := tx.Q.GetActiveBan(ctx, db.GetActiveBanParams{RoomID: roomID, UserID: actor}); err == nil {
			return nil, apperr.New(apperr.Banned, "you are banned from this room")
		} else if !postgres.IsNoRows(err) {
			return nil, err
		}
		if err := tx.RequireWritable(); err != nil {
			return nil, err
		}
		if tx.Room.EntryPrice > 0 {
			if idempotencyKey == "" {
				return nil, apperr.ErrIdempotencyKeyRequired
			}
			if s.entry == nil {
				return nil, errors.New("paid entry is not wired: rooms.Service has no EntryCharger")
			}
			// Paid in the join's transaction: no entry without the payment, and no payment
			// without the entry.
			if err := s.entry.ChargeEntry(ctx, tx.Q, tx.Room, actor); err != nil {
				return nil, err
			}
		}
		if err := join(ctx, tx.Q, roomID, actor, Member, tx.Seq); err != nil {
			return nil, err
		}
		name, err := tx.Q.GetUserName(ctx, actor)
		if err != nil {
			return nil, err
		}
		return &events.Event{Type: events.MemberJoined, UserID: &actor, Data: events.Data{Role: Member, DisplayName: name}}, nil
	})
	if err != nil {
		return Room{}, fmt.Errorf("join room: %w", err)
	}
	return s.Get(ctx, roomID, actor)
}

// Leave ends the caller's membership. The owner cannot leave.
func (s *Service) Leave(ctx context.Context, roomID, actor uuid.UUID) error {
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		m, err := tx.requireMember()
		if err != nil {
			return nil, err
		}
		if m.Role == Owner {
			return nil, apperr.New(apperr.Conflict, "the owner cannot leave the room; delete it instead")
		}
		if err := removeMember(ctx, tx.Q, roomID, actor, tx.Seq); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.MemberLeft, UserID: &actor}, nil
	})
	if err != nil {
		return fmt.Errorf("leave room: %w", err)
	}
	return nil
}

// targetBelow loads the target's membership and checks the actor outranks it.
func (tx *Tx) targetBelow(ctx context.Context, actor *db.RoomMember, target uuid.UUID) (*db.RoomMember, error) {
	m, err := tx.Q.GetMember(ctx, db.GetMemberParams{RoomID: tx.Room.ID, UserID: target})
	if postgres.IsNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if Rank(m.Role) >= Rank(actor.Role) {
		return nil, errOutranked
	}
	return &m, nil
}

var errNoSuchMember = apperr.New(apperr.NotFound, "no such member")

// Kick removes a member ranked below the actor.
func (s *Service) Kick(ctx context.Context, roomID, actor, target uuid.UUID) error {
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		me, err := tx.requireModerator()
		if err != nil {
			return nil, err
		}
		t, err := tx.targetBelow(ctx, me, target)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, errNoSuchMember
		}
		if err := removeMember(ctx, tx.Q, roomID, target, tx.Seq); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.MemberKicked, UserID: &target}, nil
	})
	if err != nil {
		return fmt.Errorf("kick member: %w", err)
	}
	return nil
}

// MemberUpdate changes a member's role and/or mute.
type MemberUpdate struct {
	Role       *string
	SetMute    bool
	MutedUntil *time.Time // with SetMute: nil unmutes
}

// UpdateMember changes the role or mute of a member ranked below the actor.
func (s *Service) UpdateMember(ctx context.Context, roomID, actor, target uuid.UUID, in MemberUpdate) (MemberInfo, error) {
	var out MemberInfo
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		me, err := tx.requireModerator()
		if err != nil {
			return nil, err
		}
		if in.Role != nil && Rank(*in.Role) >= Rank(me.Role) {
			return nil, apperr.New(apperr.Forbidden, "you can only give roles below your own")
		}
		t, err := tx.targetBelow(ctx, me, target)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, errNoSuchMember
		}
		row, err := tx.Q.UpdateMember(ctx, db.UpdateMemberParams{RoomID: roomID, UserID: target, Role: in.Role, SetMuted: in.SetMute, MutedUntil: in.MutedUntil})
		if err != nil {
			return nil, err
		}
		name, err := tx.Q.GetUserName(ctx, target)
		if err != nil {
			return nil, err
		}
		out = MemberInfo{UserID: target, DisplayName: name, Role: row.Role, JoinedAt: row.JoinedAt, MutedUntil: activeMute(row.MutedUntil)}
		return &events.Event{Type: events.MemberUpdated, UserID: &target, Data: events.Data{Role: row.Role, MutedUntil: out.MutedUntil, DisplayName: name}}, nil
	})
	if err != nil {
		return MemberInfo{}, fmt.Errorf("update member: %w", err)
	}
	return out, nil
}

// Invite records an invitation of target to a private room.
type Invite struct {
	RoomID, UserID, InvitedBy uuid.UUID
	CreatedAt                 time.Time
}

// Invite invites target to a private room (moderators and the owner).
func (s *Service) Invite(ctx context.Context, roomID, actor, target uuid.UUID) (Invite, error) {
	var out Invite
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		if _, err := tx.requireModerator(); err != nil {
			return nil, err
		}
		if err := tx.RequireWritable(); err != nil {
			return nil, err
		}
		if tx.Room.Visibility == "public" {
			return nil, apperr.New(apperr.Conflict, "anyone may join a public room; invitations are for private rooms")
		}
		if ok, err := tx.Q.UserExists(ctx, target); err != nil {
			return nil, err
		} else if !ok {
			return nil, apperr.New(apperr.NotFound, "no such user")
		}
		if _, err := tx.Q.GetMember(ctx, db.GetMemberParams{RoomID: roomID, UserID: target}); err == nil {
			return nil, apperr.New(apperr.Conflict, "the user is already a member")
		}
		if _, err := tx.Q.GetActiveBan(ctx, db.GetActiveBanParams{RoomID: roomID, UserID: target}); err == nil {
			return nil, apperr.New(apperr.Conflict, "the user is banned from this room; lift the ban first")
		}
		inv, err := tx.Q.UpsertInvite(ctx, db.UpsertInviteParams{RoomID: roomID, UserID: target, InvitedBy: actor})
		if err != nil {
			return nil, err
		}
		out = Invite{RoomID: roomID, UserID: target, InvitedBy: inv.InvitedBy, CreatedAt: inv.CreatedAt}
		if !inv.Created {
			return nil, nil
		}
		return &events.Event{Type: events.MemberInvited, UserID: &target}, nil
	})
	if err != nil {
		return Invite{}, fmt.Errorf("invite: %w", err)
	}
	return out, nil
}

// Ban is a ban of a user from a room.
type Ban struct {
	RoomID, UserID, BannedBy uuid.UUID
	Until                    *time.Time
	Reason                   string
	CreatedAt                time.Time
}

// Ban bans target (removing them if a member ranked below the actor).
func (s *Service) Ban(ctx context.Context, roomID, actor, target uuid.UUID, until *time.Time, reason string) (Ban, error) {
	if utf8.RuneCountInString(reason) > 500 {
		return Ban{}, apperr.New(apperr.Invalid, "the reason must be at most 500 characters")
	}
	if until != nil && !until.After(time.Now()) {
		return Ban{}, &apperr.Error{Code: apperr.Invalid, Message: "`until` must be in the future",
			Fields: []apperr.FieldError{{Field: "body.until", Message: "must be in the future"}}}
	}
	var out Ban
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		me, err := tx.requireModerator()
		if err != nil {
			return nil, err
		}
		if target == actor {
			return nil, apperr.New(apperr.Forbidden, "you cannot ban yourself")
		}
		if ok, err := tx.Q.UserExists(ctx, target); err != nil {
			return nil, err
		} else if !ok {
			return nil, apperr.New(apperr.NotFound, "no such user")
		}
		t, err := tx.targetBelow(ctx, me, target)
		if err != nil {
			return nil, err
		}
		row, err := tx.Q.UpsertBan(ctx, db.UpsertBanParams{RoomID: roomID, UserID: target, BannedBy: actor, Until: until, Reason: reason})
		if err != nil {
			return nil, err
		}
		if t != nil {
			if err := removeMember(ctx, tx.Q, roomID, target, tx.Seq); err != nil {
				return nil, err
			}
		}
		if err := tx.Q.DeleteInvite(ctx, db.DeleteInviteParams{RoomID: roomID, UserID: target}); err != nil {
			return nil, err
		}
		out = Ban{RoomID: roomID, UserID: target, BannedBy: actor, Until: row.Until, Reason: row.Reason, CreatedAt: row.CreatedAt}
		return &events.Event{Type: events.MemberBanned, UserID: &target}, nil
	})
	if err != nil {
		return Ban{}, fmt.Errorf("ban: %w", err)
	}
	return out, nil
}

// Unban lifts a ban.
func (s *Service) Unban(ctx context.Context, roomID, actor, target uuid.UUID) error {
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		if _, err := tx.requireModerator(); err != nil {
			return nil, err
		}
		n, err := tx.Q.DeleteBan(ctx, db.DeleteBanParams{RoomID: roomID, UserID: target})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, apperr.New(apperr.NotFound, "the user is not banned")
		}
		return &events.Event{Type: events.MemberUnbanned, UserID: &target}, nil
	})
	if err != nil {
		return fmt.Errorf("unban: %w", err)
	}
	return nil
}

// ReadState is a member's read marker and unread count.
type ReadState struct {
	RoomID      uuid.UUID
	ReadSeq     int64
	UnreadCount int64
}

// MarkRead moves the caller's read marker forward to seq (never back).
func (s *Service) MarkRead(ctx context.Context, roomID, actor uuid.UUID, seq int64) (ReadState, error) {
	_, _, err := s.Write(ctx, roomID, actor, func(tx *Tx) (*events.Event, error) {
		m, err := tx.requireMember()
		if err != nil {
			return nil, err
		}
		// tx.Seq is reserved for this call's own event, so the log ends just below it.
		if seq > tx.Seq-1 {
			return nil, &apperr.Error{Code: apperr.Invalid, Message: fmt.Sprintf("seq %d is beyond the room's latest event (%d)", seq, tx.Seq-1),
				Fields: []apperr.FieldError{{Field: "body.seq", Message: "is beyond the room's latest event"}}}
		}
		if seq <= m.ReadSeq {
			return nil, nil
		}
		if _, err := tx.Q.SetReadSeq(ctx, db.SetReadSeqParams{RoomID: roomID, UserID: actor, ReadSeq: seq}); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.ReadUpdated, UserID: &actor, Data: events.Data{ReadSeq: seq}}, nil
	})
	if err != nil {
		return ReadState{}, fmt.Errorf("mark read: %w", err)
	}
	q := db.New(s.pool)
	m, err := s.RequireMember(ctx, q, roomID, actor)
	if err != nil {
		return ReadState{}, err
	}
	unread, err := q.UnreadCount(ctx, db.UnreadCountParams{RoomID: roomID, ReadSeq: m.ReadSeq, UserID: actor})
	if err != nil {
		return ReadState{}, err
	}
	return ReadState{RoomID: roomID, ReadSeq: m.ReadSeq, UnreadCount: unread}, nil
}
