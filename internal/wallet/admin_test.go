package wallet_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
	"github.com/parlor-dev/parlor/internal/ratelimit"
	"github.com/parlor-dev/parlor/internal/rooms"
	"github.com/parlor-dev/parlor/internal/wallet"
)

func newAdmin(t *testing.T, pool *pgxpool.Pool, topups *wallet.Topups) *wallet.Admin {
	t.Helper()
	signer, err := cursor.NewSigner(make([]byte, 32))
	require.NoError(t, err)
	roomsSvc := rooms.NewService(pool, events.NewLocalBroker(), signer, slog.New(slog.NewTextHandler(io.Discard, nil)))
	svc := wallet.NewService(pool, roomsSvc, ratelimit.NewMemory(), signer, wallet.Settings{TipMax: 1000}, nil)
	return wallet.NewAdmin(svc, topups)
}

// TestAnAdminActionAndItsRecordCommitTogether: the audit record is written in the action's
// transaction, so an action whose record cannot be written (here: an admin id that names
// no account) does not happen at all — no adjustment posted, no refund's clawback — and an
// action that happens is listed once, however often it is repeated.
func TestAnAdminActionAndItsRecordCommitTogether(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	tp := newTopup(t, pool)
	tp.settle(t, sessionPaid)
	admin := newAdmin(t, pool, tp.topups)
	ghost := wallet.Actor{AdminID: uuid.New(), Reason: "no such admin"}
	count := func(query string) (n int) {
		t.Helper()
		require.NoError(t, pool.QueryRow(ctx, query).Scan(&n))
		return n
	}

	_, err := admin.Adjust(ctx, ghost, tp.user, "k1", 5)
	require.Error(t, err)
	_, err = admin.Refund(ctx, ghost, tp.id)
	require.Error(t, err)
	status, balance, _ := tp.read(t)
	require.Equal(t, []any{wallet.TopupSucceeded, int64(100)}, []any{status, balance})
	require.Zero(t, count(`SELECT count(*) FROM ledger_transactions WHERE kind IN ('adjustment', 'refund')`))
	require.Zero(t, count(`SELECT count(*) FROM admin_actions`))

	real := wallet.Actor{AdminID: newUser(t, pool), Reason: "goodwill"}
	for range 2 {
		adj, err := admin.Adjust(ctx, real, tp.user, "k1", 5)
		require.NoError(t, err)
		require.Equal(t, int64(105), adj.BalanceAfter)
	}
	// A debit below zero is refused by Post's rule and records nothing.
	_, err = admin.Adjust(ctx, real, tp.user, "k2", -106)
	var ae *apperr.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, apperr.InsufficientCredits, ae.Code)
	page, err := admin.AuditLog(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, wallet.ActionWalletAdjustment, page.Items[0].Action)
	require.Equal(t, "goodwill", page.Items[0].Reason)
	// The log is append-only.
	_, err = pool.Exec(ctx, `UPDATE admin_actions SET reason = 'rewritten'`)
	require.ErrorContains(t, err, "append-only")
	_, err = pool.Exec(ctx, `DELETE FROM admin_actions`)
	require.ErrorContains(t, err, "append-only")
	require.Empty(t, problems(t, pool))
}
