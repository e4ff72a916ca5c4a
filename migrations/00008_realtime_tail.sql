-- The realtime fan-out reads every room's new events by transaction id ("everything
-- committed since this snapshot"), and looks for recently revoked sessions to close their
-- sockets; both need an index of their own. CONCURRENTLY: building them must not block the
-- writes of a running deployment.
--
-- Realtime tickets live 30 seconds and are written twice per socket (issued, then used up):
-- UNLOGGED spares each socket two WAL flushes. After a crash or a failover the table is
-- empty, which costs clients a new ticket (POST /v1/realtime/tickets), nothing else.

-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS room_events_xid_only_idx ON room_events (xid);
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
ALTER TABLE realtime_tickets SET UNLOGGED;

-- +goose Down
ALTER TABLE realtime_tickets SET LOGGED;
DROP INDEX CONCURRENTLY IF EXISTS sessions_revoked_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS room_events_xid_only_idx;
