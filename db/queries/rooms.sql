-- name: GetSecret :one
SELECT secret FROM server_secrets WHERE name = @name;

-- name: CreateRoom :one
INSERT INTO rooms (name, topic, visibility, entry_price, owner_id, slow_mode_seconds)
VALUES (@name, @topic, @visibility, @entry_price, @owner_id, @slow_mode_seconds)
RETURNING *;

-- name: LockRoomForEvent :one
-- Takes the room's row lock and the next seq in one step; the lock is held until commit, so
-- events of one room commit in seq order. Rolled back with the transaction, so no gap.
UPDATE rooms SET last_seq = last_seq + 1
WHERE id = @id AND deleted_at IS NULL
RETURNING *;

-- name: GetRoom :one
SELECT * FROM rooms WHERE id = @id AND deleted_at IS NULL;

-- name: UpdateRoom :one
-- The settings it replaces are kept until @seq, the room.updated event: former members see
-- the room as it was when they left.
WITH old AS (
    INSERT INTO room_revisions (room_id, until_seq, name, topic, slow_mode_seconds, archived_at)
    SELECT r.id, @seq::bigint, r.name, r.topic, r.slow_mode_seconds, r.archived_at FROM rooms r WHERE r.id = @id
)
UPDATE rooms SET
    name = coalesce(sqlc.narg('name'), name),
    topic = coalesce(sqlc.narg('topic'), topic),
    slow_mode_seconds = coalesce(sqlc.narg('slow_mode_seconds'), slow_mode_seconds),
    archived_at = CASE WHEN sqlc.narg('archived')::boolean IS NULL THEN archived_at
                       WHEN sqlc.narg('archived')::boolean THEN coalesce(archived_at, now())
                       ELSE NULL END,
    updated_at = now()
WHERE rooms.id = @id
RETURNING *;

-- name: DeleteRoom :exec
-- A deleted room lets go of everyone: each member's readable stretch of the log ends with
-- the room.deleted event (@seq), and the memberships and invitations go, so the room no
-- longer counts against anyone's room cap.
WITH periods AS (
    UPDATE room_member_periods SET to_seq = @seq WHERE room_id = @id AND to_seq IS NULL
), members AS (
    DELETE FROM room_members WHERE room_id = @id
), invites AS (
    DELETE FROM room_invites WHERE room_id = @id
)
UPDATE rooms SET deleted_at = now(), updated_at = now(), member_count = 0 WHERE id = @id;

-- name: AddMemberCount :exec
UPDATE rooms SET member_count = member_count + @delta::integer WHERE id = @id;

-- name: GetMember :one
SELECT * FROM room_members WHERE room_id = @room_id AND user_id = @user_id;

-- name: InsertMember :one
INSERT INTO room_members (room_id, user_id, role, joined_seq, read_seq)
VALUES (@room_id, @user_id, @role, @joined_seq, @joined_seq)
RETURNING *;

-- name: DeleteMember :exec
DELETE FROM room_members WHERE room_id = @room_id AND user_id = @user_id;

-- name: UpdateMember :one
UPDATE room_members SET
    role = coalesce(sqlc.narg('role'), role),
    muted_until = CASE WHEN @set_muted::boolean THEN sqlc.narg('muted_until') ELSE muted_until END
WHERE room_id = @room_id AND user_id = @user_id
RETURNING *;

-- name: RoomsAsOf :many
-- Each (room, seq) pair's settings and member count right after that seq: the settings an
-- update replaced since come from room_revisions (revised is false where the current ones
-- were already current then); the members are those whose stretch of the log covers it.
SELECT x.id::uuid AS room_id, x.bound::bigint AS bound, (rev.room_id IS NOT NULL)::boolean AS revised,
       coalesce(rev.name, '')::text AS name, coalesce(rev.topic, '')::text AS topic,
       coalesce(rev.slow_mode_seconds, 0)::integer AS slow_mode_seconds, rev.archived_at,
       (SELECT count(*) FROM room_member_periods p
        WHERE p.room_id = x.id AND p.from_seq <= x.bound AND (p.to_seq IS NULL OR p.to_seq > x.bound))::integer AS member_count
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@bounds::bigint[]) AS bound) AS x
LEFT JOIN LATERAL (
    SELECT * FROM room_revisions r WHERE r.room_id = x.id AND r.until_seq > x.bound ORDER BY r.until_seq LIMIT 1
) rev ON true;

-- name: MembershipEnds :many
-- Of room_ids, those the user is no longer a member of, each with the seq their last stretch
-- of the log ended at: what they read of it is as of that seq.
SELECT room_id, max(to_seq)::bigint AS to_seq FROM room_member_periods
WHERE user_id = @user_id AND room_id = ANY(@room_ids::uuid[])
GROUP BY room_id
HAVING bool_and(to_seq IS NOT NULL);

-- name: OpenPeriod :exec
INSERT INTO room_member_periods (room_id, user_id, from_seq) VALUES (@room_id, @user_id, @from_seq);

-- name: ClosePeriod :exec
UPDATE room_member_periods SET to_seq = @to_seq
WHERE room_id = @room_id AND user_id = @user_id AND to_seq IS NULL;

-- name: ListMembers :many
SELECT m.user_id, m.role, m.joined_at, m.muted_until, u.display_name
FROM room_members m JOIN users u ON u.id = m.user_id
WHERE m.room_id = @room_id AND (m.joined_at, m.user_id) > (@after_joined_at::timestamptz, @after_user_id::uuid)
ORDER BY m.joined_at, m.user_id
LIMIT @lim;

-- name: GetInvite :one
SELECT * FROM room_invites WHERE room_id = @room_id AND user_id = @user_id;

-- name: UpsertInvite :one
INSERT INTO room_invites (room_id, user_id, invited_by) VALUES (@room_id, @user_id, @invited_by)
ON CONFLICT (room_id, user_id) DO UPDATE SET room_id = EXCLUDED.room_id
RETURNING *, (xmax = 0)::boolean AS created;

-- name: DeleteInvite :exec
DELETE FROM room_invites WHERE room_id = @room_id AND user_id = @user_id;

-- name: GetActiveBan :one
SELECT * FROM room_bans WHERE room_id = @room_id AND user_id = @user_id AND (until IS NULL OR until > now());

-- name: UpsertBan :one
INSERT INTO room_bans (room_id, user_id, banned_by, until, reason)
VALUES (@room_id, @user_id, @banned_by, sqlc.narg('until'), @reason)
ON CONFLICT (room_id, user_id) DO UPDATE
SET banned_by = EXCLUDED.banned_by, until = EXCLUDED.until, reason = EXCLUDED.reason, created_at = now()
RETURNING *;

-- name: DeleteBan :execrows
DELETE FROM room_bans WHERE room_id = @room_id AND user_id = @user_id;

-- name: UserExists :one
SELECT EXISTS (SELECT 1 FROM users WHERE id = @id);

-- name: GetUserName :one
SELECT display_name FROM users WHERE id = @id;

-- name: ListJoinedRooms :many
-- The caller's rooms with their membership and unread count, oldest membership first.
SELECT sqlc.embed(r), m.role, m.read_seq, m.joined_at, m.muted_until,
       (SELECT count(*) FROM messages msg
        WHERE msg.room_id = r.id AND msg.seq > m.read_seq
          AND msg.author_id <> m.user_id AND msg.deleted_at IS NULL)::bigint AS unread_count
FROM room_members m JOIN rooms r ON r.id = m.room_id
WHERE m.user_id = @user_id AND r.deleted_at IS NULL
  AND (m.joined_at, m.room_id) > (@after_joined_at::timestamptz, @after_room_id::uuid)
ORDER BY m.joined_at, m.room_id
LIMIT @lim;

-- name: ListPublicRooms :many
SELECT * FROM rooms
WHERE visibility = 'public' AND deleted_at IS NULL
  AND name_key LIKE @prefix::text
  AND (name_key, id) > (@after_name::text, @after_id::uuid)
ORDER BY name_key, id
LIMIT @lim;

-- name: ListInvitedRooms :many
SELECT sqlc.embed(r), i.created_at AS invited_at
FROM room_invites i JOIN rooms r ON r.id = i.room_id
WHERE i.user_id = @user_id AND r.deleted_at IS NULL
  AND (i.created_at, i.room_id) > (@after_created_at::timestamptz, @after_room_id::uuid)
ORDER BY i.created_at, i.room_id
LIMIT @lim;

-- name: UnreadCount :one
SELECT count(*)::bigint FROM messages
WHERE room_id = @room_id AND seq > @read_seq AND author_id <> @user_id AND deleted_at IS NULL;

-- name: SetReadSeq :one
UPDATE room_members SET read_seq = @read_seq
WHERE room_id = @room_id AND user_id = @user_id AND read_seq < @read_seq
RETURNING read_seq;

-- name: MemberRoomIDs :many
SELECT room_id FROM room_members WHERE user_id = @user_id;

-- name: LockUser :exec
-- Serializes a user's joins: each counts the user's rooms after the previous one committed.
-- NO KEY UPDATE, not UPDATE: creating a room already holds KEY SHARE on the owner's row (the
-- foreign key), and two creations upgrading it to UPDATE would deadlock; NO KEY UPDATE does
-- not conflict with KEY SHARE, only with itself.
SELECT 1 FROM users WHERE id = @id FOR NO KEY UPDATE;

-- name: CountRoomsOfUser :one
-- Run after LockUser in its own statement: a READ COMMITTED statement sees only what was
-- committed when it began, so counting in the locking statement would miss the join that
-- held the lock.
SELECT count(*) FROM room_members WHERE user_id = @user_id;
