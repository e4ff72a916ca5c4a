// Package app assembles a Parlor process from its configuration: connections, services and
// the HTTP server. main and the end-to-end tests build Parlor the same way, through New.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/cursor"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/httpapi"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/ratelimit"
	"github.com/parlor-dev/parlor/internal/realtime"
	"github.com/parlor-dev/parlor/internal/rooms"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// App is one running Parlor: its connections and its HTTP handler.
type App struct {
	Config config.Config
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	// TailPool is the realtime fan-out's own: it reads the event log in batches and must never
	// wait behind the senders for one of Pool's connections.
	TailPool *pgxpool.Pool
	Redis    redis.UniversalClient
	Keys     *auth.KeyRing
	Echo     *echo.Echo
	// Metrics serves /metrics, on a listener of its own (ServeMetrics).
	Metrics http.Handler
	Gateway *realtime.Gateway
	Wallet  *wallet.Service
	Topups  *wallet.Topups
	Queue   *river.Client[pgx.Tx]
	stop    context.CancelFunc
	// draining is set when Serve's shutdown begins: /readyz answers 503 from then on.
	draining atomic.Bool
}

// Option adjusts how New assembles Parlor (tests use it to observe or disturb internals).
type Option func(*options)

type options struct {
	wrapBroker func(events.Broker) events.Broker
}

// WithBroker wraps the broker New would use.
func WithBroker(wrap func(events.Broker) events.Broker) Option {
	return func(o *options) { o.wrapBroker = wrap }
}

// New connects to PostgreSQL (and Redis when configured), applies migrations when told to,
// and builds the HTTP server.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (_ *App, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	a := &App{Config: cfg, Logger: logger}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()

	a.Keys, err = keyRing(cfg, logger)
	if err != nil {
		return nil, err
	}
	a.Pool, err = postgres.Connect(ctx, cfg.DBURL, cfg.DBMaxConns)
	if err != nil {
		return nil, err
	}
	if a.TailPool, err = postgres.Connect(ctx, cfg.DBURL, 2); err != nil {
		return nil, err
	}
	if cfg.MigrateOnStart() {
		if err := migrate(ctx, a.Pool, logger); err != nil {
			return nil, err
		}
	}

	var limiter ratelimit.Limiter = ratelimit.NewMemory()
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		// A command gives up at its request's deadline (APP_REQUEST_TIMEOUT), not only at
		// the client's own read and write timeouts and retries.
		opts.ContextTimeoutEnabled = true
		a.Redis = redis.NewClient(opts)
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.Redis.Ping(pingCtx).Err(); err != nil {
			return nil, fmt.Errorf("reach Redis: %w", err)
		}
		limiter = ratelimit.NewRedis(a.Redis, cfg.RedisKeyPrefix)
	}

	passwords, err := auth.NewPasswords(cfg.PasswordHashConcurrency)
	if err != nil {
		return nil, err
	}
	authSvc := auth.NewService(a.Pool, passwords,
		auth.NewAccessTokens(a.Keys, cfg.PublicURL, cfg.AccessTokenTTL),
		limiter, auth.Limits{
			LoginPerIP:      cfg.LoginRateIP,
			LoginPerIPEmail: cfg.LoginRateIPEmail,
			RegisterPerIP:   cfg.RegisterRateIP,
		}, cfg.RefreshTokenTTL)

	secret, err := db.New(a.Pool).GetSecret(ctx, "cursor")
	if err != nil {
		return nil, fmt.Errorf("load the cursor secret (are migrations applied? run `parlor migrate up`): %w", err)
	}
	cursors, err := cursor.NewSigner(secret)
	if err != nil {
		return nil, err
	}
	// Background work lives as long as the App: Close ends it.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = stop
	var broker events.Broker = events.NewLocalBroker()
	if a.Redis != nil {
		broker = events.NewRedisBroker(bg, a.Redis, cfg.RedisKeyPrefix, logger)
	}
	if o.wrapBroker != nil {
		broker = o.wrapBroker(broker)
	}
	registry := prometheus.NewRegistry()
	broker = events.NewCountingBroker(broker, registry)
	hub := events.NewHub(bg, broker)
	roomsSvc := rooms.NewService(a.Pool, broker, cursors, logger)
	tokens := events.NewTokens(cursors)
	eventLog := events.Log{MaxBacklog: cfg.SyncMaxBacklog}
	chatSvc := chat.NewService(a.Pool, roomsSvc, hub, tokens, eventLog)

	var presence realtime.Presence = realtime.NewMemoryPresence()
	if a.Redis != nil {
		shared := realtime.NewRedisPresence(a.Redis, cfg.RedisKeyPrefix, realtime.DefaultInstanceTimeout)
		go shared.Run(bg, logger)
		presence = shared
	}
	tickets := realtime.NewTickets(authSvc.Revocations(), cursors, nil)
	a.Gateway = realtime.New(bg, realtime.Deps{
		Config: cfg, Pool: a.Pool, TailPool: a.TailPool, Chat: chatSvc, Rooms: roomsSvc, Tickets: tickets, Presence: presence,
		Broker: broker, Tokens: tokens, Log: eventLog, Logger: logger, Registry: registry,
	})
	authSvc.OnRevoke = a.Gateway.SessionRevoked
	if err := authSvc.Revocations().Load(ctx); err != nil {
		return nil, err
	}
	go authSvc.Revocations().Run(bg, logger)
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		postgres.NewPoolCollector(a.Pool, "main"),
		postgres.NewPoolCollector(a.TailPool, "fanout"),
	)
	if a.Redis != nil {
		registry.MustRegister(redisPoolCollector{a.Redis})
	}
	walletMetrics := wallet.NewMetrics(registry, a.Pool)
	settings := walletSettings(cfg)
	a.Wallet = wallet.NewService(a.Pool, roomsSvc, limiter, cursors, settings, walletMetrics)
	roomsSvc.SetEntryCharger(a.Wallet)
	webhookSecret := cfg.StripeWebhookSecret
	if webhookSecret == "" {
		webhookSecret = "whsec_dev_" + rand.Text()
		if cfg.StripeSecretKey == "" {
			logger.Info("payments: sandbox provider (STRIPE_SECRET_KEY is empty); its webhooks are signed with a secret generated for this process")
		}
	}
	var provider payments.Provider
	switch {
	case cfg.StripeSecretKey != "":
		provider = payments.NewStripe(cfg.StripeSecretKey, cfg.StripeAPIURL)
	case cfg.IsProduction():
		// The sandbox's Pay button mints credits for free: never in production.
		logger.Warn("payments: STRIPE_SECRET_KEY is not set; top-ups are refused in production")
		provider = payments.Unconfigured{}
	default:
		provider = payments.NewSandbox(a.Pool, cfg.PublicURL)
	}
	a.Topups = wallet.NewTopups(a.Pool, provider, settings.Packages, cfg.PublicURL, logger, walletMetrics)
	a.Topups.MaxPending = cfg.MaxPendingTopups
	idem := wallet.NewIdempotencyKeys(a.Pool, cfg.IdempotencyKeyTTL)
	pruners := map[string]pruner{
		// Expired keys are reusable before they are pruned; pruning only bounds the tables.
		"idempotency_keys": {every: time.Hour, prune: idem.Prune},
		"sessions":         {every: time.Hour, prune: authSvc.PruneSessions},
	}
	if a.Queue, err = startQueue(bg, cfg, a.Pool, a.Topups, pruners, logger); err != nil {
		return nil, err
	}
	a.Topups.SetQueue(a.Queue)
	a.Echo, err = httpapi.New(httpapi.Deps{
		Config: cfg, Logger: logger, Pool: a.Pool, Redis: a.Redis,
		Auth: authSvc, Rooms: roomsSvc, Chat: chatSvc, Tickets: tickets, Gateway: a.Gateway,
		Wallet: a.Wallet, Topups: a.Topups, Idem: idem, Limiter: limiter, WebhookSecret: webhookSecret, Keys: a.Keys, Registry: registry,
		Draining: a.draining.Load,
	})
	if err != nil {
		return nil, err
	}
	a.Metrics = httpapi.MetricsHandler(registry)
	return a, nil
}

func walletSettings(cfg config.Config) wallet.Settings {
	pkgs := make([]wallet.Package, len(cfg.CreditPackages))
	for i, p := range cfg.CreditPackages {
		pkgs[i] = wallet.Package{ID: p.ID, Credits: p.Credits, Price: p.Price, Currency: p.Currency}
	}
	return wallet.Settings{
		Packages: pkgs, EntryFeeBasisPoints: cfg.PlatformFeeBPS,
		TipMax: cfg.TipMax, TipRateN: cfg.TipRate.N, TipRateWindow: cfg.TipRate.Window,
	}
}

// keyRing parses APP_JWT_KEYS, or in development makes a throwaway key: tokens then die
// with the process, which is fine on a laptop and refused in production by config.Validate.
func keyRing(cfg config.Config, logger *slog.Logger) (*auth.KeyRing, error) {
	if cfg.JWTKeys != "" {
		return auth.ParseKeyRing(cfg.JWTKeys)
	}
	if cfg.IsProduction() {
		return nil, errors.New("APP_JWT_KEYS is required in production")
	}
	key, _, err := auth.GenerateKey()
	if err != nil {
		return nil, err
	}
	logger.Warn("APP_JWT_KEYS is not set: signing access tokens with a key generated for this process only; sessions end when it stops (run `parlor keygen` to make a lasting key)", "kid", key.ID)
	return auth.NewKeyRing(key)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	m, err := postgres.NewMigrator(pool)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Up(ctx, slogWriter{logger})
}

// slogWriter turns the migrator's progress lines into log records.
type slogWriter struct{ logger *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.logger.Info(string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// Serve serves HTTP on ln until ctx is done, then shuts down gracefully. First it drains
// for ShutdownDrain: /readyz answers 503 while the listener still accepts and serves, so
// load balancers stop sending before any connection is refused (they notice only at their
// next probe). Then the listener closes and in-flight requests get up to ShutdownTimeout to
// finish.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := httpapi.NewHTTPServer(a.Echo)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc, err := serveUntilDone(ctx, srv, ln)
	if errc == nil {
		return err
	}
	if drain := a.Config.ShutdownDrain(); drain > 0 {
		a.draining.Store(true)
		// Clients on kept-alive connections are told to reconnect, through the load balancer.
		srv.SetKeepAlivesEnabled(false)
		a.Logger.Info("shutting down: draining (/readyz answers 503; still serving)", "drain", drain.String())
		timer := time.NewTimer(drain)
		select {
		case <-timer.C:
		case err := <-errc:
			timer.Stop()
			return err
		}
	}
	a.Logger.Info("shutting down: finishing in-flight requests", "timeout", a.Config.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	// Hijacked WebSockets are not the http.Server's to close: the gateway closes them with
	// 1001 after their queued frames, while the server drains ordinary requests.
	sockets := make(chan struct{})
	go func() { a.Gateway.Shutdown(shutdownCtx); close(sockets) }()
	defer func() { <-sockets }()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeMetrics serves /metrics on ln until ctx is done: the metrics listener, apart from
// the public port (APP_METRICS_ADDR).
func (a *App) ServeMetrics(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Metrics, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	errc, err := serveUntilDone(ctx, srv, ln)
	if errc == nil {
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("metrics shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveUntilDone serves srv on ln until ctx is done, then returns the channel srv.Serve's
// result will arrive on once the caller shuts srv down; if srv fails first, it returns a
// nil channel and that error.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener) (<-chan error, error) {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return nil, err
	case <-ctx.Done():
		return errc, nil
	}
}

// Close releases the connections.
func (a *App) Close() {
	if a.Queue != nil {
		// Running jobs finish (each is one short transaction) before the pool goes.
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = a.Queue.Stop(stopCtx)
		cancel()
	}
	if a.stop != nil {
		a.stop()
	}
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	if a.TailPool != nil {
		a.TailPool.Close()
	}
	if a.Pool != nil {
		a.Pool.Close()
	}
}
