-- The sync query reads the events left to read for a token (at most APP_SYNC_MAX_BACKLOG + 1
-- of them) before it sorts them; with seq in the index that read is an index-only scan
-- instead of a heap fetch per event. The index replaces room_events_xid_idx, whose key it
-- keeps. CONCURRENTLY: building it must not block the writes of a running deployment.

-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS room_events_room_xid_seq_idx ON room_events (room_id, xid) INCLUDE (seq);
DROP INDEX CONCURRENTLY IF EXISTS room_events_xid_idx;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS room_events_xid_idx ON room_events (room_id, xid);
DROP INDEX CONCURRENTLY IF EXISTS room_events_room_xid_seq_idx;
