-- name: CreateTicket :exec
INSERT INTO realtime_tickets (ticket_hash, user_id, session_id, expires_at)
VALUES (@ticket_hash, @user_id, @session_id, @expires_at);

-- name: ConsumeTicket :one
-- Deleting is what makes a ticket single-use: of two concurrent upgrades, one gets the row.
WITH t AS (
    DELETE FROM realtime_tickets WHERE ticket_hash = @ticket_hash
    RETURNING user_id, session_id, expires_at
)
SELECT t.user_id, t.session_id, t.expires_at, s.revoked_at
FROM t JOIN sessions s ON s.id = t.session_id;

-- name: DeleteExpiredTickets :execrows
DELETE FROM realtime_tickets WHERE expires_at < now() - interval '1 minute';

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
