-- name: RoomMemberIDs :many
SELECT user_id FROM room_members WHERE room_id = @room_id;

-- name: MembershipsOf :many
-- The rooms of the users whose sockets go live at this snapshot.
SELECT user_id, room_id FROM room_members WHERE user_id = ANY(@user_ids::uuid[]);

-- name: LiveSessions :many
-- Of these sessions, those not revoked (a pruned session is gone, so not live either).
SELECT id FROM sessions WHERE id = ANY(@ids::uuid[]) AND revoked_at IS NULL;

-- name: RecentlyRevokedSessions :many
-- Sessions revoked in the last `secs` seconds: the gateway closes their sockets even when
-- the broker lost the notice of the revocation.
SELECT id FROM sessions
WHERE revoked_at IS NOT NULL AND revoked_at > now() - make_interval(secs => @secs::float8);
