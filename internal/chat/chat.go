// Package chat holds messages, reactions and the sync that catches a client up on every
// event of its rooms.
package chat

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// Message is a message as readers see it: a deleted one is a tombstone without a body.
type Message struct {
	ID          uuid.UUID
	RoomID      uuid.UUID
	Seq         int64
	ClientMsgID uuid.UUID
	AuthorID    uuid.UUID
	Body        *string
	ReplyTo     *uuid.UUID
	Deleted     bool
	Reactions   []ReactionCount
	CreatedAt   time.Time
	EditedAt    *time.Time
}

// ReactionCount is how many users reacted with an emoji, and whether the viewer did (nil
// when rendered for no one in particular, as for a WebSocket broadcast).
type ReactionCount struct {
	Emoji string
	Count int
	Me    *bool
}

// Limits on message content.
const (
	MaxBodyChars  = 4000
	MaxBodyBytes  = 16000
	MaxEmojiChars = 16
	MaxEmojiBytes = 64
)

// Service implements messages, reactions, read markers and sync.
type Service struct {
	pool   *pgxpool.Pool
	rooms  *rooms.Service
	hub    *events.Hub
	tokens events.Tokens
	log    events.Log
}

// NewService wires the chat service; sync reads the event log through log.
func NewService(pool *pgxpool.Pool, roomsSvc *rooms.Service, hub *events.Hub, tokens events.Tokens, log events.Log) *Service {
	return &Service{pool: pool, rooms: roomsSvc, hub: hub, tokens: tokens, log: log}
}

func validBody(body string) (string, error) {
	if !utf8.ValidString(body) || strings.TrimSpace(body) == "" || utf8.RuneCountInString(body) > MaxBodyChars || len(body) > MaxBodyBytes {
		return "", &apperr.Error{Code: apperr.Invalid, Message: fmt.Sprintf("the body must be 1 to %d characters (%d bytes), not only spaces", MaxBodyChars, MaxBodyBytes),
			Fields: []apperr.FieldError{{Field: "body.body", Message: "must be 1 to 4000 characters"}}}
	}
	return body, nil
}

func validEmoji(emoji string) error {
	if emoji == "" || !utf8.ValidString(emoji) || utf8.RuneCountInString(emoji) > MaxEmojiChars || len(emoji) > MaxEmojiBytes ||
		strings.IndexFunc(emoji, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return &apperr.Error{Code: apperr.Invalid, Message: fmt.Sprintf("a reaction is 1 to %d characters without spaces", MaxEmojiChars),
			Fields: []apperr.FieldError{{Field: "path.emoji", Message: "must be 1 to 16 characters without spaces"}}}
	}
	return nil
}

var (
	errNoSuchMessage = apperr.New(apperr.NotFound, "no such message in this room")
	errArchived      = apperr.New(apperr.Archived, "the room is archived (read-only)")
)

// SendInput is a message to send.
type SendInput struct {
	ClientMsgID uuid.UUID
	Body        string
	ReplyTo     *uuid.UUID
}

// Send stores a message. A retry with the same client_msg_id returns the original
// (created=false), also when retries race: the unique index admits one, the others find it.
//
// It is the hottest write, and every send into a room waits for that room's lock, so it
// skips the generic rooms.Write path and sends the whole transaction in one round trip:
// BEGIN, the statement that takes the room's lock, the statement that checks every rule of a
// send and only then takes the seq and inserts the message and its event, and COMMIT. The
// server runs the statements in order, so the insert's snapshot starts after the lock was
// granted and sees every committed membership change; and the lock is never held while this
// process, perhaps busy with a fan-out, gets round to reading a reply. (With COMMIT as a second
// round trip, 200 msgs/s into one room beside a 1,000-socket fan-out left 18 of 32 senders
// queued on the lock.)
func (s *Service) Send(ctx context.Context, roomID, author uuid.UUID, in SendInput) (msg Message, created bool, err error) {
	body, err := validBody(in.Body)
	if err != nil {
		return Message{}, false, err
	}
	var row db.SendMessageRow
	err = s.sendPipelined(ctx, func(b *pgx.Batch) {
		b.Queue("BEGIN")
		b.Queue(db.LockRoomForSend, roomID)
		b.Queue(db.SendMessage, roomID, author, in.ReplyTo, in.ClientMsgID, &body)
		b.Queue("COMMIT")
	}, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&row.RoomFound, &row.SlowModeSeconds, &row.ArchivedAt, &row.Role, &row.MutedUntil,
			&row.LastSentAt, &row.ReplyOk, &row.CheckedAt, &row.ID, &row.Seq, &row.CreatedAt); err != nil {
			return err
		}
		_, err := br.Exec()
		return err
	})
	if err == nil && row.ID == nil {
		err = refusal(row) // nothing was written: the rules said no, and this says which
	}
	var refused *apperr.Error
	if postgres.IsUniqueViolation(err, "messages_client_msg_id_key") || errors.As(err, &refused) {
		// A retry, or a concurrent one that won: the original message is the answer — also
		// when the room would now refuse a new one (slow mode, mute, archive).
		existing, ferr := s.findSent(ctx, db.New(s.pool), roomID, author, in.ClientMsgID)
		if existing != nil {
			return *existing, false, nil
		}
		if refused != nil && ferr == nil {
			return Message{}, false, err
		}
		return Message{}, false, errors.Join(err, ferr)
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("send message: %w", err)
	}
	s.rooms.Publish(ctx, events.Event{RoomID: roomID, Seq: *row.Seq, Type: events.MessageCreated, ActorID: author, MessageID: row.ID})
	return Message{
		ID: *row.ID, RoomID: roomID, Seq: *row.Seq, ClientMsgID: in.ClientMsgID, AuthorID: author,
		Body: &body, ReplyTo: in.ReplyTo, Reactions: []ReactionCount{}, CreatedAt: *row.CreatedAt,
	}, true, nil
}

// refusal says why SendMessage wrote nothing, from what it read (and its clock).
func refusal(row db.SendMessageRow) error {
	if !row.RoomFound || row.Role == "" {
		return rooms.ErrRoomNotFound
	}
	if !row.ReplyOk {
		return &apperr.Error{Code: apperr.Invalid, Message: "reply_to is not a message of this room",
			Fields: []apperr.FieldError{{Field: "body.reply_to", Message: "is not a message of this room"}}}
	}
	if err := checkSend(row.ArchivedAt, row.SlowModeSeconds, row.Role, row.MutedUntil, row.LastSentAt, row.CheckedAt); err != nil {
		return err
	}
	return errors.New("the send was refused by a rule checkSend does not know")
}

// sendPipelined sends a whole transaction (BEGIN to COMMIT) in one round trip, so the
// room's lock is held only while PostgreSQL works, never while this process waits for a
// processor to read a reply and answer; read checks the replies. A transaction left open
// by an error is rolled back.
func (s *Service) sendPipelined(ctx context.Context, queue func(*pgx.Batch), read func(pgx.BatchResults) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	queue(b)
	br := conn.SendBatch(ctx, b)
	err = read(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
		// A failed rollback leaves the connection in a transaction; the pool then drops it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
	return err
}

func (s *Service) findSent(ctx context.Context, q *db.Queries, roomID, author, clientMsgID uuid.UUID) (*Message, error) {
	row, err := q.GetMessageByClientID(ctx, db.GetMessageByClientIDParams{RoomID: roomID, AuthorID: author, ClientMsgID: clientMsgID})
	if postgres.IsNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The author may have left since; a retry still only answers members.
	if _, err := s.rooms.RequireMember(ctx, q, roomID, author); err != nil {
		return nil, err
	}
	msgs, err := s.render(ctx, q, author, []db.Message{row})
	if err != nil {
		return nil, err
	}
	return &msgs[0], nil
}

// checkSend applies archive, mute and slow mode to a member who sends, at now (the
// database's clock, which SendMessage's own checks used).
func checkSend(archivedAt *time.Time, slowModeSeconds int32, role string, mutedUntil, lastSentAt *time.Time, now time.Time) error {
	if archivedAt != nil {
		return errArchived
	}
	if mutedUntil != nil && mutedUntil.After(now) {
		return apperr.New(apperr.Muted, "you are muted in this room until %s", mutedUntil.UTC().Format(time.RFC3339))
	}
	slow := time.Duration(slowModeSeconds) * time.Second
	if slow > 0 && rooms.Rank(role) < rooms.Rank(rooms.Moderator) && lastSentAt != nil {
		if wait := lastSentAt.Add(slow).Sub(now); wait > 0 {
			return apperr.RateLimit(time.Duration(math.Ceil(wait.Seconds()))*time.Second,
				fmt.Sprintf("slow mode: one message every %d seconds", slowModeSeconds))
		}
	}
	return nil
}

// lockedMessage loads a message of the locked room (members only).
func lockedMessage(ctx context.Context, tx *rooms.Tx, messageID uuid.UUID) (db.RoomMember, db.Message, error) {
	if tx.Member == nil {
		return db.RoomMember{}, db.Message{}, rooms.ErrRoomNotFound
	}
	msg, err := tx.Q.GetMessage(ctx, db.GetMessageParams{ID: messageID, RoomID: tx.Room.ID})
	if postgres.IsNoRows(err) {
		return db.RoomMember{}, db.Message{}, errNoSuchMessage
	}
	return *tx.Member, msg, err
}

// Edit changes the body of the author's own message.
func (s *Service) Edit(ctx context.Context, roomID, messageID, actor uuid.UUID, body string) (Message, error) {
	body, err := validBody(body)
	if err != nil {
		return Message{}, err
	}
	_, _, err = s.rooms.Write(ctx, roomID, actor, func(tx *rooms.Tx) (*events.Event, error) {
		_, msg, err := lockedMessage(ctx, tx, messageID)
		if err != nil {
			return nil, err
		}
		if msg.AuthorID != actor {
			return nil, apperr.New(apperr.Forbidden, "only the author may edit a message")
		}
		if err := tx.RequireWritable(); err != nil {
			return nil, err
		}
		if msg.DeletedAt != nil {
			return nil, apperr.New(apperr.Conflict, "the message was deleted")
		}
		if _, err := tx.Q.EditMessage(ctx, db.EditMessageParams{ID: messageID, Body: &body, Seq: tx.Seq}); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.MessageEdited, MessageID: &messageID}, nil
	})
	if err != nil {
		return Message{}, fmt.Errorf("edit message: %w", err)
	}
	return s.message(ctx, messageID, actor)
}

// Delete tombstones a message (its author, or a moderator). Deleting twice changes nothing.
func (s *Service) Delete(ctx context.Context, roomID, messageID, actor uuid.UUID) error {
	_, _, err := s.rooms.Write(ctx, roomID, actor, func(tx *rooms.Tx) (*events.Event, error) {
		m, msg, err := lockedMessage(ctx, tx, messageID)
		if err != nil {
			return nil, err
		}
		if msg.AuthorID != actor && rooms.Rank(m.Role) < rooms.Rank(rooms.Moderator) {
			return nil, apperr.New(apperr.Forbidden, "only the author or a moderator may delete a message")
		}
		if err := tx.RequireWritable(); err != nil {
			return nil, err
		}
		if msg.DeletedAt != nil {
			return nil, nil
		}
		if _, err := tx.Q.DeleteMessage(ctx, messageID); err != nil {
			return nil, err
		}
		return &events.Event{Type: events.MessageDeleted, MessageID: &messageID}, nil
	})
	if err != nil {
		return fmt.Errorf("delete message: %w", err)
	}
	return nil
}

// React adds (add=true) or removes the actor's reaction; repeating either changes nothing.
func (s *Service) React(ctx context.Context, roomID, messageID, actor uuid.UUID, emoji string, add bool) error {
	if err := validEmoji(emoji); err != nil {
		return err
	}
	_, _, err := s.rooms.Write(ctx, roomID, actor, func(tx *rooms.Tx) (*events.Event, error) {
		_, msg, err := lockedMessage(ctx, tx, messageID)
		if err != nil {
			return nil, err
		}
		if err := tx.RequireWritable(); err != nil {
			return nil, err
		}
		var n int64
		typ := events.ReactionRemoved
		if add {
			if msg.DeletedAt != nil {
				return nil, apperr.New(apperr.Conflict, "the message was deleted")
			}
			typ = events.ReactionAdded
			n, err = tx.Q.AddReaction(ctx, db.AddReactionParams{MessageID: messageID, UserID: actor, Emoji: emoji})
		} else {
			n, err = tx.Q.RemoveReaction(ctx, db.RemoveReactionParams{MessageID: messageID, UserID: actor, Emoji: emoji})
		}
		if err != nil || n == 0 {
			return nil, err
		}
		return &events.Event{Type: typ, MessageID: &messageID, Data: events.Data{Emoji: emoji}}, nil
	})
	if err != nil {
		return fmt.Errorf("react: %w", err)
	}
	return nil
}

// HistoryPage is a page of messages in ascending seq.
type HistoryPage struct {
	Items   []Message
	HasMore bool
}

// History pages through a room's messages by seq (members only): the latest `limit` before
// beforeSeq, or the first `limit` after afterSeq, or the latest `limit` when neither is set.
func (s *Service) History(ctx context.Context, roomID, caller uuid.UUID, beforeSeq, afterSeq *int64, limit int) (HistoryPage, error) {
	if beforeSeq != nil && afterSeq != nil {
		return HistoryPage{}, apperr.New(apperr.Invalid, "give before_seq or after_seq, not both")
	}
	q := db.New(s.pool)
	if _, err := s.rooms.RequireMember(ctx, q, roomID, caller); err != nil {
		return HistoryPage{}, err
	}
	var rows []db.Message
	var err error
	if afterSeq != nil {
		rows, err = q.ListMessagesAfter(ctx, db.ListMessagesAfterParams{RoomID: roomID, AfterSeq: *afterSeq, Lim: int32(limit + 1)})
	} else {
		before := int64(math.MaxInt64)
		if beforeSeq != nil {
			before = *beforeSeq
		}
		rows, err = q.ListMessagesBefore(ctx, db.ListMessagesBeforeParams{RoomID: roomID, BeforeSeq: before, Lim: int32(limit + 1)})
	}
	if err != nil {
		return HistoryPage{}, fmt.Errorf("list messages: %w", err)
	}
	page := HistoryPage{HasMore: len(rows) > limit}
	if page.HasMore {
		rows = rows[:limit]
	}
	if afterSeq == nil {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	page.Items, err = s.render(ctx, q, caller, rows)
	return page, err
}

func (s *Service) message(ctx context.Context, id, viewer uuid.UUID) (Message, error) {
	q := db.New(s.pool)
	msgs, err := s.byID(ctx, q, viewer, []uuid.UUID{id})
	if err != nil {
		return Message{}, err
	}
	m, ok := msgs[id]
	if !ok {
		return Message{}, errNoSuchMessage
	}
	return m, nil
}

func (s *Service) byID(ctx context.Context, q *db.Queries, viewer uuid.UUID, ids []uuid.UUID) (map[uuid.UUID]Message, error) {
	out := make(map[uuid.UUID]Message, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.MessagesByID(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("messages by id: %w", err)
	}
	msgs, err := s.render(ctx, q, viewer, rows)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		out[m.ID] = m
	}
	return out, nil
}

// byIDAsOf renders each message of at as it was right after its seq, as viewer sees it: the
// body and edited_at of the version current then, and the reactions that stood then. A
// deleted message is a tombstone whenever it was deleted: deleted text is kept nowhere.
func (s *Service) byIDAsOf(ctx context.Context, q *db.Queries, viewer uuid.UUID, at []events.AsOf) (map[events.AsOf]Message, error) {
	out := make(map[events.AsOf]Message, len(at))
	if len(at) == 0 {
		return out, nil
	}
	ids, seqs := events.Split(at)
	rows, err := q.MessagesByID(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("messages by id: %w", err)
	}
	current := make(map[uuid.UUID]db.Message, len(rows))
	for _, r := range rows {
		current[r.ID] = r
	}
	versions, err := q.MessageVersionsAsOf(ctx, db.MessageVersionsAsOfParams{Ids: ids, Bounds: seqs})
	if err != nil {
		return nil, fmt.Errorf("message versions: %w", err)
	}
	then := make(map[events.AsOf]db.MessageVersionsAsOfRow, len(versions))
	for _, v := range versions {
		then[events.AsOf{ID: v.MessageID, Seq: v.Bound}] = v
	}
	rs, err := q.ReactionCountsAsOf(ctx, db.ReactionCountsAsOfParams{Viewer: viewer, Ids: ids, Bounds: seqs})
	if err != nil {
		return nil, fmt.Errorf("reaction counts as of: %w", err)
	}
	counts := map[events.AsOf][]ReactionCount{}
	for _, r := range rs {
		key := events.AsOf{ID: r.MessageID, Seq: r.Bound}
		counts[key] = append(counts[key], reactionCount(viewer, r.Emoji, r.Count, r.Me))
	}
	for _, a := range at {
		r, ok := current[a.ID]
		if !ok {
			continue
		}
		if v, ok := then[a]; ok && r.DeletedAt == nil {
			r.Body, r.EditedAt = &v.Body, v.EditedAt
		}
		out[a] = fromRow(r, counts[a])
	}
	return out, nil
}

func reactionCount(viewer uuid.UUID, emoji string, count int32, me bool) ReactionCount {
	rc := ReactionCount{Emoji: emoji, Count: int(count)}
	if viewer != uuid.Nil {
		rc.Me = &me
	}
	return rc
}

// render converts rows to messages with their reaction counts as viewer sees them
// (uuid.Nil: as everyone sees them, without the viewer's own flags).
func (s *Service) render(ctx context.Context, q *db.Queries, viewer uuid.UUID, rows []db.Message) ([]Message, error) {
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	counts := map[uuid.UUID][]ReactionCount{}
	if len(ids) > 0 {
		rs, err := q.ReactionCounts(ctx, db.ReactionCountsParams{Viewer: viewer, MessageIds: ids})
		if err != nil {
			return nil, fmt.Errorf("reaction counts: %w", err)
		}
		for _, r := range rs {
			counts[r.MessageID] = append(counts[r.MessageID], reactionCount(viewer, r.Emoji, r.Count, r.Me))
		}
	}
	out := make([]Message, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r, counts[r.ID])
	}
	return out, nil
}

func fromRow(r db.Message, reactions []ReactionCount) Message {
	if reactions == nil || r.DeletedAt != nil {
		reactions = []ReactionCount{}
	}
	return Message{
		ID: r.ID, RoomID: r.RoomID, Seq: r.Seq, ClientMsgID: r.ClientMsgID, AuthorID: r.AuthorID,
		Body: r.Body, ReplyTo: r.ReplyTo, Deleted: r.DeletedAt != nil, Reactions: reactions,
		CreatedAt: r.CreatedAt, EditedAt: r.EditedAt,
	}
}
