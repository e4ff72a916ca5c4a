// Package pgtest gives each test its own PostgreSQL database, cloned from a template that
// holds the current migrations (CREATE DATABASE … TEMPLATE takes a fraction of a second,
// far less than migrating every time).
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/migrations"
)

// AdminURL is the connection used to create and drop test databases: TEST_DB_URL, or the
// development default. Its role needs CREATEDB.
func AdminURL() string {
	if u := os.Getenv("TEST_DB_URL"); u != "" {
		return u
	}
	return "postgres://parlor:parlor@127.0.0.1:5432/parlor?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// NewURL creates a fresh, migrated database for t, dropped when t ends, and returns its URL.
func NewURL(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(ctx) })
	if templateErr != nil {
		t.Fatalf("pgtest: template database: %v", templateErr)
	}
	admin := connect(t, AdminURL())
	defer admin.Close(ctx)
	name := "parlor_t_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+templateName); err != nil {
		t.Fatalf("pgtest: create %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin := connect(t, AdminURL())
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return withDatabase(t, AdminURL(), name)
}

// NewEmptyURL creates a database with no schema at all, for migration tests.
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin := connect(t, AdminURL())
	defer admin.Close(ctx)
	name := "parlor_e_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin := connect(t, AdminURL())
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(t, AdminURL(), name)
}

// NewPool returns a pool on a fresh migrated database, closed when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), NewURL(t), 10)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// ensureTemplate creates the template for the current migrations once per machine; its name
// carries a hash of the migration files, so a changed migration gets a new template. An
// advisory lock keeps parallel test binaries from building it twice.
func ensureTemplate(ctx context.Context) (string, error) {
	sum, err := migrationsHash()
	if err != nil {
		return "", err
	}
	name := "parlor_tmpl_" + sum
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", fmt.Errorf("connect to %s (is PostgreSQL running? try scripts/dev-services.sh): %w", redact(AdminURL()), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7243001)"); err != nil {
		return "", err
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock(7243001)") //nolint:errcheck

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	buildURL, err := replaceDatabase(AdminURL(), building)
	if err != nil {
		return "", err
	}
	pool, err := postgres.Connect(ctx, buildURL, 2)
	if err != nil {
		return "", err
	}
	m, err := postgres.NewMigrator(pool)
	if err == nil {
		err = m.Up(ctx, io.Discard)
		m.Close()
	}
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	// Renaming makes the template visible only once it is complete.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	return name, nil
}

func migrationsHash() (string, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func connect(t testing.TB, raw string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), raw)
	if err != nil {
		t.Fatalf("pgtest: connect to %s (is PostgreSQL running? try scripts/dev-services.sh): %v", redact(raw), err)
	}
	return conn
}

func withDatabase(t testing.TB, raw, name string) string {
	t.Helper()
	u, err := replaceDatabase(raw, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

func replaceDatabase(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("TEST_DB_URL must be a postgres:// URL, got %s", redact(raw))
	}
	u.Path = "/" + name
	return u.String(), nil
}

func redact(raw string) string {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
