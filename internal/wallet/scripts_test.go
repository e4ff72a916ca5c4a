package wallet

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// TestStuckTopupsScript runs scripts/stuck-topups.sql: it answers nothing on a healthy
// database and lists a top-up left pending past its checkout's expiry, and one awaiting
// review.
func TestStuckTopupsScript(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	script, err := os.ReadFile("../../scripts/stuck-topups.sql")
	require.NoError(t, err)
	problems := func() []string {
		var out []string
		for _, stmt := range statements(string(script)) {
			rows, err := pool.Query(ctx, stmt)
			require.NoError(t, err, stmt)
			maps, err := pgx.CollectRows(rows, pgx.RowToMap)
			require.NoError(t, err)
			for _, m := range maps {
				out = append(out, m["problem"].(string))
			}
		}
		return out
	}
	require.Empty(t, problems())
	_, err = pool.Exec(ctx, `
WITH u AS (INSERT INTO users (email, password_hash, display_name) VALUES ('stuck@example.com', 'x', 'S') RETURNING id)
INSERT INTO topups (user_id, package_id, credits, amount, currency, provider, checkout_session_id, expires_at, created_at)
SELECT id, 'small', 100, 199, 'usd', 'sandbox', 'cs_old', now() - interval '2 hours', now() - interval '3 hours' FROM u`)
	require.NoError(t, err)
	require.Equal(t, []string{"pending_past_expiry"}, problems())

	// A payment of another price parks its top-up in review, which only an operator resolves.
	_, err = pool.Exec(ctx, `
INSERT INTO topups (user_id, package_id, credits, amount, currency, provider, checkout_session_id, status, expires_at)
SELECT id, 'small', 100, 199, 'usd', 'sandbox', 'cs_review', 'review', now() + interval '1 hour' FROM users WHERE email = 'stuck@example.com'`)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"pending_past_expiry", "awaiting_review"}, problems())
}
