package main

import (
	"context"
	"os/exec"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
	"github.com/parlor-dev/parlor/internal/wallet"
)

func TestLedgerCheckFailsOnBrokenBooks(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := context.Background()
	url := pgtest.NewURL(t)
	pool, err := postgres.Connect(ctx, url, 2)
	require.NoError(t, err)
	defer pool.Close()
	var user uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password_hash, display_name) VALUES ('ledger@example.com', 'x', 'L') RETURNING id`).Scan(&user))
	require.NoError(t, wallet.Grant(ctx, pool, "grant:ledger", user, 40, ""))

	check := func() (string, error) {
		cmd := exec.Command(bin, "ledger", "check")
		cmd.Env = cleanEnv("DB_URL=" + url)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := check()
	require.NoError(t, err, out)
	require.Contains(t, out, "every transaction sums to zero")
	require.Contains(t, out, "every paid top-up minted exactly once", "the success line says what was checked")

	_, err = pool.Exec(ctx, "UPDATE ledger_accounts SET balance = 41 WHERE user_id = $1", user)
	require.NoError(t, err)
	out, err = check()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out)
	require.Contains(t, out, "balance_mismatch")
	require.Contains(t, out, "does not reconcile")
}

// TestLedgerCheckFailsOnPaymentWithoutCredit: a top-up marked succeeded whose credits were
// never minted balances the books, yet `parlor ledger check` exits non-zero and names the
// problem and the top-up, one line per problem with its fields sorted.
func TestLedgerCheckFailsOnPaymentWithoutCredit(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := context.Background()
	url := pgtest.NewURL(t)
	pool, err := postgres.Connect(ctx, url, 2)
	require.NoError(t, err)
	defer pool.Close()
	var user, topup uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password_hash, display_name) VALUES ('paid@example.com', 'x', 'P') RETURNING id`).Scan(&user))
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO topups (user_id, package_id, credits, amount, currency, provider, status, succeeded_at, expires_at)
		VALUES ($1, 'small', 100, 199, 'usd', 'sandbox', 'succeeded', now(), now() + interval '1 hour') RETURNING id`, user).Scan(&topup))

	cmd := exec.Command(bin, "ledger", "check")
	cmd.Env = cleanEnv("DB_URL=" + url)
	raw, err := cmd.CombinedOutput()
	out := string(raw)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out)
	require.NotZero(t, exit.ExitCode())
	require.Contains(t, out, "succeeded_without_mint credits=100 status=succeeded topup_id="+topup.String()+" user_id="+user.String()+"\n")
	require.Contains(t, out, "does not reconcile: 1 problem")
	require.NotContains(t, out, "every transaction sums to zero")
}
