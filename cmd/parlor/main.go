// Command parlor runs the Parlor server and its operator tasks.
//
//	parlor serve                       run the HTTP API (applies migrations first in development)
//	parlor migrate up|down|status      manage the database schema
//	parlor keygen                      print a new access-token signing key for APP_JWT_KEYS
//	parlor healthcheck                 exit 0 when the local server answers /readyz (for containers)
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

	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/httpapi"
	"github.com/parlor-dev/parlor/internal/postgres"
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
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func newLogger(level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(httpapi.LogHandler{Handler: slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: lvl})})
}

func serve() error {
	start := time.Now()
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	logger := newLogger(cfg.LogLevel)
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
