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
