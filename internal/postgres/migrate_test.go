package postgres_test

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

func TestConcurrentMigratorsApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewEmptyURL(t)

	// Several instances starting at once all migrate the same empty database.
	const instances = 4
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := 0; i < instances; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := postgres.Connect(ctx, url, 2)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			m, err := postgres.NewMigrator(pool)
			if err != nil {
				errs[i] = err
				return
			}
			defer m.Close()
			errs[i] = m.Up(ctx, io.Discard)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	pool, err := postgres.Connect(ctx, url, 2)
	require.NoError(t, err)
	defer pool.Close()
	var applied int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&applied))
	files, err := migrationFiles()
	require.NoError(t, err)
	require.Equal(t, files, applied, "each migration is recorded exactly once")
	var users int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users))
}

func TestUniqueViolationMapping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	insert := func() error {
		_, err := pool.Exec(ctx, "INSERT INTO users (email, password_hash, display_name) VALUES ('x@example.com', 'h', 'X')")
		return err
	}
	require.NoError(t, insert())
	err := insert()
	require.True(t, postgres.IsUniqueViolation(err, "users_email_key"))
	require.True(t, postgres.IsUniqueViolation(err, ""))
	require.False(t, postgres.IsUniqueViolation(err, "some_other_key"))
	require.False(t, postgres.IsUniqueViolation(nil, ""))

	err = pool.QueryRow(ctx, "SELECT id FROM users WHERE email = 'nobody'").Scan(new([16]byte))
	require.True(t, postgres.IsNoRows(err))
}
