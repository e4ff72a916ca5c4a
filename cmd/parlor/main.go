// Command parlor runs the Parlor server and its operator tasks.
//
//	parlor serve                       run the HTTP API (applies migrations first in development)
//	parlor migrate up|down|status      manage the database schema
//	parlor keygen                      print a new access-token signing key for APP_JWT_KEYS
//	parlor healthcheck                 exit 0 when the local server answers /readyz (for containers)
//	parlor ledger check                exit non-zero when the wallet ledger does not reconcile
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/httpapi"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// version and revision are set at build time (-ldflags -X), e.g. by the Dockerfile.
var (
	version  = "dev"
	revision = "unknown"
)

const usage = `usage: parlor <command>

commands:
  serve                    run the HTTP API
  migrate up|down|status   apply, roll back one, or list database migrations
  keygen                   print a new signing key entry for APP_JWT_KEYS
  healthcheck              exit 0 if the server on APP_ADDR answers /readyz with 200
  ledger check             reconcile the wallet ledger; exit 1 and list what is off

Configuration comes from the environment; see env.template.
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "parlor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve()
	case "migrate":
		return migrate(args[1:])
	case "keygen":
		_, entry, err := auth.GenerateKey()
		if err != nil {
			return err
		}
		fmt.Println(entry)
		return nil
	case "healthcheck":
		return healthcheck()
	case "ledger":
		return ledger(args[1:], os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func newLogger(level slog.Level) *slog.Logger {
	return slog.New(httpapi.LogHandler{Handler: slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})})
}

func serve() error {
	start := time.Now()
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	logger := newLogger(cfg.SlogLevel())
	slog.SetDefault(logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer a.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (APP_METRICS_ADDR; empty turns metrics off): %w", cfg.MetricsAddr, err)
		}
		go func() {
			if err := a.ServeMetrics(ctx, mln); err != nil {
				logger.Error("metrics listener stopped", "error", err.Error())
			}
		}()
		logger.Info("metrics are served", "addr", mln.Addr().String())
	}
	logger.Info("parlor is serving", "version", version, "revision", revision, "addr", ln.Addr().String(), "env", cfg.Env,
		"public_url", cfg.PublicURL, "redis", cfg.RedisURL != "", "startup_ms", time.Since(start).Milliseconds())
	if err := a.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Info("parlor stopped")
	return nil
}

func migrate(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: parlor migrate up|down|status")
	}
	return withDatabase(func(ctx context.Context, pool *pgxpool.Pool) error {
		m, err := postgres.NewMigrator(pool)
		if err != nil {
			return err
		}
		defer m.Close()
		switch args[0] {
		case "up":
			return m.Up(ctx, os.Stdout)
		case "down":
			return m.Down(ctx, os.Stdout)
		case "status":
			return m.Status(ctx, os.Stdout)
		default:
			return fmt.Errorf("unknown migrate command %q: want up, down or status", args[0])
		}
	})
}

// withDatabase runs an operator command on a small pool to DB_URL, until done or
// interrupted.
func withDatabase(fn func(ctx context.Context, pool *pgxpool.Pool) error) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pool, err := postgres.Connect(ctx, cfg.DBURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(ctx, pool)
}

// ledger runs the ledger reconciliation (scripts/ledger-reconciliation.sql) and fails when
// it finds anything — an unbalanced transaction, a balance that is not the sum of its
// entries, a wallet below its floor, money without its cause (a paid top-up not minted
// exactly once, a refund not clawed back exactly once, a tip or room entry that moved
// something else) — printing one line per problem: its name, then its fields by name.
func ledger(args []string, out io.Writer) error {
	if len(args) != 1 || args[0] != "check" {
		return errors.New("usage: parlor ledger check")
	}
	return withDatabase(func(ctx context.Context, pool *pgxpool.Pool) error {
		problems, err := wallet.Reconcile(ctx, pool)
		if err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintln(out, p.String())
		}
		if len(problems) > 0 {
			return fmt.Errorf("the ledger does not reconcile: %d problem(s)", len(problems))
		}
		fmt.Fprintln(out, "ledger check: every transaction sums to zero, every balance equals its entries, no wallet is below its floor, "+
			"every transaction's top-up, tip or room exists and fits it, every paid top-up minted exactly once (its credits, "+
			"into its buyer's wallet, from issuance) and no unpaid one, every refunded top-up clawed back exactly once and no other, "+
			"every tip and room entry moved its amount between the right wallets")
		return nil
	})
}

// healthcheck asks the local server whether it is ready: the container image has no curl.
func healthcheck() error {
	addr := os.Getenv("APP_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	client := &http.Client{Timeout: 3 * time.Second}
	res, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", res.Status)
	}
	return nil
}
