-- name: GetMessageByClientID :one
SELECT * FROM messages WHERE room_id = @room_id AND author_id = @author_id AND client_msg_id = @client_msg_id;

-- name: InsertMessage :one
INSERT INTO messages (room_id, seq, author_id, client_msg_id, body, reply_to)
VALUES (@room_id, @seq, @author_id, @client_msg_id, @body, sqlc.narg('reply_to'))
RETURNING *;

-- name: GetMessage :one
SELECT * FROM messages WHERE id = @id AND room_id = @room_id;

-- name: EditMessage :one
-- The version it replaces is kept until @seq, the edit's event: former members read the
-- message as it was when they left.
WITH old AS (
    INSERT INTO message_revisions (message_id, until_seq, body, edited_at)
    SELECT m.id, @seq::bigint, m.body, m.edited_at FROM messages m WHERE m.id = @id AND m.deleted_at IS NULL
)
UPDATE messages SET body = @body, edited_at = now()
WHERE messages.id = @id AND messages.deleted_at IS NULL
RETURNING *;

-- name: DeleteMessage :one
-- A tombstone keeps no body, and no earlier version either.
WITH erased AS (
    DELETE FROM message_revisions WHERE message_id = @id
)
UPDATE messages SET body = NULL, deleted_at = now()
WHERE messages.id = @id AND messages.deleted_at IS NULL
RETURNING *;

-- name: ListMessagesBefore :many
SELECT * FROM messages WHERE room_id = @room_id AND seq < @before_seq
ORDER BY seq DESC LIMIT @lim;

-- name: ListMessagesAfter :many
SELECT * FROM messages WHERE room_id = @room_id AND seq > @after_seq
ORDER BY seq ASC LIMIT @lim;

-- name: MessagesByID :many
SELECT * FROM messages WHERE id = ANY(@ids::uuid[]);

-- name: ReactionCounts :many
SELECT message_id, emoji, count(*)::integer AS count, bool_or(user_id = @viewer::uuid)::boolean AS me
FROM reactions WHERE message_id = ANY(@message_ids::uuid[])
GROUP BY message_id, emoji
ORDER BY message_id, min(created_at), emoji;

-- name: MessageVersionsAsOf :many
-- For each (message, seq) pair, the version that was current right after that seq of the
-- message's room, where an edit has replaced it since (a pair without a row: the message's
-- current body and edited_at were already current then).
SELECT DISTINCT ON (x.id, x.bound) x.id::uuid AS message_id, x.bound::bigint AS bound, r.body, r.edited_at
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@bounds::bigint[]) AS bound) AS x
JOIN message_revisions r ON r.message_id = x.id AND r.until_seq > x.bound
ORDER BY x.id, x.bound, r.until_seq;

-- name: ReactionCountsAsOf :many
-- ReactionCounts right after seq `bound` of each message's room, from the reaction events:
-- a user's reaction with an emoji stood then if its latest event up to that seq added it.
SELECT x.id::uuid AS message_id, x.bound::bigint AS bound, e.emoji::text AS emoji, count(*)::integer AS count,
       bool_or(e.actor_id = @viewer::uuid)::boolean AS me
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@bounds::bigint[]) AS bound) AS x
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (ev.actor_id, ev.data->>'emoji') ev.type, ev.actor_id, ev.data->>'emoji' AS emoji, ev.seq
    FROM room_events ev
    WHERE ev.message_id = x.id AND ev.type IN ('reaction.added', 'reaction.removed') AND ev.seq <= x.bound
    ORDER BY ev.actor_id, ev.data->>'emoji', ev.seq DESC
) e
WHERE e.type = 'reaction.added'
GROUP BY x.id, x.bound, e.emoji
ORDER BY x.id, x.bound, min(e.seq), e.emoji;

-- name: AddReaction :execrows
INSERT INTO reactions (message_id, user_id, emoji) VALUES (@message_id, @user_id, @emoji)
ON CONFLICT DO NOTHING;

-- name: RemoveReaction :execrows
DELETE FROM reactions WHERE message_id = @message_id AND user_id = @user_id AND emoji = @emoji;

-- name: LockRoomForSend :exec
-- The room's row lock for a message send, taken first so that SendMessage, the next
-- statement, reads a snapshot that includes every membership change committed before it
-- (those take the same lock). It conflicts with LockRoomForEvent's update, not with the
-- key-share locks of inserts that reference the room.
SELECT 1 FROM rooms WHERE id = @id FOR NO KEY UPDATE;

-- name: SendMessage :one
-- A send in one statement, run after LockRoomForSend in the same transaction: every rule of a
-- send is checked here (a live, unarchived room; a member, not muted, not held back by slow
-- mode; reply_to a message of the room), and only if all pass does it take the room's next
-- seq and insert the message and its event (and note the send for slow mode). Nothing is
-- changed otherwise, so the caller can commit in the same round trip and never holds the
-- room's lock while it thinks; what it returns (and checked_at, the clock the rules used)
-- tells it why a send was refused.
WITH room AS (
    SELECT r.slow_mode_seconds, r.archived_at FROM rooms r
    WHERE r.id = @room_id AND r.deleted_at IS NULL
), m AS (
    SELECT rm.role, rm.muted_until, rm.last_sent_at FROM room_members rm
    WHERE rm.room_id = @room_id AND rm.user_id = @author_id
), reply_ok AS (
    SELECT sqlc.narg('reply_to')::uuid IS NULL
        OR EXISTS (SELECT 1 FROM messages x WHERE x.id = sqlc.narg('reply_to')::uuid AND x.room_id = @room_id) AS ok
), allowed AS (
    SELECT 1 FROM room, m, reply_ok
    WHERE reply_ok.ok AND room.archived_at IS NULL
      AND (m.muted_until IS NULL OR m.muted_until <= now())
      AND (room.slow_mode_seconds = 0 OR m.role IN ('owner', 'moderator') OR m.last_sent_at IS NULL
           OR m.last_sent_at + make_interval(secs => room.slow_mode_seconds) <= now())
), seq AS (
    UPDATE rooms r SET last_seq = r.last_seq + 1
    WHERE r.id = @room_id AND EXISTS (SELECT 1 FROM allowed)
    RETURNING r.last_seq
), msg AS (
    INSERT INTO messages (room_id, seq, author_id, client_msg_id, body, reply_to)
    SELECT @room_id, seq.last_seq, @author_id, @client_msg_id, @body, sqlc.narg('reply_to')::uuid
    FROM seq
    RETURNING *
), ev AS (
    INSERT INTO room_events (room_id, seq, type, actor_id, message_id)
    SELECT msg.room_id, msg.seq, 'message.created', msg.author_id, msg.id FROM msg
    RETURNING created_at
), slow AS (
    UPDATE room_members rm SET last_sent_at = now()
    FROM msg, room
    WHERE room.slow_mode_seconds > 0 AND rm.room_id = msg.room_id AND rm.user_id = msg.author_id
    RETURNING rm.user_id
)
SELECT EXISTS (SELECT 1 FROM room) AS room_found,
       coalesce((SELECT slow_mode_seconds FROM room), 0)::int AS slow_mode_seconds,
       (SELECT archived_at FROM room) AS archived_at,
       coalesce((SELECT role FROM m), '')::text AS role,
       (SELECT muted_until FROM m) AS muted_until,
       (SELECT last_sent_at FROM m) AS last_sent_at,
       (SELECT ok FROM reply_ok)::boolean AS reply_ok,
       now()::timestamptz AS checked_at,
       msg.id, msg.seq, msg.created_at
FROM (SELECT 1) AS one LEFT JOIN msg ON true;
