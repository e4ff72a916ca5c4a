-- Rooms, membership, messages and the room event log.
--
-- Every change in a room appends a row to room_events with the room's next seq, taken by
-- bumping rooms.last_seq under the room's row lock: per room, seqs are gap-free and in commit
-- order. Each event also records the id of the transaction that wrote it (xid8), so a sync
-- token can be a PostgreSQL snapshot: "the events committed since" is then exact across rooms
-- and instances, however transactions interleave.

-- +goose Up
CREATE TABLE server_secrets (
    name       text        PRIMARY KEY,
    secret     bytea       NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Signs opaque cursors and sync tokens so a forged or damaged one is refused. Shared by every
-- instance through the database; it protects integrity, not secrets.
INSERT INTO server_secrets (name, secret)
VALUES ('cursor', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

CREATE TABLE rooms (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- Lower-cased name in the C collation: prefix search and keyset paging on one index.
    name_key          text        COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED,
    topic             text        NOT NULL DEFAULT '' CHECK (length(topic) <= 500),
    visibility        text        NOT NULL CHECK (visibility IN ('public', 'private')),
    entry_price       bigint      NOT NULL DEFAULT 0 CHECK (entry_price >= 0),
    owner_id          uuid        NOT NULL REFERENCES users (id),
    slow_mode_seconds integer     NOT NULL DEFAULT 0 CHECK (slow_mode_seconds BETWEEN 0 AND 86400),
    member_count      integer     NOT NULL DEFAULT 0 CHECK (member_count >= 0),
    -- The seq of the room's latest event; bumped under the row lock for each new event.
    last_seq          bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    archived_at       timestamptz,
    deleted_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rooms_public_name_idx ON rooms (name_key, id)
    WHERE visibility = 'public' AND deleted_at IS NULL;

-- Current members only; leaving deletes the row (the period below keeps the history).
CREATE TABLE room_members (
    room_id      uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         text        NOT NULL CHECK (role IN ('owner', 'moderator', 'member')),
    joined_at    timestamptz NOT NULL DEFAULT now(),
    joined_seq   bigint      NOT NULL,
    read_seq     bigint      NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
    muted_until  timestamptz,
    last_sent_at timestamptz,
    PRIMARY KEY (room_id, user_id)
);

CREATE INDEX room_members_user_idx ON room_members (user_id, joined_at, room_id);

-- Which stretches of a room's log a user may read: from their member.joined event to their
-- member.left/kicked/banned event (open while they are a member). Sync reads through these.
CREATE TABLE room_member_periods (
    room_id  uuid   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id  uuid   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    from_seq bigint NOT NULL,
    to_seq   bigint CHECK (to_seq IS NULL OR to_seq >= from_seq),
    PRIMARY KEY (user_id, room_id, from_seq)
);

CREATE UNIQUE INDEX room_member_periods_open_idx ON room_member_periods (user_id, room_id) WHERE to_seq IS NULL;

CREATE TABLE room_invites (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    invited_by uuid        NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE INDEX room_invites_user_idx ON room_invites (user_id, created_at, room_id);

CREATE TABLE room_bans (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by  uuid        NOT NULL REFERENCES users (id),
    until      timestamptz,
    reason     text        NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE messages (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id       uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           bigint      NOT NULL,
    author_id     uuid        NOT NULL REFERENCES users (id),
    client_msg_id uuid        NOT NULL,
    -- NULL exactly when deleted: a tombstone keeps no body.
    body          text        CHECK (length(body) BETWEEN 1 AND 4000 AND octet_length(body) <= 16000),
    reply_to      uuid        REFERENCES messages (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    edited_at     timestamptz,
    deleted_at    timestamptz,
    CHECK ((body IS NULL) = (deleted_at IS NOT NULL)),
    CONSTRAINT messages_room_seq_key UNIQUE (room_id, seq),
    CONSTRAINT messages_client_msg_id_key UNIQUE (room_id, author_id, client_msg_id)
);

CREATE TABLE reactions (
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text        NOT NULL CHECK (octet_length(emoji) BETWEEN 1 AND 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE room_events (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL CHECK (seq > 0),
    -- The writing transaction: sync tokens are snapshots, compared with pg_visible_in_snapshot.
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    type       text        NOT NULL,
    actor_id   uuid        NOT NULL REFERENCES users (id),
    user_id    uuid        REFERENCES users (id),
    message_id uuid        REFERENCES messages (id) ON DELETE CASCADE,
    data       jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);

CREATE INDEX room_events_xid_idx ON room_events (room_id, xid);

-- +goose Down
DROP TABLE room_events;
DROP TABLE reactions;
DROP TABLE messages;
DROP TABLE room_bans;
DROP TABLE room_invites;
DROP TABLE room_member_periods;
DROP TABLE room_members;
DROP TABLE rooms;
DROP TABLE server_secrets;
