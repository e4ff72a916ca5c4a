-- name: CreateUser :one
INSERT INTO users (email, password_hash, display_name)
VALUES (@email, @password_hash, @display_name)
RETURNING *;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE email = @email;

-- name: GetUser :one
SELECT * FROM users WHERE id = @id;

-- name: CreateSession :one
INSERT INTO sessions (user_id, user_agent, client_ip)
VALUES (@user_id, @user_agent, sqlc.narg('client_ip'))
RETURNING *;

-- name: CreateRefreshToken :exec
INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
VALUES (@token_hash, @session_id, @expires_at);

-- name: LockRefreshToken :one
-- Locks the token row so that concurrent exchanges of one token serialize: the first marks it
-- used, the others then see used_at set.
SELECT rt.token_hash, rt.session_id, rt.expires_at, rt.used_at,
       s.user_id, s.revoked_at
FROM refresh_tokens rt
JOIN sessions s ON s.id = rt.session_id
WHERE rt.token_hash = @token_hash
FOR UPDATE OF rt;

-- name: MarkRefreshTokenUsed :exec
UPDATE refresh_tokens SET used_at = now() WHERE token_hash = @token_hash AND used_at IS NULL;

-- name: TouchSession :exec
UPDATE sessions SET last_used_at = now() WHERE id = @id;

-- name: RevokeSession :exec
UPDATE sessions
SET revoked_at = now(), revoke_reason = @reason
WHERE id = @id AND revoked_at IS NULL;

-- name: GetSession :one
SELECT * FROM sessions WHERE id = @id;

-- name: PruneExpiredRefreshTokens :execrows
-- An expired refresh token is refused whatever its state, so keeping it proves nothing.
-- Batched so one run never holds many row locks.
DELETE FROM refresh_tokens
WHERE token_hash IN (SELECT token_hash FROM refresh_tokens WHERE expires_at < now() LIMIT @lim);

-- name: PruneEndedSessions :execrows
-- A session left without refresh tokens (all expired and pruned) can never be used again;
-- its access tokens expired long before its last refresh token did. The hour keeps a
-- session that is being created (session, then token, in one transaction) out of reach.
DELETE FROM sessions
WHERE id IN (
    SELECT s.id FROM sessions s
    WHERE s.created_at < now() - interval '1 hour'
      AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.session_id = s.id)
    LIMIT @lim
);
