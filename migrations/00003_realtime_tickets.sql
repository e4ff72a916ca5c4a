-- Single-use tickets that authenticate a WebSocket upgrade (browsers can't send headers).

-- +goose Up
CREATE TABLE realtime_tickets (
    -- SHA-256 of the ticket; the ticket itself is never stored.
    ticket_hash bytea       PRIMARY KEY CHECK (length(ticket_hash) = 32),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX realtime_tickets_expires_at_idx ON realtime_tickets (expires_at);

-- +goose Down
DROP TABLE realtime_tickets;
