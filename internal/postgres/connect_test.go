package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// The pool turns JIT off (it made the rooms list of a user in 200 rooms three times slower),
// unless DB_URL asks for it.
func TestConnectTurnsJITOffUnlessTheURLSetsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewURL(t) // it has a query already (sslmode)
	for _, tc := range []struct{ url, want string }{
		{url, "off"},
		{url + "&jit=on", "on"},
	} {
		pool, err := postgres.Connect(ctx, tc.url, 2)
		require.NoError(t, err)
		var jit string
		require.NoError(t, pool.QueryRow(ctx, "SHOW jit").Scan(&jit))
		pool.Close()
		require.Equal(t, tc.want, jit, tc.url)
	}
}
