-- The credit wallet: a double-entry ledger, tips, and the Idempotency-Key store of the API.
--
-- Every movement of credits is one ledger transaction with a unique, deterministic
-- idempotency key (`tip:<id>`, `entry:<room>:<user>`, `topup:<id>:mint`, …) and two or more
-- entries that sum to zero. Entries are append-only: the database refuses to change or
-- remove them. An account's balance is kept on its row (changed under its row lock, in the
-- same transaction as the entries) and always equals the sum of its entries; a user's may
-- never go negative (CHECK), system accounts (issuance, platform fees) may.

-- +goose Up
CREATE TABLE ledger_accounts (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    kind       text        NOT NULL CHECK (kind IN ('user', 'system')),
    -- A user's wallet, or a system account named by code.
    user_id    uuid        REFERENCES users (id),
    code       text        CHECK (code ~ '^[a-z_]{1,32}$'),
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    CHECK ((kind = 'system') = (code IS NOT NULL)),
    CONSTRAINT ledger_accounts_user_balance_nonnegative CHECK (kind <> 'user' OR balance >= 0),
    CONSTRAINT ledger_accounts_user_key UNIQUE (user_id),
    CONSTRAINT ledger_accounts_code_key UNIQUE (code)
);

-- issuance: where credits come from (minted against a confirmed payment) and go back to
-- (refunds); its balance is minus the credits in circulation. platform_fees: the platform's
-- cut of paid-room entries.
INSERT INTO ledger_accounts (kind, code) VALUES ('system', 'issuance'), ('system', 'platform_fees');

CREATE TABLE ledger_transactions (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Deterministic per money path: a second posting with the same key is a no-op.
    idempotency_key text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    kind            text        NOT NULL CHECK (kind IN ('topup', 'refund', 'room_entry', 'tip', 'adjustment')),
    -- What it was for: the room, the other party, the top-up, the tip (when they apply).
    room_id         uuid        REFERENCES rooms (id),
    topup_id        uuid,
    tip_id          uuid,
    memo            text        NOT NULL DEFAULT '' CHECK (length(memo) <= 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_transactions_idempotency_key_key UNIQUE (idempotency_key)
);

CREATE TABLE ledger_entries (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id uuid        NOT NULL REFERENCES ledger_transactions (id),
    account_id     uuid        NOT NULL REFERENCES ledger_accounts (id),
    -- Positive credits the account, negative debits it; never zero.
    amount         bigint      NOT NULL CHECK (amount <> 0),
    -- The account's balance right after this entry.
    balance_after  bigint      NOT NULL,
    -- The other side, for a user's history ("tip to Bob", "entry to a room owned by Ann").
    counterparty_user_id uuid  REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id);
CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id);

-- +goose StatementBegin
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Backstop for "every transaction sums to zero", checked at commit (entries of one
-- transaction are inserted one by one).
-- +goose StatementBegin
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(amount) INTO total FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.transaction_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE TABLE tips (
    id             uuid        PRIMARY KEY,
    room_id        uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    sender_id      uuid        NOT NULL REFERENCES users (id),
    recipient_id   uuid        NOT NULL REFERENCES users (id),
    amount         bigint      NOT NULL CHECK (amount > 0),
    message        text        NOT NULL DEFAULT '' CHECK (length(message) <= 280),
    transaction_id uuid        NOT NULL REFERENCES ledger_transactions (id),
    seq            bigint      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (sender_id <> recipient_id)
);

-- The API's Idempotency-Key store: per user and key, the request's fingerprint and, once
-- finished, the response to replay. Kept at least 24 hours.
CREATE TABLE idempotency_keys (
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of method, route, path parameters and body.
    request_hash bytea       NOT NULL CHECK (length(request_hash) = 32),
    -- NULL while the first request is still running.
    status       integer,
    content_type text,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    locked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE tips;
DROP TABLE ledger_entries;
DROP TABLE ledger_transactions;
DROP TABLE ledger_accounts;
DROP FUNCTION ledger_check_balanced();
DROP FUNCTION ledger_refuse_change();
