-- What a room and its messages looked like at any seq, so that a former member reads the
-- stretch of the log they were a member for as it was when they left: an edit, a reaction or
-- a room change made later must not reach them through an earlier event.
--
-- message_revisions keeps each version of a message body that an edit replaced, until the
-- seq of that edit; deleting a message erases its revisions with its body (deleted text is
-- kept nowhere). room_revisions does the same for a room's settings. Reactions need no table
-- of their own: their events are the history, and an index finds a message's. Periods get an
-- index by room to count a room's members at a seq.
--
-- NO TRANSACTION and CONCURRENTLY: the indexes on the event log and the periods must not
-- block a running deployment's writes while they build.

-- +goose NO TRANSACTION
-- +goose Up
CREATE TABLE IF NOT EXISTS message_revisions (
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    -- The seq of the message.edited event that replaced this version.
    until_seq  bigint      NOT NULL,
    body       text        NOT NULL,
    edited_at  timestamptz,
    PRIMARY KEY (message_id, until_seq)
);

CREATE TABLE IF NOT EXISTS room_revisions (
    room_id           uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    -- The seq of the room.updated event that replaced these settings.
    until_seq         bigint      NOT NULL,
    name              text        NOT NULL,
    topic             text        NOT NULL,
    slow_mode_seconds integer     NOT NULL,
    archived_at       timestamptz,
    PRIMARY KEY (room_id, until_seq)
);

CREATE INDEX CONCURRENTLY IF NOT EXISTS room_events_reactions_idx ON room_events (message_id, seq)
    WHERE type IN ('reaction.added', 'reaction.removed');
CREATE INDEX CONCURRENTLY IF NOT EXISTS room_member_periods_room_idx ON room_member_periods (room_id, from_seq);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS room_member_periods_room_idx;
DROP INDEX CONCURRENTLY IF EXISTS room_events_reactions_idx;
DROP TABLE IF EXISTS room_revisions;
DROP TABLE IF EXISTS message_revisions;
