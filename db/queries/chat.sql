-- name: GetMessageByClientID :one
SELECT * FROM messages WHERE room_id = @room_id AND author_id = @author_id AND client_msg_id = @client_msg_id;

-- name: InsertMessage :one
INSERT INTO messages (room_id, seq, author_id, client_msg_id, body, reply_to)
VALUES (@room_id, @seq, @author_id, @client_msg_id, @body, sqlc.narg('reply_to'))
RETURNING *;

-- name: GetMessage :one
SELECT * FROM messages WHERE id = @id AND room_id = @room_id;

-- name: EditMessage :one
UPDATE messages SET body = @body, edited_at = now()
WHERE id = @id AND deleted_at IS NULL
RETURNING *;

-- name: DeleteMessage :one
UPDATE messages SET body = NULL, deleted_at = now()
WHERE id = @id AND deleted_at IS NULL
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

-- name: AddReaction :execrows
INSERT INTO reactions (message_id, user_id, emoji) VALUES (@message_id, @user_id, @emoji)
ON CONFLICT DO NOTHING;

-- name: RemoveReaction :execrows
DELETE FROM reactions WHERE message_id = @message_id AND user_id = @user_id AND emoji = @emoji;

-- name: LockRoomForSend :one
-- LockRoomForEvent for a message send: the room's lock and next seq, and what a send checks.
UPDATE rooms SET last_seq = last_seq + 1
WHERE id = @id AND deleted_at IS NULL
RETURNING last_seq, slow_mode_seconds, archived_at;

-- name: SendMessage :one
-- A send in one statement, run after LockRoomForSend in the same transaction (its seq is the
-- room's last_seq, which that statement just took; and since this statement's snapshot
-- starts after the lock was granted, it sees every committed membership change): the
-- message and its event are inserted only if the author is a member and reply_to is a
-- message of the room. The caller still checks mute and slow mode on the returned membership
-- and rolls back if they refuse.
WITH m AS (
    SELECT rm.role, rm.muted_until, rm.last_sent_at FROM room_members rm
    WHERE rm.room_id = @room_id AND rm.user_id = @author_id
), reply_ok AS (
    SELECT sqlc.narg('reply_to')::uuid IS NULL
        OR EXISTS (SELECT 1 FROM messages x WHERE x.id = sqlc.narg('reply_to')::uuid AND x.room_id = @room_id) AS ok
), msg AS (
    INSERT INTO messages (room_id, seq, author_id, client_msg_id, body, reply_to)
    SELECT @room_id, r.last_seq, @author_id, @client_msg_id, @body, sqlc.narg('reply_to')::uuid
    FROM m, reply_ok, rooms r WHERE reply_ok.ok AND r.id = @room_id
    RETURNING *
), ev AS (
    INSERT INTO room_events (room_id, seq, type, actor_id, message_id)
    SELECT msg.room_id, msg.seq, 'message.created', msg.author_id, msg.id FROM msg
    RETURNING created_at
)
SELECT coalesce((SELECT role FROM m), '')::text AS role,
       (SELECT muted_until FROM m) AS muted_until,
       (SELECT last_sent_at FROM m) AS last_sent_at,
       (SELECT ok FROM reply_ok)::boolean AS reply_ok,
       msg.id, msg.created_at
FROM (SELECT 1) AS one LEFT JOIN msg ON true;
