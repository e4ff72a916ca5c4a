-- Ledger reconciliation: each query returns the rows that break an invariant of the
-- wallet ledger, so a healthy ledger returns nothing at all. Every row names its invariant
-- in a `problem` column.
--
--   psql "$DB_URL" -f scripts/ledger-reconciliation.sql
--
-- Read-only; safe to run at any time. `parlor ledger check` runs every query in one
-- read-only REPEATABLE READ transaction, so all of them see one consistent snapshot. psql
-- as above runs each query in a snapshot of its own (a payment committing in between can
-- show up as a passing problem); for one snapshot:
--
--   PGOPTIONS='-c default_transaction_isolation=repeatable\ read' psql "$DB_URL" -1 -f scripts/ledger-reconciliation.sql
--
-- What is checked, in order:
--   the books:      1-3   balanced transactions, balances = their entries, wallet floors
--   causes:         4-7   each transaction's kind, cause columns and idempotency key agree,
--                         and the top-up or tip it names exists
--   top-ups:        8-11  every paid top-up minted exactly once, exactly its credits, into its
--                         buyer's wallet from issuance, and only paid ones
--   refunds:        12-15 every refunded top-up clawed back exactly once, exactly its credits,
--                         and only refunded ones
--   tips, entries:  16-18 a tip's transaction moves the tip's amount from its sender to its
--                         recipient, a room entry's moves the room's price from its payer
--
-- Not checkable from the schema (see the README): whether Parlor and the payment provider
-- agree beyond what the provider's events stored (amount_refunded, disputes: 12 and 13
-- check the ledger against those; a payment or refund whose event never arrived is not in
-- the database), and a room entry against the price at the time of the join (rooms keep
-- only the current price, which no query changes today).

-- 1. Transactions whose entries do not sum to zero (or that have fewer than two entries).
SELECT 'unbalanced_transaction' AS problem, t.id AS transaction_id, t.idempotency_key,
       coalesce(sum(e.amount), 0)::bigint AS entries_sum, count(e.id) AS entry_count
FROM ledger_transactions t
LEFT JOIN ledger_entries e ON e.transaction_id = t.id
GROUP BY t.id, t.idempotency_key
HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) < 2
ORDER BY t.id;

-- 2. Accounts whose balance is not the sum of their entries.
SELECT 'balance_mismatch' AS problem, a.id AS account_id, a.kind, a.user_id, a.code,
       a.balance, coalesce(s.total, 0)::bigint AS entries_sum
FROM ledger_accounts a
LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) s
       ON s.account_id = a.id
WHERE a.balance <> coalesce(s.total, 0)
ORDER BY a.id;

-- 3. User wallets below their floor. The floor is written here and nowhere else: a wallet
--    may be below zero only by what reversals (refunds and disputes at the provider, which
--    take credits back even when they were spent) took from it, so its floor is minus
--    that; 0 for every wallet no reversal touched. The account's own floor column (what the
--    database holds the balance to) must not be lower either.
WITH wallet_floor AS (
    SELECT a.id AS account_id,
           -coalesce((SELECT sum(-e.amount) FROM ledger_entries e JOIN ledger_transactions l ON l.id = e.transaction_id
                      WHERE e.account_id = a.id AND e.amount < 0 AND l.kind IN ('refund', 'dispute')), 0)::bigint AS floor
    FROM ledger_accounts a
    WHERE a.kind = 'user'
)
SELECT 'user_balance_below_floor' AS problem, a.id AS account_id, a.user_id, a.balance, a.floor AS account_floor, f.floor
FROM ledger_accounts a
JOIN wallet_floor f ON f.account_id = a.id
WHERE a.balance < f.floor OR a.floor < f.floor
ORDER BY a.id;

-- 4. Transactions missing the cause their kind names: a mint or a refund its top-up, a tip
--    its tip and room, a room entry its room. (Adjustments are an operator's, free-form.)
SELECT 'transaction_without_cause' AS problem, l.id AS transaction_id, l.kind, l.idempotency_key,
       l.topup_id, l.tip_id, l.room_id
FROM ledger_transactions l
WHERE (l.kind IN ('topup', 'refund', 'dispute') AND l.topup_id IS NULL)
   OR (l.kind = 'tip' AND (l.tip_id IS NULL OR l.room_id IS NULL))
   OR (l.kind = 'room_entry' AND l.room_id IS NULL)
ORDER BY l.id;

-- 5. Transactions naming a top-up or a tip that does not exist (topup_id and tip_id have no
--    foreign key: the tip row is written after its transaction; room_id has one).
SELECT 'cause_not_found' AS problem, l.id AS transaction_id, l.kind, l.idempotency_key,
       l.topup_id, l.tip_id
FROM ledger_transactions l
WHERE (l.topup_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM topups t WHERE t.id = l.topup_id))
   OR (l.tip_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tips p WHERE p.id = l.tip_id))
ORDER BY l.id;

-- 6. Transactions naming a cause their kind has nothing to do with (a mint naming a tip, a
--    tip naming a top-up, …).
SELECT 'cause_does_not_fit_kind' AS problem, l.id AS transaction_id, l.kind, l.idempotency_key,
       l.topup_id, l.tip_id, l.room_id
FROM ledger_transactions l
WHERE (l.kind IN ('topup', 'refund', 'dispute') AND (l.tip_id IS NOT NULL OR l.room_id IS NOT NULL))
   OR (l.kind = 'tip' AND l.topup_id IS NOT NULL)
   OR (l.kind = 'room_entry' AND (l.topup_id IS NOT NULL OR l.tip_id IS NOT NULL))
ORDER BY l.id;

-- 7. Idempotency keys that disagree with the kind and cause: the key is what makes a money
--    path post once (`topup:<id>:mint`, `topup:<id>:refund:<n>`, `tip:<id>`,
--    `entry:<room>:<user>`), so a mint under another key escaped that guard, and a key of
--    one path on a transaction of another kind is not counted where it belongs. (A missing
--    cause is query 4's, not repeated here.)
SELECT 'key_does_not_match_cause' AS problem, l.id AS transaction_id, l.kind, l.idempotency_key,
       l.topup_id, l.tip_id, l.room_id
FROM ledger_transactions l
WHERE CASE l.kind
          WHEN 'topup' THEN l.idempotency_key <> 'topup:' || l.topup_id || ':mint'
          WHEN 'refund' THEN l.idempotency_key NOT LIKE 'topup:' || l.topup_id || ':refund:%'
          WHEN 'dispute' THEN l.idempotency_key !~ ('^topup:' || l.topup_id || ':dispute:.+:(withdrawn|reinstated)$')
          WHEN 'tip' THEN l.idempotency_key <> 'tip:' || l.tip_id
          WHEN 'room_entry' THEN l.idempotency_key NOT LIKE 'entry:' || l.room_id || ':%'
          ELSE false
      END
   OR (l.idempotency_key ~ '^topup:.*:mint$' AND l.kind <> 'topup')
   OR (l.idempotency_key ~ '^topup:.*:refund:' AND l.kind <> 'refund')
   OR (l.idempotency_key ~ '^topup:.*:dispute:' AND l.kind <> 'dispute')
   OR (l.idempotency_key LIKE 'tip:%' AND l.kind <> 'tip')
   OR (l.idempotency_key LIKE 'entry:%' AND l.kind <> 'room_entry')
ORDER BY l.id;

-- 8. Paid top-ups without a mint: paid for, never credited. A top-up is credited in every
--    status but those a credit never reached (pending, expired, failed, and review: a
--    payment that did not match the price, held back for an operator): succeeded,
--    refunded, and whatever states follow a success later (disputes, partial refunds), so
--    a new status after success is held to its mint without changing this script.
SELECT 'succeeded_without_mint' AS problem, t.id AS topup_id, t.user_id, t.status, t.credits
FROM topups t
WHERE t.status NOT IN ('pending', 'expired', 'failed', 'review')
  AND NOT EXISTS (SELECT 1 FROM ledger_transactions l WHERE l.kind = 'topup' AND l.topup_id = t.id)
ORDER BY t.id;

-- 9. Top-ups minted more than once.
SELECT 'minted_more_than_once' AS problem, t.id AS topup_id, t.user_id, t.status, t.credits,
       count(*) AS mints, string_agg(l.idempotency_key, ', ' ORDER BY l.idempotency_key) AS keys
FROM topups t
JOIN ledger_transactions l ON l.kind = 'topup' AND l.topup_id = t.id
GROUP BY t.id
HAVING count(*) > 1
ORDER BY t.id;

-- 10. Mints for a top-up that was never paid (pending, expired, failed) or held for review:
--     credits granted before, or without, the provider's confirmation of the price.
SELECT 'minted_without_success' AS problem, t.id AS topup_id, t.user_id, t.status, t.credits,
       l.id AS transaction_id
FROM ledger_transactions l
JOIN topups t ON t.id = l.topup_id
WHERE l.kind = 'topup' AND t.status IN ('pending', 'expired', 'failed', 'review')
ORDER BY t.id, l.id;

-- 11. Mints that are not exactly the top-up's credits from issuance into its buyer's
--     wallet: mint_to_wrong_account when any entry touches another account (another user's
--     wallet, platform fees), else mint_wrong_amount.
SELECT CASE WHEN x.other_entries > 0 THEN 'mint_to_wrong_account' ELSE 'mint_wrong_amount' END AS problem,
       t.id AS topup_id, t.user_id, t.credits, l.id AS transaction_id,
       x.to_buyer, x.from_issuance, x.other_entries
FROM ledger_transactions l
JOIN topups t ON t.id = l.topup_id
LEFT JOIN ledger_accounts w ON w.user_id = t.user_id
CROSS JOIN (SELECT id FROM ledger_accounts WHERE code = 'issuance') i
CROSS JOIN LATERAL (
    SELECT coalesce(sum(e.amount) FILTER (WHERE e.account_id = w.id), 0)::bigint AS to_buyer,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = i.id), 0)::bigint AS from_issuance,
           count(*) FILTER (WHERE e.account_id IS DISTINCT FROM w.id AND e.account_id <> i.id) AS other_entries
    FROM ledger_entries e
    WHERE e.transaction_id = l.id
) x
WHERE l.kind = 'topup'
  AND (x.to_buyer <> t.credits OR x.from_issuance <> -t.credits OR x.other_entries > 0)
ORDER BY t.id, l.id;

-- 12. Refunds that do not add up: a top-up clawed back more than it minted by refunds and
--     open or lost disputes together (reversed_more_than_minted); a refunded top-up whose
--     refund clawbacks are not all its credits (refunded_without_clawback); or a credited
--     top-up whose stored amount_refunded owes more credits — its share, rounded up, within
--     what disputes left — than its clawbacks took (refund_not_booked; checked only while no
--     dispute is open, for an open one holds the credits a refund takes once it ends).
--     Refunds come in parts (partial refunds at the provider), each its own transaction.
WITH reversals AS (
    SELECT t.id AS topup_id,
           coalesce(sum(-e.amount) FILTER (WHERE l.kind = 'refund'), 0)::bigint AS refunded,
           coalesce(sum(-e.amount) FILTER (WHERE l.kind = 'dispute'), 0)::bigint AS disputed
    FROM topups t
    LEFT JOIN ledger_transactions l ON l.topup_id = t.id AND l.kind IN ('refund', 'dispute')
    LEFT JOIN ledger_entries e ON e.transaction_id = l.id
         AND e.account_id = (SELECT w.id FROM ledger_accounts w WHERE w.user_id = t.user_id)
    GROUP BY t.id
), owed AS (
    SELECT t.id AS topup_id, r.refunded, r.disputed,
           least(least(t.credits, (t.credits * t.amount_refunded + t.amount - 1) / t.amount), t.credits - r.disputed) AS refund_owed,
           t.status NOT IN ('pending', 'expired', 'failed', 'review')
               AND NOT EXISTS (SELECT 1 FROM topup_disputes d WHERE d.topup_id = t.id AND d.status IN ('inquiry', 'open')) AS settled
    FROM topups t
    JOIN reversals r ON r.topup_id = t.id
)
SELECT CASE WHEN o.refunded + o.disputed > t.credits THEN 'reversed_more_than_minted'
            WHEN t.status = 'refunded' AND o.refunded <> t.credits THEN 'refunded_without_clawback'
            ELSE 'refund_not_booked' END AS problem,
       t.id AS topup_id, t.user_id, t.status, t.credits, t.amount, t.amount_refunded, o.refunded, o.disputed
FROM topups t
JOIN owed o ON o.topup_id = t.id
WHERE o.refunded + o.disputed > t.credits
   OR (t.status = 'refunded' AND o.refunded <> t.credits)
   OR (o.settled AND o.refund_owed > o.refunded)
ORDER BY t.id;

-- 13. Disputes whose ledger disagrees with their state: an open or lost dispute must have
--     its credits withdrawn (and not given back), a won one given back all it withdrew, an
--     inquiry none.
WITH booked AS (
    SELECT d.id AS dispute_id,
           coalesce(sum(-e.amount) FILTER (WHERE l.idempotency_key LIKE '%:withdrawn'), 0)::bigint AS withdrawn,
           coalesce(sum(e.amount) FILTER (WHERE l.idempotency_key LIKE '%:reinstated'), 0)::bigint AS reinstated
    FROM topup_disputes d
    JOIN topups t ON t.id = d.topup_id
    LEFT JOIN ledger_transactions l ON l.topup_id = d.topup_id AND l.kind = 'dispute'
         AND l.idempotency_key LIKE 'topup:' || d.topup_id || ':dispute:' || d.id || ':%'
    LEFT JOIN ledger_entries e ON e.transaction_id = l.id
         AND e.account_id = (SELECT w.id FROM ledger_accounts w WHERE w.user_id = t.user_id)
    GROUP BY d.id
)
SELECT 'dispute_not_booked' AS problem, d.id AS dispute_id, d.topup_id, d.status, d.credits, b.withdrawn, b.reinstated
FROM topup_disputes d
JOIN booked b ON b.dispute_id = d.id
WHERE b.withdrawn <> d.credits
   OR (d.status = 'won' AND b.reinstated <> d.credits)
   OR (d.status <> 'won' AND b.reinstated <> 0)
   OR (d.status IN ('inquiry', 'closed') AND d.credits <> 0)
ORDER BY d.id;

-- 14. Reversals (refund clawbacks, dispute withdrawals) for a top-up that was never
--     credited, and top-ups whose state does not follow their reversals: charged_back only
--     with a lost dispute, disputed only with one open, partially_refunded only with some of
--     its credits refunded, succeeded only with none.
SELECT 'reversal_without_credit' AS problem, t.id AS topup_id, t.user_id, t.status, t.credits,
       l.id AS transaction_id, l.kind
FROM ledger_transactions l
JOIN topups t ON t.id = l.topup_id
WHERE l.kind IN ('refund', 'dispute') AND t.status IN ('pending', 'expired', 'failed', 'review')
UNION ALL
SELECT 'status_does_not_follow_reversals', t.id, t.user_id, t.status, t.credits, NULL, NULL
FROM topups t
WHERE (t.status = 'charged_back' AND NOT EXISTS (SELECT 1 FROM topup_disputes d WHERE d.topup_id = t.id AND d.status = 'lost'))
   OR (t.status = 'disputed' AND NOT EXISTS (SELECT 1 FROM topup_disputes d WHERE d.topup_id = t.id AND d.status IN ('open', 'inquiry')))
   OR (t.status = 'partially_refunded' AND NOT EXISTS (SELECT 1 FROM ledger_transactions l WHERE l.topup_id = t.id AND l.kind = 'refund'))
   OR (t.status = 'succeeded' AND EXISTS (SELECT 1 FROM ledger_transactions l WHERE l.topup_id = t.id AND l.kind = 'refund'))
ORDER BY 2, 6;

-- 15. Clawbacks (refunds, dispute withdrawals and reinstatements) that move anything but
--     credits between the top-up's buyer's wallet and issuance, or more than its credits.
SELECT CASE WHEN x.other_entries > 0 THEN 'clawback_from_wrong_account' ELSE 'clawback_wrong_amount' END AS problem,
       t.id AS topup_id, t.user_id, t.credits, l.id AS transaction_id, l.kind,
       x.from_buyer, x.to_issuance, x.other_entries
FROM ledger_transactions l
JOIN topups t ON t.id = l.topup_id
LEFT JOIN ledger_accounts w ON w.user_id = t.user_id
CROSS JOIN (SELECT id FROM ledger_accounts WHERE code = 'issuance') i
CROSS JOIN LATERAL (
    SELECT coalesce(sum(-e.amount) FILTER (WHERE e.account_id = w.id), 0)::bigint AS from_buyer,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = i.id), 0)::bigint AS to_issuance,
           count(*) FILTER (WHERE e.account_id IS DISTINCT FROM w.id AND e.account_id <> i.id) AS other_entries
    FROM ledger_entries e
    WHERE e.transaction_id = l.id
) x
WHERE l.kind IN ('refund', 'dispute')
  AND (x.other_entries > 0 OR x.from_buyer <> x.to_issuance OR abs(x.from_buyer) > t.credits OR x.from_buyer = 0)
ORDER BY t.id, l.id;

-- 16. Tip transactions that do not match their tip: tip_link_mismatch when the tip row
--     points at another transaction or room, tip_to_wrong_account when an entry touches an
--     account other than the sender's and the recipient's wallets, else tip_amount_mismatch
--     (the sender not debited, or the recipient not credited, exactly the tip's amount).
SELECT CASE WHEN p.transaction_id <> l.id OR p.room_id IS DISTINCT FROM l.room_id THEN 'tip_link_mismatch'
            WHEN x.other_entries > 0 THEN 'tip_to_wrong_account'
            ELSE 'tip_amount_mismatch' END AS problem,
       l.id AS transaction_id, p.id AS tip_id, p.amount, p.sender_id, p.recipient_id,
       x.from_sender, x.to_recipient, x.other_entries, p.transaction_id AS tip_transaction_id
FROM ledger_transactions l
JOIN tips p ON p.id = l.tip_id
LEFT JOIN ledger_accounts s ON s.user_id = p.sender_id
LEFT JOIN ledger_accounts r ON r.user_id = p.recipient_id
CROSS JOIN LATERAL (
    SELECT coalesce(sum(e.amount) FILTER (WHERE e.account_id = s.id), 0)::bigint AS from_sender,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = r.id), 0)::bigint AS to_recipient,
           count(*) FILTER (WHERE e.account_id IS DISTINCT FROM s.id AND e.account_id IS DISTINCT FROM r.id) AS other_entries
    FROM ledger_entries e
    WHERE e.transaction_id = l.id
) x
WHERE l.kind = 'tip'
  AND (p.transaction_id <> l.id OR p.room_id IS DISTINCT FROM l.room_id
       OR x.from_sender <> -p.amount OR x.to_recipient <> p.amount OR x.other_entries > 0)
ORDER BY l.id;

-- 17. Tips whose transaction is not a tip transaction naming them (the other direction of
--     16: a tip row pointing at a grant, say).
SELECT 'tip_without_its_transaction' AS problem, p.id AS tip_id, p.transaction_id, l.kind, l.tip_id AS transaction_tip_id
FROM tips p
JOIN ledger_transactions l ON l.id = p.transaction_id
WHERE l.kind <> 'tip' OR l.tip_id IS DISTINCT FROM p.id
ORDER BY p.id;

-- 18. Room entries that are not the room's price taken from the payer (the user in the key
--     `entry:<room>:<user>`) and given to the room's owner and the platform's fees account.
--     Checked against the room's current price: no query changes a room's price today.
SELECT CASE WHEN x.other_entries > 0 THEN 'room_entry_to_wrong_account' ELSE 'room_entry_wrong_amount' END AS problem,
       l.id AS transaction_id, l.room_id, l.idempotency_key, r.entry_price,
       x.from_payer, x.to_owner, x.to_fees, x.other_entries
FROM ledger_transactions l
JOIN rooms r ON r.id = l.room_id
LEFT JOIN ledger_accounts pa ON pa.user_id = CASE
        WHEN l.idempotency_key ~ '^entry:[0-9a-f-]{36}:[0-9a-f-]{36}$' THEN split_part(l.idempotency_key, ':', 3)::uuid
    END
LEFT JOIN ledger_accounts oa ON oa.user_id = r.owner_id
CROSS JOIN (SELECT id FROM ledger_accounts WHERE code = 'platform_fees') f
CROSS JOIN LATERAL (
    SELECT coalesce(sum(e.amount) FILTER (WHERE e.account_id = pa.id), 0)::bigint AS from_payer,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = oa.id), 0)::bigint AS to_owner,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = f.id), 0)::bigint AS to_fees,
           count(*) FILTER (WHERE e.account_id IS DISTINCT FROM pa.id AND e.account_id IS DISTINCT FROM oa.id
                                  AND e.account_id <> f.id) AS other_entries
    FROM ledger_entries e
    WHERE e.transaction_id = l.id
) x
WHERE l.kind = 'room_entry'
  AND (x.from_payer <> -r.entry_price OR x.to_owner < 0 OR x.to_fees < 0 OR x.other_entries > 0)
ORDER BY l.id;
