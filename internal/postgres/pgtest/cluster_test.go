package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// identity is what tells one database history from another: the cluster's system
// identifier and the timeline it writes on.
func identity(t *testing.T, url string) (system string, timeline string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, `
		SELECT (SELECT system_identifier FROM pg_control_system())::text,
		       substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`).Scan(&system, &timeline))
	return system, timeline
}

func TestAStandbyTakesOverWithEverythingCommitted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	primary := pgtest.StartCluster(t)
	primary.CreateDatabase(t, "app")
	conn, err := pgx.Connect(ctx, primary.URL("app"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)")
	require.NoError(t, err)

	standby := primary.StartStandby(t)
	require.NotEqual(t, primary.Port, standby.Port)
	_, err = conn.Exec(ctx, "INSERT INTO t SELECT generate_series(101, 200)")
	require.NoError(t, err)
	standby.WaitReplayed(t, primary)
	sysBefore, tlBefore := identity(t, primary.URL("app"))

	primary.Stop(t)
	standby.Promote(t)
	sysAfter, tlAfter := identity(t, standby.URL("app"))
	require.Equal(t, sysBefore, sysAfter, "a standby is the same cluster")
	require.NotEqual(t, tlBefore, tlAfter, "a promoted standby writes on a new timeline")

	promoted, err := pgx.Connect(ctx, standby.URL("app"))
	require.NoError(t, err)
	defer promoted.Close(ctx)
	var n int
	require.NoError(t, promoted.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n))
	require.Equal(t, 200, n, "everything committed before the failover is there")
	_, err = promoted.Exec(ctx, "INSERT INTO t VALUES (201)")
	require.NoError(t, err, "the promoted standby takes writes")
}

func TestACopyIsAnotherCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := pgtest.StartCluster(t), pgtest.StartCluster(t)
	a.CreateDatabase(t, "app")
	conn, err := pgx.Connect(ctx, a.URL("app"))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE TABLE t (s text); INSERT INTO t VALUES ('kept')")
	conn.Close(ctx)
	require.NoError(t, err)

	a.CopyDatabase(t, "app", b)
	conn, err = pgx.Connect(ctx, b.URL("app"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var s string
	require.NoError(t, conn.QueryRow(ctx, "SELECT s FROM t").Scan(&s))
	require.Equal(t, "kept", s)
	sysA, _ := identity(t, a.URL("app"))
	sysB, _ := identity(t, b.URL("app"))
	require.NotEqual(t, sysA, sysB)
}
