-- Ledger reconciliation: each query returns the rows that break an invariant of the
-- wallet ledger, so a healthy ledger returns nothing at all.
--
--   psql "$DB_URL" -f scripts/ledger-reconciliation.sql
--
-- Read-only; safe to run at any time (each query sees one consistent snapshot).

-- 1. Transactions whose entries do not sum to zero (or that have fewer than two entries).
SELECT 'unbalanced_transaction' AS problem, t.id AS transaction_id, t.idempotency_key,
       coalesce(sum(e.amount), 0) AS entries_sum, count(e.id) AS entry_count
FROM ledger_transactions t
LEFT JOIN ledger_entries e ON e.transaction_id = t.id
GROUP BY t.id, t.idempotency_key
HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) < 2;

-- 2. Accounts whose balance is not the sum of their entries.
SELECT 'balance_mismatch' AS problem, a.id AS account_id, a.kind, a.user_id, a.code,
       a.balance, coalesce(s.total, 0) AS entries_sum
FROM ledger_accounts a
LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) s
       ON s.account_id = a.id
WHERE a.balance <> coalesce(s.total, 0);

-- 3. User wallets below zero (the CHECK constraint should make this impossible).
SELECT 'negative_user_balance' AS problem, a.id AS account_id, a.user_id, a.balance
FROM ledger_accounts a
WHERE a.kind = 'user' AND a.balance < 0;
