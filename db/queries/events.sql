-- name: InsertEvent :one
INSERT INTO room_events (room_id, seq, type, actor_id, user_id, message_id, data)
VALUES (@room_id, @seq, @type, @actor_id, sqlc.narg('user_id'), sqlc.narg('message_id'), sqlc.narg('data'))
RETURNING room_id, seq, type, actor_id, user_id, message_id, data, created_at;

-- name: CurrentPosition :one
-- The transaction's snapshot and the database's epoch: its system identifier and the
-- timeline it writes on. A restore into another cluster changes the first, a failover to a
-- replica (or a point-in-time recovery) the second; either makes older snapshots meaningless.
SELECT pg_current_snapshot()::text AS snap,
       ((SELECT system_identifier FROM pg_control_system())::text || '/' ||
         substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::text AS epoch;

-- name: RoomsByID :many
SELECT * FROM rooms WHERE id = ANY(@ids::uuid[]);

-- name: SyncEvents :many
-- The caller's events committed after the snapshot `since` and visible in `upto`, within the
-- stretches of each room's log they were a member for, in (room, seq) order after a cursor.
-- xid >= xmin(since) bounds the index scan: anything older was visible in `since` already.
-- period_end is the end of the stretch the event lies in (NULL while it is still open).
-- The backlog (the events left to read, in any order) is taken at most @max_backlog + 1
-- deep before it is sorted, so a read costs at most that many index entries however far
-- behind `since` is; backlog says how deep it went (the caller refuses a token past the bound).
WITH backlog AS MATERIALIZED (
  SELECT e.room_id, e.seq, p.to_seq AS period_end
  FROM room_member_periods p
  JOIN room_events e ON e.room_id = p.room_id
   AND e.seq >= p.from_seq AND (p.to_seq IS NULL OR e.seq <= p.to_seq)
  WHERE p.user_id = @user_id
    AND e.xid >= pg_snapshot_xmin((sqlc.arg(since)::text)::pg_snapshot)
    AND NOT pg_visible_in_snapshot(e.xid, (sqlc.arg(since)::text)::pg_snapshot)
    AND pg_visible_in_snapshot(e.xid, (sqlc.arg(upto)::text)::pg_snapshot)
    AND (e.room_id, e.seq) > (@after_room::uuid, @after_seq::bigint)
  LIMIT sqlc.arg(max_backlog)::int + 1
)
SELECT e.room_id, e.seq, e.type, e.actor_id, e.user_id, e.message_id, e.data, e.created_at, b.period_end,
  (SELECT count(*) FROM backlog)::int AS backlog
FROM backlog b
JOIN room_events e ON e.room_id = b.room_id AND e.seq = b.seq
ORDER BY b.room_id, b.seq
LIMIT @lim;

-- name: TailEvents :many
-- Every room's events committed after the snapshot `since` and visible in this
-- transaction's snapshot (run it in a REPEATABLE READ transaction: that snapshot is the end
-- of the batch), in (room, seq) order after a cursor: what the realtime fan-out delivers
-- next. Within a room, seq order is commit order, so each room's events come in order.
SELECT room_id, seq, type, actor_id, user_id, message_id, data, created_at
FROM room_events
WHERE xid >= pg_snapshot_xmin((sqlc.arg(since)::text)::pg_snapshot)
  AND NOT pg_visible_in_snapshot(xid, (sqlc.arg(since)::text)::pg_snapshot)
  AND (room_id, seq) > (@after_room::uuid, @after_seq::bigint)
ORDER BY room_id, seq
LIMIT @lim;
