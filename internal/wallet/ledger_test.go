package wallet_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
	"github.com/parlor-dev/parlor/internal/wallet"
)

var ctx = context.Background()

func newUser(t *testing.T, pool *pgxpool.Pool) uuid.UUID {
	t.Helper()
	var id uuid.UUID
	err := pool.QueryRow(ctx, `INSERT INTO users (email, password_hash, display_name) VALUES ($1, 'x', 'u') RETURNING id`,
		uuid.NewString()[:8]+"@example.com").Scan(&id)
	require.NoError(t, err)
	return id
}

func balance(t *testing.T, pool *pgxpool.Pool, user uuid.UUID) int64 {
	t.Helper()
	a, err := db.New(pool).GetUserAccount(ctx, user)
	require.NoError(t, err)
	return a.Balance
}

// transfer posts amount from one user to another under key, in its own transaction, as an
// adjustment: a tip would need the tip row the reconciliation holds it to.
func transfer(pool *pgxpool.Pool, key string, from, to uuid.UUID, amount int64) (created bool, err error) {
	err = postgres.WithTx(ctx, pool, func(q *db.Queries) error {
		a, err := wallet.UserAccount(ctx, q, from)
		if err != nil {
			return err
		}
		b, err := wallet.UserAccount(ctx, q, to)
		if err != nil {
			return err
		}
		_, created, err = wallet.Post(ctx, q, wallet.Posting{Key: key, Kind: wallet.KindAdjustment, Legs: []wallet.Leg{
			{Account: a, Amount: -amount}, {Account: b, Amount: amount},
		}})
		return err
	})
	return created, err
}

func requireReconciled(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	problems, err := wallet.Reconcile(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, problems, "the ledger does not reconcile")
}

func TestPostingIsOncePerKey(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ann, bob := newUser(t, pool), newUser(t, pool)
	require.NoError(t, wallet.Grant(ctx, pool, "grant:1", ann, 100, "welcome"))
	require.NoError(t, wallet.Grant(ctx, pool, "grant:1", ann, 100, "welcome"), "a repeat is not an error")
	require.Equal(t, int64(100), balance(t, pool, ann), "a repeated key credits once")

	// Concurrent repeats of one transfer move the credits once.
	var wg sync.WaitGroup
	var createdN atomic.Int32
	for range 20 {
		wg.Go(func() {
			created, err := transfer(pool, "transfer:same", ann, bob, 30)
			if err != nil {
				t.Error(err)
			}
			if created {
				createdN.Add(1)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), createdN.Load())
	require.Equal(t, int64(70), balance(t, pool, ann))
	require.Equal(t, int64(30), balance(t, pool, bob))
	requireReconciled(t, pool)
}

func TestConcurrentDebitsNeverOverdraw(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ann, bob, carl := newUser(t, pool), newUser(t, pool), newUser(t, pool)
	require.NoError(t, wallet.Grant(ctx, pool, "grant:ann", ann, 25, ""))
	require.NoError(t, wallet.Grant(ctx, pool, "grant:bob", bob, 1000, ""))

	// 60 debits of 3 from a wallet of 25 race: exactly 8 go through, the rest are refused
	// with the typed error, and the balance ends at 1. Meanwhile bob and carl send credits
	// to ann and to each other in both directions (lock order: no deadlock).
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	for i := range 60 {
		wg.Go(func() {
			_, err := transfer(pool, fmt.Sprintf("debit:%d", i), ann, carl, 3)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, wallet.ErrInsufficientCredits):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
		wg.Go(func() {
			from, to := bob, carl
			if i%2 == 1 {
				from, to = carl, bob
			}
			if _, err := transfer(pool, fmt.Sprintf("swap:%d", i), from, to, 1); err != nil && !errors.Is(err, wallet.ErrInsufficientCredits) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(8), ok.Load())
	require.Equal(t, int32(52), refused.Load())
	require.Equal(t, int64(1), balance(t, pool, ann))
	require.Equal(t, int64(1025), balance(t, pool, bob)+balance(t, pool, carl)+balance(t, pool, ann))
	requireReconciled(t, pool)
}

func TestTheDatabaseGuardsTheLedger(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ann := newUser(t, pool)
	require.NoError(t, wallet.Grant(ctx, pool, "grant:ann", ann, 10, ""))

	for _, stmt := range []string{
		"UPDATE ledger_entries SET amount = amount * 2",
		"DELETE FROM ledger_entries",
		"TRUNCATE ledger_entries CASCADE",
		"UPDATE ledger_transactions SET memo = 'changed'",
		"DELETE FROM ledger_transactions",
	} {
		_, err := pool.Exec(ctx, stmt)
		require.ErrorContains(t, err, "append-only", stmt)
	}
	// A user's balance cannot go negative, even by hand.
	_, err := pool.Exec(ctx, "UPDATE ledger_accounts SET balance = -1 WHERE user_id = $1", ann)
	require.ErrorContains(t, err, "ledger_accounts_user_balance_nonnegative")
	// A transaction whose entries don't sum to zero is refused at commit.
	err = postgres.WithTx(ctx, pool, func(q *db.Queries) error {
		acct, err := wallet.UserAccount(ctx, q, ann)
		if err != nil {
			return err
		}
		txn, err := q.InsertLedgerTransaction(ctx, db.InsertLedgerTransactionParams{IdempotencyKey: "bad", Kind: wallet.KindAdjustment})
		if err != nil {
			return err
		}
		return q.InsertLedgerEntry(ctx, db.InsertLedgerEntryParams{TransactionID: txn.ID, AccountID: acct, Amount: 5, BalanceAfter: 15})
	})
	require.ErrorContains(t, err, "does not balance")
	// The posting function refuses unbalanced legs before touching anything.
	err = postgres.WithTx(ctx, pool, func(q *db.Queries) error {
		acct, _ := wallet.UserAccount(ctx, q, ann)
		issuance, _ := wallet.SystemAccount(ctx, q, wallet.Issuance)
		_, _, err := wallet.Post(ctx, q, wallet.Posting{Key: "bad2", Kind: wallet.KindAdjustment,
			Legs: []wallet.Leg{{Account: issuance, Amount: -5}, {Account: acct, Amount: 6}}})
		return err
	})
	require.ErrorContains(t, err, "sum to 1")
	require.Equal(t, int64(10), balance(t, pool, ann))
	requireReconciled(t, pool)
}

func TestReconciliationFindsBrokenBooks(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ann := newUser(t, pool)
	require.NoError(t, wallet.Grant(ctx, pool, "grant:ann", ann, 10, ""))
	requireReconciled(t, pool)
	// Tamper the way only a bug or an operator could: a balance that disagrees with the
	// entries, and a transaction without entries.
	_, err := pool.Exec(ctx, "UPDATE ledger_accounts SET balance = 12 WHERE user_id = $1", ann)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO ledger_transactions (idempotency_key, kind) VALUES ('empty', 'adjustment')")
	require.NoError(t, err)
	problems, err := wallet.Reconcile(ctx, pool)
	require.NoError(t, err)
	var kinds []string
	for _, p := range problems {
		kinds = append(kinds, p.Problem)
	}
	require.ElementsMatch(t, []string{"unbalanced_transaction", "balance_mismatch"}, kinds)
}
