-- The sandbox plays a delayed payment method (SEPA Debit, ACH, …) as Stripe does: the
-- session completes unpaid while its PaymentIntent is processing, then the payment fails
-- (the intent goes back to requires_payment_method) and the session stays complete and
-- unpaid. Only the intent's status tells a failed payment from one still on its way, so the
-- sandbox records it.

-- +goose Up
ALTER TABLE sandbox_sessions ADD COLUMN payment_intent_status text
    CHECK (payment_intent_status IN ('processing', 'succeeded', 'requires_payment_method', 'canceled'));

-- Sessions paid before this migration were paid by card: their intent succeeded.
UPDATE sandbox_sessions SET payment_intent_status = 'succeeded' WHERE payment_status = 'paid';

-- +goose Down
ALTER TABLE sandbox_sessions DROP COLUMN payment_intent_status;
