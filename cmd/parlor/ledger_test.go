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

	_, err = pool.Exec(ctx, "UPDATE ledger_accounts SET balance = 41 WHERE user_id = $1", user)
	require.NoError(t, err)
	out, err = check()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out)
	require.Contains(t, out, "balance_mismatch")
	require.Contains(t, out, "does not reconcile")
}
