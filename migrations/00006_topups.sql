-- Top-ups: buying credits through a payment provider (Stripe Checkout, or the offline
-- sandbox that plays Stripe's part), the provider's webhook events, and the sandbox's own
-- record of its checkout sessions.
--
-- A top-up moves pending → succeeded (credits minted, exactly once: the ledger key is
-- `topup:<id>:mint`) or pending → expired / failed; every move is a conditional update.

-- +goose Up
CREATE TABLE topups (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid        NOT NULL REFERENCES users (id),
    package_id          text        NOT NULL,
    credits             bigint      NOT NULL CHECK (credits > 0),
    amount              bigint      NOT NULL CHECK (amount > 0),
    currency            text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    provider            text        NOT NULL CHECK (provider IN ('stripe', 'sandbox')),
    status              text        NOT NULL DEFAULT 'pending'
                                    CHECK (status IN ('pending', 'succeeded', 'expired', 'failed', 'refunded')),
    checkout_session_id text,
    checkout_url        text,
    payment_intent_id   text,
    expires_at          timestamptz NOT NULL,
    succeeded_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT topups_checkout_session_id_key UNIQUE (checkout_session_id),
    CHECK ((status = 'succeeded') <= (succeeded_at IS NOT NULL))
);

CREATE INDEX topups_user_idx ON topups (user_id, created_at);
CREATE INDEX topups_pending_idx ON topups (created_at) WHERE status = 'pending';

-- Webhook events as received, once per event id (Stripe retries and duplicates them).
CREATE TABLE payment_events (
    id           text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 255),
    type         text        NOT NULL,
    payload      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);

-- The sandbox provider's checkout sessions: the authoritative payment state when Parlor
-- plays Stripe's part offline.
CREATE TABLE sandbox_sessions (
    id             text        PRIMARY KEY,
    topup_id       uuid        NOT NULL UNIQUE REFERENCES topups (id),
    amount         bigint      NOT NULL,
    currency       text        NOT NULL,
    status         text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'complete', 'expired')),
    payment_status text        NOT NULL DEFAULT 'unpaid' CHECK (payment_status IN ('unpaid', 'paid')),
    payment_intent text,
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE sandbox_sessions;
DROP TABLE payment_events;
DROP TABLE topups;
