-- The realtime fan-out reads every room's new events by transaction id ("everything
-- committed since this snapshot"), and looks for recently revoked sessions to close their
-- sockets; both need an index of their own. CONCURRENTLY: building them must not block the
-- writes of a running deployment.
--
-- Realtime tickets are signed now, not stored (two writes per socket were most of a
-- connect's cost): their table goes. Tickets issued before the upgrade are refused, which
-- costs clients a new one (POST /v1/realtime/tickets), nothing else.

-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS room_events_xid_only_idx ON room_events (xid);
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
DROP TABLE IF EXISTS realtime_tickets;

-- +goose Down
CREATE TABLE IF NOT EXISTS realtime_tickets (
    ticket_hash bytea       PRIMARY KEY CHECK (length(ticket_hash) = 32),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS realtime_tickets_expires_at_idx ON realtime_tickets (expires_at);
DROP INDEX CONCURRENTLY IF EXISTS sessions_revoked_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS room_events_xid_only_idx;
