-- Top-ups the reconciler can visit fairly, and a state for payments that do not match.
--
-- review: the provider reports the session paid, but not the amount or currency the
-- package cost at purchase. Nothing is minted; an operator looks at it (the payment is
-- real, so it is neither failed nor succeeded).
--
-- next_check_at / check_attempts: when the reconciler next asks the provider about a
-- pending top-up, and how often it has asked. Each visit moves the top-up to the back of
-- the line (1 min, doubling to 1 h), so every pending top-up is visited in turn, however
-- many there are.
--
-- provider_checked_at: when a read of the top-up (GET /v1/wallet/topups/{id}) last asked
-- the provider, so polling asks it at most once every few seconds.

-- +goose Up
ALTER TABLE topups DROP CONSTRAINT topups_status_check;
ALTER TABLE topups ADD CONSTRAINT topups_status_check
    CHECK (status IN ('pending', 'succeeded', 'expired', 'failed', 'refunded', 'review'));
ALTER TABLE topups
    ADD COLUMN next_check_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN check_attempts      integer     NOT NULL DEFAULT 0,
    ADD COLUMN provider_checked_at timestamptz;
UPDATE topups SET next_check_at = created_at + interval '5 minutes' WHERE status = 'pending';
DROP INDEX topups_pending_idx;
CREATE INDEX topups_pending_idx ON topups (next_check_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX topups_pending_idx;
CREATE INDEX topups_pending_idx ON topups (created_at) WHERE status = 'pending';
ALTER TABLE topups DROP COLUMN provider_checked_at, DROP COLUMN check_attempts, DROP COLUMN next_check_at;
UPDATE topups SET status = 'failed' WHERE status = 'review';
ALTER TABLE topups DROP CONSTRAINT topups_status_check;
ALTER TABLE topups ADD CONSTRAINT topups_status_check
    CHECK (status IN ('pending', 'succeeded', 'expired', 'failed', 'refunded'));
