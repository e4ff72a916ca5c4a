-- Money the provider takes back after a payment: refunds made at Stripe (full or partial,
-- from the Dashboard or by Parlor), disputes (funds withdrawn when opened, reinstated when
-- won), each booked in the ledger exactly once.
--
-- Debt: a reversal takes the credits back even when the buyer spent some, so a wallet may
-- go below zero — only through a reversal. ledger_accounts.floor records how low a
-- reversal took it (never above 0); the balance may not go below the floor, and every other
-- debit is refused once the balance is below zero (Post), so a wallet in debt cannot spend
-- until credits (a top-up, a tip received) bring it back to zero.

-- +goose Up
ALTER TABLE ledger_accounts ADD COLUMN floor bigint NOT NULL DEFAULT 0 CHECK (floor <= 0);
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_user_balance_nonnegative;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_user_balance_nonnegative
    CHECK (kind <> 'user' OR balance >= floor);

ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('topup', 'refund', 'room_entry', 'tip', 'adjustment', 'dispute'));

ALTER TABLE topups DROP CONSTRAINT topups_status_check;
ALTER TABLE topups ADD CONSTRAINT topups_status_check
    CHECK (status IN ('pending', 'succeeded', 'expired', 'failed', 'refunded', 'review',
                      'partially_refunded', 'disputed', 'charged_back'));
-- What the provider reports refunded of the payment, cumulative (minor units): refunds are
-- booked up to it, so events in any order and number book each refund once.
ALTER TABLE topups ADD COLUMN amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0);
CREATE INDEX topups_payment_intent_idx ON topups (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

-- A dispute of a top-up's payment, as the provider reports it. status: inquiry (Stripe's
-- warning_needs_response / warning_under_review: nothing withdrawn), open (needs_response,
-- under_review: funds withdrawn), and the final closed (an inquiry closed, warning_closed),
-- won (reinstated) or lost. It only moves forward: inquiry → open → closed | won | lost.
CREATE TABLE topup_disputes (
    id         text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 255),
    topup_id   uuid        NOT NULL REFERENCES topups (id),
    amount     bigint      NOT NULL CHECK (amount > 0),
    status     text        NOT NULL CHECK (status IN ('inquiry', 'open', 'closed', 'won', 'lost')),
    credits    bigint      NOT NULL DEFAULT 0 CHECK (credits >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX topup_disputes_topup_idx ON topup_disputes (topup_id);

-- Refund and dispute events that could not be booked yet (their payment's top-up not
-- credited yet) are found by their PaymentIntent when it is, and booked then.
CREATE INDEX payment_events_waiting_reversals_idx ON payment_events ((payload -> 'data' -> 'object' ->> 'payment_intent'))
    WHERE processed_at IS NULL AND (type = 'charge.refunded' OR type LIKE 'charge.dispute.%');

-- A top-up's reversals are summed under its row lock on every refund and dispute event.
CREATE INDEX ledger_transactions_topup_idx ON ledger_transactions (topup_id) WHERE topup_id IS NOT NULL;

-- +goose Down
DROP INDEX ledger_transactions_topup_idx;
DROP INDEX payment_events_waiting_reversals_idx;
DROP TABLE topup_disputes;
DROP INDEX topups_payment_intent_idx;
ALTER TABLE topups DROP COLUMN amount_refunded;
ALTER TABLE topups DROP CONSTRAINT topups_status_check;
UPDATE topups SET status = 'refunded' WHERE status IN ('partially_refunded', 'charged_back');
UPDATE topups SET status = 'succeeded' WHERE status = 'disputed';
ALTER TABLE topups ADD CONSTRAINT topups_status_check
    CHECK (status IN ('pending', 'succeeded', 'expired', 'failed', 'refunded', 'review'));
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('topup', 'refund', 'room_entry', 'tip', 'adjustment', 'dispute'));
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_user_balance_nonnegative;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_user_balance_nonnegative
    CHECK (kind <> 'user' OR balance >= 0) NOT VALID;
ALTER TABLE ledger_accounts DROP COLUMN floor;
