-- Top-ups that need an operator's eye. Read-only.
--
--   psql "$DB_URL" -f scripts/stuck-topups.sql
--
-- The reconciler (a River job every five minutes) visits pending top-ups whose check is due
-- (five minutes after creation, then backing off from 1 min to 1 h), settling them with the
-- provider or opening a missing session; anything listed here has resisted that.

-- 1. Pending longer than their checkout could stay open (plus a grace period): the
--    provider should have completed or expired them by now.
SELECT 'pending_past_expiry' AS problem, t.id AS topup_id, t.user_id, t.provider,
       t.checkout_session_id, t.created_at, t.expires_at
FROM topups t
WHERE t.status = 'pending' AND t.expires_at < now() - interval '15 minutes'
ORDER BY t.created_at;

-- 2. Pending without a checkout session: creating it failed half-way, and the reconciler
--    could not open it since (check_attempts says how often it tried).
SELECT 'pending_without_session' AS problem, t.id AS topup_id, t.user_id, t.created_at, t.check_attempts, t.next_check_at
FROM topups t
WHERE t.status = 'pending' AND t.checkout_session_id IS NULL AND t.created_at < now() - interval '10 minutes'
ORDER BY t.created_at;

-- 2b. Paid at the provider for another amount or currency than the package's price:
--     nothing was credited; decide (refund at the provider, or credit by an adjustment).
SELECT 'awaiting_review' AS problem, t.id AS topup_id, t.user_id, t.package_id, t.amount, t.currency,
       t.payment_intent_id, t.updated_at
FROM topups t
WHERE t.status = 'review'
ORDER BY t.updated_at;

-- 3. Succeeded without their mint in the ledger, or minted without having succeeded.
SELECT 'succeeded_without_mint' AS problem, t.id AS topup_id, t.user_id, t.succeeded_at
FROM topups t
WHERE t.status IN ('succeeded', 'refunded', 'partially_refunded', 'disputed', 'charged_back')
  AND NOT EXISTS (SELECT 1 FROM ledger_transactions l WHERE l.idempotency_key = 'topup:' || t.id || ':mint');

SELECT 'minted_without_success' AS problem, t.id AS topup_id, t.user_id, t.status
FROM topups t
JOIN ledger_transactions l ON l.idempotency_key = 'topup:' || t.id || ':mint'
WHERE t.status NOT IN ('succeeded', 'refunded', 'partially_refunded', 'disputed', 'charged_back');

-- 4. Webhook events stored more than ten minutes ago and still not processed (their River
--    job is retrying or was discarded: see river_job for its errors).
SELECT 'unprocessed_webhook' AS problem, e.id AS event_id, e.type, e.received_at,
       j.state AS job_state, j.attempt, j.errors[array_upper(j.errors, 1)] ->> 'error' AS last_error
FROM payment_events e
LEFT JOIN river_job j ON j.kind = 'payment_event' AND j.args ->> 'event_id' = e.id
WHERE e.processed_at IS NULL AND (e.type LIKE 'checkout.session.%' OR e.type = 'charge.refunded' OR e.type LIKE 'charge.dispute.%')
  AND e.received_at < now() - interval '10 minutes'
ORDER BY e.received_at;
