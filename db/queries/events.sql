-- name: InsertEvent :one
INSERT INTO room_events (room_id, seq, type, actor_id, user_id, message_id, data)
VALUES (@room_id, @seq, @type, @actor_id, sqlc.narg('user_id'), sqlc.narg('message_id'), sqlc.narg('data'))
RETURNING room_id, seq, type, actor_id, user_id, message_id, data, created_at;

-- name: CurrentSnapshot :one
SELECT pg_current_snapshot()::text;

-- name: RoomsByID :many
SELECT * FROM rooms WHERE id = ANY(@ids::uuid[]);

-- name: SyncEvents :many
-- The caller's events committed after the snapshot `since` and visible in `upto`, within the
-- stretches of each room's log they were a member for, in (room, seq) order after a cursor —
-- minus what a WebSocket already delivered beyond `since`: per room, events up to a seq
-- (seen_rooms[i], seen_seqs[i]). xid >= xmin(since) bounds the index scan: anything older
-- was visible in `since` already.
SELECT e.room_id, e.seq, e.type, e.actor_id, e.user_id, e.message_id, e.data, e.created_at
FROM room_member_periods p
JOIN room_events e ON e.room_id = p.room_id
 AND e.seq >= p.from_seq AND (p.to_seq IS NULL OR e.seq <= p.to_seq)
WHERE p.user_id = @user_id
  AND e.xid >= pg_snapshot_xmin((sqlc.arg(since)::text)::pg_snapshot)
  AND NOT pg_visible_in_snapshot(e.xid, (sqlc.arg(since)::text)::pg_snapshot)
  AND pg_visible_in_snapshot(e.xid, (sqlc.arg(upto)::text)::pg_snapshot)
  AND (e.room_id, e.seq) > (@after_room::uuid, @after_seq::bigint)
  AND e.seq > coalesce((@seen_seqs::bigint[])[array_position(@seen_rooms::uuid[], e.room_id)], 0)
ORDER BY e.room_id, e.seq
LIMIT @lim;

-- name: SeenStillNeeded :many
-- Of the (room, seq) pairs a token says were delivered beyond its snapshot, those not yet
-- covered by the snapshot: some event up to that seq is not visible in it.
SELECT (@seen_rooms::uuid[])[i]::uuid AS room_id, (@seen_seqs::bigint[])[i]::bigint AS seq
FROM generate_subscripts(@seen_rooms::uuid[], 1) AS i
WHERE EXISTS (
    SELECT 1 FROM room_events e
    WHERE e.room_id = (@seen_rooms::uuid[])[i] AND e.seq <= (@seen_seqs::bigint[])[i]
      AND e.xid >= pg_snapshot_xmin((sqlc.arg(snap)::text)::pg_snapshot)
      AND NOT pg_visible_in_snapshot(e.xid, (sqlc.arg(snap)::text)::pg_snapshot));

-- name: EventRange :many
-- A room's events with from_seq <= seq <= to_seq, for live delivery and gap repair.
SELECT room_id, seq, type, actor_id, user_id, message_id, data, created_at
FROM room_events
WHERE room_id = @room_id AND seq BETWEEN @from_seq AND @to_seq
ORDER BY seq;

-- name: MemberRoomSeqs :many
-- The caller's rooms and the seq of each room's latest event in this transaction's snapshot.
SELECT r.id, r.last_seq FROM room_members m JOIN rooms r ON r.id = m.room_id
WHERE m.user_id = @user_id;
