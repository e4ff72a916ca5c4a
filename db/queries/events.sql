-- name: InsertEvent :one
INSERT INTO room_events (room_id, seq, type, actor_id, user_id, message_id, data)
VALUES (@room_id, @seq, @type, @actor_id, sqlc.narg('user_id'), sqlc.narg('message_id'), sqlc.narg('data'))
RETURNING room_id, seq, type, actor_id, user_id, message_id, data, created_at;

-- name: CurrentSnapshot :one
SELECT pg_current_snapshot()::text;

-- name: SyncEvents :many
-- The caller's events committed after the snapshot `since` and visible in `upto`, within the
-- stretches of each room's log they were a member for, in (room, seq) order after a cursor.
-- xid >= xmin(since) bounds the index scan: anything older was visible in `since` already.
SELECT e.room_id, e.seq, e.type, e.actor_id, e.user_id, e.message_id, e.data, e.created_at
FROM room_member_periods p
JOIN room_events e ON e.room_id = p.room_id
 AND e.seq >= p.from_seq AND (p.to_seq IS NULL OR e.seq <= p.to_seq)
WHERE p.user_id = @user_id
  AND e.xid >= pg_snapshot_xmin((sqlc.arg(since)::text)::pg_snapshot)
  AND NOT pg_visible_in_snapshot(e.xid, (sqlc.arg(since)::text)::pg_snapshot)
  AND pg_visible_in_snapshot(e.xid, (sqlc.arg(upto)::text)::pg_snapshot)
  AND (e.room_id, e.seq) > (@after_room::uuid, @after_seq::bigint)
ORDER BY e.room_id, e.seq
LIMIT @lim;

-- name: RoomsByID :many
SELECT * FROM rooms WHERE id = ANY(@ids::uuid[]);
