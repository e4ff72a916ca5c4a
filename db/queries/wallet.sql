-- name: EnsureUserAccount :exec
INSERT INTO ledger_accounts (kind, user_id) VALUES ('user', @user_id::uuid)
ON CONFLICT (user_id) DO NOTHING;

-- name: GetUserAccount :one
SELECT * FROM ledger_accounts WHERE user_id = @user_id::uuid;

-- name: GetSystemAccount :one
SELECT * FROM ledger_accounts WHERE code = @code::text;

-- name: LockAccounts :many
-- Row locks on every account a posting touches, taken in id order so two postings never
-- wait on each other in a cycle.
SELECT * FROM ledger_accounts WHERE id = ANY(@ids::uuid[]) ORDER BY id FOR UPDATE;

-- name: InsertLedgerTransaction :one
-- No row when the key exists already: the posting was made before.
INSERT INTO ledger_transactions (idempotency_key, kind, room_id, topup_id, tip_id, memo)
VALUES (@idempotency_key, @kind, sqlc.narg('room_id'), sqlc.narg('topup_id'), sqlc.narg('tip_id'), @memo)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING *;

-- name: GetLedgerTransactionByKey :one
SELECT * FROM ledger_transactions WHERE idempotency_key = @idempotency_key;

-- name: AddToBalance :one
UPDATE ledger_accounts SET balance = balance + @amount WHERE id = @id RETURNING balance;

-- name: InsertLedgerEntry :exec
INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, counterparty_user_id)
VALUES (@transaction_id, @account_id, @amount, @balance_after, sqlc.narg('counterparty_user_id'));

-- name: ListAccountEntries :many
-- A wallet's history, newest first, keyset-paged on the entry id.
SELECT e.id, e.amount, e.balance_after, e.counterparty_user_id, e.created_at,
       t.id AS transaction_id, t.kind, t.room_id, t.topup_id, t.tip_id, t.memo
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.account_id = @account_id AND e.id < @before_id
ORDER BY e.id DESC
LIMIT @lim;

-- name: InsertTip :one
INSERT INTO tips (id, room_id, sender_id, recipient_id, amount, message, transaction_id, seq)
VALUES (@id, @room_id, @sender_id, @recipient_id, @amount, @message, @transaction_id, @seq)
RETURNING *;

-- name: GetTip :one
SELECT * FROM tips WHERE id = @id;

-- name: ClaimIdempotencyKey :one
-- Claims (user, key) for a new request at @now. A row comes back only when this request
-- now owns the key: it was free, expired (created before @expired_before: past the
-- retention, so its reuse is a new request), or abandoned while in flight (locked before
-- @stale_before, e.g. by a crashed instance). The row's created_at names the claim.
INSERT INTO idempotency_keys (user_id, key, request_hash, created_at, locked_at)
VALUES (@user_id, @key, @request_hash, @now, @now)
ON CONFLICT (user_id, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status = NULL, content_type = NULL, body = NULL,
    created_at = CASE WHEN idempotency_keys.created_at < @expired_before THEN EXCLUDED.created_at
                      ELSE idempotency_keys.created_at END,
    locked_at = EXCLUDED.locked_at
WHERE idempotency_keys.created_at < @expired_before
   OR (idempotency_keys.status IS NULL AND idempotency_keys.request_hash = EXCLUDED.request_hash
       AND idempotency_keys.locked_at < @stale_before)
RETURNING created_at;

-- name: GetIdempotencyKey :one
SELECT * FROM idempotency_keys WHERE user_id = @user_id AND key = @key;

-- name: FinishIdempotencyKey :exec
UPDATE idempotency_keys SET status = @status, content_type = @content_type, body = @body
WHERE user_id = @user_id AND key = @key AND status IS NULL;

-- name: ReleaseIdempotencyKey :exec
-- Unlocks a key whose request ended without a response to replay (a 5xx, a 429): a retry of
-- the same request claims it at once. The row stays, so the retry keeps the claim (its
-- created_at) and names the same tip as the first attempt did.
UPDATE idempotency_keys SET locked_at = 'epoch'
WHERE user_id = @user_id AND key = @key AND status IS NULL;

-- name: PruneIdempotencyKeys :execrows
DELETE FROM idempotency_keys WHERE created_at < @expired_before;

-- name: CreateTopup :one
INSERT INTO topups (user_id, package_id, credits, amount, currency, provider, expires_at, next_check_at)
VALUES (@user_id, @package_id, @credits, @amount, @currency, @provider, @expires_at, @next_check_at)
RETURNING *;

-- name: SetTopupCheckout :one
UPDATE topups SET checkout_session_id = @checkout_session_id, checkout_url = @checkout_url, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: GetTopup :one
SELECT * FROM topups WHERE id = @id;

-- name: LockTopup :one
SELECT * FROM topups WHERE id = @id FOR UPDATE;

-- name: TopupBySession :one
SELECT * FROM topups WHERE checkout_session_id = @checkout_session_id;

-- name: MoveTopup :one
-- A state-machine step: only from one of the allowed states; no row when it does not apply.
UPDATE topups SET status = @status::text, updated_at = now(),
    payment_intent_id = coalesce(sqlc.narg('payment_intent_id'), payment_intent_id),
    succeeded_at = coalesce(succeeded_at, CASE WHEN @status::text = 'succeeded' THEN now() END)
WHERE id = @id AND status = ANY(@from_statuses::text[])
RETURNING *;

-- name: CountPendingTopups :one
SELECT count(*)::bigint FROM topups WHERE user_id = @user_id AND status = 'pending';

-- name: DuePendingTopups :many
-- The pending top-ups whose check is due, longest waiting first; each visit reschedules its
-- top-up (ScheduleTopupCheck), so every pending top-up comes up in turn.
SELECT * FROM topups WHERE status = 'pending' AND next_check_at <= @now
ORDER BY next_check_at LIMIT @lim;

-- name: ScheduleTopupCheck :exec
UPDATE topups SET next_check_at = @next_check_at, check_attempts = check_attempts + 1
WHERE id = @id AND status = 'pending';

-- name: ClaimTopupProviderCheck :one
-- Claims the right to ask the provider about a pending top-up on a read: no row when
-- another read asked after @checked_before.
UPDATE topups SET provider_checked_at = @now::timestamptz
WHERE id = @id AND status = 'pending'
  AND (provider_checked_at IS NULL OR provider_checked_at <= @checked_before::timestamptz)
RETURNING id;

-- name: InsertPaymentEvent :one
-- No row when the event was received before.
INSERT INTO payment_events (id, type, payload) VALUES (@id, @type, @payload)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: GetPaymentEvent :one
SELECT * FROM payment_events WHERE id = @id;

-- name: MarkPaymentEventProcessed :exec
UPDATE payment_events SET processed_at = now() WHERE id = @id AND processed_at IS NULL;

-- name: CreateSandboxSession :one
INSERT INTO sandbox_sessions (id, topup_id, amount, currency, expires_at)
VALUES (@id, @topup_id, @amount, @currency, @expires_at)
ON CONFLICT (topup_id) DO UPDATE SET topup_id = EXCLUDED.topup_id
RETURNING *;

-- name: GetSandboxSession :one
SELECT * FROM sandbox_sessions WHERE id = @id;

-- name: CompleteSandboxSession :one
UPDATE sandbox_sessions SET status = @status, payment_status = @payment_status, payment_intent = sqlc.narg('payment_intent'),
    payment_intent_status = sqlc.narg('payment_intent_status')
WHERE id = @id AND status = 'open'
RETURNING *;

-- name: FinishSandboxPayment :one
-- A delayed payment that was processing succeeds or fails; no row when there is none.
UPDATE sandbox_sessions SET payment_status = @payment_status, payment_intent_status = @payment_intent_status::text
WHERE id = @id AND status = 'complete' AND payment_intent_status = 'processing'
RETURNING *;

-- name: AddToBalanceBelowZero :one
-- A reversal's debit: it may take a wallet below zero, and the floor follows it down.
UPDATE ledger_accounts SET floor = least(floor, balance + @amount), balance = balance + @amount
WHERE id = @id RETURNING balance;

-- name: TopupByPaymentIntent :one
SELECT * FROM topups WHERE payment_intent_id = @payment_intent_id;

-- name: RaiseTopupAmountRefunded :one
-- Records what the provider reports refunded, cumulative; an older, lower figure changes
-- nothing. Returns the figure now recorded.
UPDATE topups SET amount_refunded = greatest(amount_refunded, @amount_refunded), updated_at = now()
WHERE id = @id
RETURNING amount_refunded;

-- name: SumTopupReversals :one
-- Credits taken back from a top-up by kind (refunds; disputes net of reinstatements).
SELECT coalesce(sum(-e.amount) FILTER (WHERE l.kind = 'refund'), 0)::bigint AS refunded,
       coalesce(sum(-e.amount) FILTER (WHERE l.kind = 'dispute'), 0)::bigint AS disputed
FROM ledger_transactions l
JOIN ledger_entries e ON e.transaction_id = l.id
JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'user'
WHERE l.topup_id = @topup_id::uuid AND l.kind IN ('refund', 'dispute');

-- name: UpsertTopupDispute :one
-- Records a dispute's state, only forward (inquiry → open → closed | won | lost): an older
-- event arriving late, or a repeat, changes nothing (no row).
INSERT INTO topup_disputes (id, topup_id, amount, status)
VALUES (@id, @topup_id, @amount, @status)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, amount = EXCLUDED.amount, updated_at = now()
WHERE (CASE EXCLUDED.status WHEN 'inquiry' THEN 0 WHEN 'open' THEN 1 ELSE 2 END)
    > (CASE topup_disputes.status WHEN 'inquiry' THEN 0 WHEN 'open' THEN 1 ELSE 2 END)
RETURNING *;

-- name: GetTopupDispute :one
SELECT * FROM topup_disputes WHERE id = @id;

-- name: SetTopupDisputeCredits :exec
UPDATE topup_disputes SET credits = @credits WHERE id = @id;

-- name: ListTopupDisputes :many
SELECT * FROM topup_disputes WHERE topup_id = @topup_id ORDER BY created_at, id;

-- name: LockUserTopups :exec
-- Serializes one user's top-up creations (a transaction-scoped advisory lock), so the cap
-- on pending top-ups holds under concurrent requests.
SELECT pg_advisory_xact_lock(hashtextextended('topups:' || (sqlc.arg(user_id)::uuid)::text, 0));

-- name: InsertAdminAction :one
INSERT INTO admin_actions (admin_id, action, target_user_id, target_topup_id, reason, detail)
VALUES (@admin_id, @action, sqlc.narg('target_user_id'), sqlc.narg('target_topup_id'), @reason, @detail)
RETURNING *;

-- name: ListAdminActions :many
-- The admin audit log, newest first, keyset-paged on the id.
SELECT * FROM admin_actions WHERE id < @before_id ORDER BY id DESC LIMIT @lim;

-- name: ListUserTopups :many
-- A user's top-ups, newest first (bounded: the admin view of a wallet).
SELECT * FROM topups WHERE user_id = @user_id ORDER BY created_at DESC, id DESC LIMIT @lim;

-- name: ListDisputesOfTopups :many
SELECT * FROM topup_disputes WHERE topup_id = ANY(@topup_ids::uuid[]) ORDER BY created_at, id;

-- name: WaitingReversalEvents :many
-- Refund and dispute events of a payment not processed yet: booked once its top-up is
-- credited (payment_events_waiting_reversals_idx).
SELECT id FROM payment_events
WHERE processed_at IS NULL AND (type = 'charge.refunded' OR type LIKE 'charge.dispute.%')
  AND payload -> 'data' -> 'object' ->> 'payment_intent' = @payment_intent::text
ORDER BY received_at;
