// Package config loads Parlor's configuration from the environment, once, in main.
//
// Every knob is documented with its default in env.template and the README. Secrets have no
// default: in development a missing one is generated at start (with a warning); in production
// Parlor refuses to start and names what is missing.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/google/uuid"
	"github.com/labstack/gommon/bytes"
)

// Environments Parlor knows.
const (
	Development = "development"
	Production  = "production"
)

// Config is the whole configuration of one Parlor process.
type Config struct {
	Env  string `env:"APP_ENV" envDefault:"development"`
	Addr string `env:"APP_ADDR" envDefault:":8080"`
	// MetricsAddr is where /metrics is served: a listener of its own, never the public port,
	// on loopback by default (a scraper on the host or a sidecar). Empty turns it off.
	MetricsAddr string `env:"APP_METRICS_ADDR" envDefault:"127.0.0.1:9464"`
	PublicURL   string `env:"APP_PUBLIC_URL" envDefault:"http://localhost:8080"`
	// AllowedOrigins are the browser origins allowed to call the API (CORS) and to open
	// WebSockets. Empty means same-origin only.
	AllowedOrigins []string `env:"APP_ALLOWED_ORIGINS" envSeparator:","`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed. Empty: the client IP is
	// the TCP peer's, whatever the headers say.
	TrustedProxies []netip.Prefix `env:"APP_TRUSTED_PROXIES" envSeparator:","`
	// LogLevel is one of LogLevels; anything else is refused (see SlogLevel).
	LogLevel string `env:"APP_LOG_LEVEL" envDefault:"info"`
	// ShutdownDrainSetting is APP_SHUTDOWN_DRAIN as given; read ShutdownDrain.
	ShutdownDrainSetting *time.Duration `env:"APP_SHUTDOWN_DRAIN"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish on SIGTERM,
	// after the drain.
	ShutdownTimeout time.Duration `env:"APP_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// RequestTimeout bounds how long a request may wait on the stores (plus the wait a
	// long-poll asks for) before it is answered 503 unavailable.
	RequestTimeout time.Duration `env:"APP_REQUEST_TIMEOUT" envDefault:"10s"`
	// BodyLimit caps request bodies; larger ones get 413.
	BodyLimit string `env:"APP_BODY_LIMIT" envDefault:"64K"`

	// JWTKeys is the access-token key ring: comma-separated `kid:base64url(ed25519 seed)`
	// entries, newest first. The first signs; all verify. `parlor keygen` prints an entry.
	JWTKeys         string        `env:"APP_JWT_KEYS"`
	AccessTokenTTL  time.Duration `env:"APP_ACCESS_TOKEN_TTL" envDefault:"15m"`
	RefreshTokenTTL time.Duration `env:"APP_REFRESH_TOKEN_TTL" envDefault:"720h"`

	// PasswordHashConcurrency caps argon2id hashes running at once (each takes ~19 MiB).
	PasswordHashConcurrency int `env:"APP_PASSWORD_HASH_CONCURRENCY" envDefault:"4"`
	// Throttles, each "N/duration": attempts allowed per window.
	LoginRateIP      Rate `env:"APP_LOGIN_RATE_IP" envDefault:"30/1m"`
	LoginRateIPEmail Rate `env:"APP_LOGIN_RATE_IP_EMAIL" envDefault:"10/15m"`
	RegisterRateIP   Rate `env:"APP_REGISTER_RATE_IP" envDefault:"30/10m"`
	// Request limits by endpoint class, each "N/duration", counted per user (per client IP
	// for requests without a bearer token) on every instance together: GET /v1/sync; the
	// other reads (GET); writes (POST, PUT, PATCH, DELETE); and unauthenticated requests.
	// The probes, the contract, the docs, the webhook and the socket upgrade are not counted.
	RateSync   Rate `env:"APP_RATE_SYNC" envDefault:"30/10s"`
	RateRead   Rate `env:"APP_RATE_READ" envDefault:"100/10s"`
	RateWrite  Rate `env:"APP_RATE_WRITE" envDefault:"50/10s"`
	RatePublic Rate `env:"APP_RATE_PUBLIC" envDefault:"100/10s"`

	// SyncMaxBacklog bounds what reading from a sync token may cost: a token with more events
	// than this behind it in the reader's rooms is answered "start over" (410
	// full_sync_required on GET /v1/sync, close 4400 on the WebSocket).
	SyncMaxBacklog int `env:"APP_SYNC_MAX_BACKLOG" envDefault:"10000"`

	// WebSocket gateway.
	WSPingInterval time.Duration `env:"APP_WS_PING_INTERVAL" envDefault:"25s"`
	WSPongTimeout  time.Duration `env:"APP_WS_PONG_TIMEOUT" envDefault:"10s"`
	// WSWriteTimeout: how long one frame may take to reach a socket whose client stopped
	// reading before the socket is dropped.
	WSWriteTimeout    time.Duration `env:"APP_WS_WRITE_TIMEOUT" envDefault:"10s"`
	WSMaxConnsPerUser int           `env:"APP_WS_MAX_CONNS_PER_USER" envDefault:"8"`
	WSQueueSize       int           `env:"APP_WS_QUEUE_SIZE" envDefault:"1024"`
	WSFramesPerSecond int           `env:"APP_WS_FRAMES_PER_SECOND" envDefault:"20"`
	WSMaxFrameBytes   int64         `env:"APP_WS_MAX_FRAME_BYTES" envDefault:"65536"`
	WSPresenceGrace   time.Duration `env:"APP_WS_PRESENCE_GRACE" envDefault:"10s"`
	// WSBatchInterval: under sustained load the fan-out reads the event log at most this
	// often, so events that commit close together go out together (one write per socket for
	// several events). After a quiet spell the first event goes out at once.
	WSBatchInterval time.Duration `env:"APP_WS_BATCH_INTERVAL" envDefault:"10ms"`
	// WSWriterNice: the nice value (0–19) of the threads that write the sockets (Linux; 0
	// leaves them as they are). Fan-out writes are bulk work that can wait a little; the
	// request handlers and PostgreSQL then get a processor first, so sends into a busy room
	// do not queue behind its fan-out.
	WSWriterNice int `env:"APP_WS_WRITER_NICE" envDefault:"10"`

	// Wallet. CreditPackages: comma-separated `id:credits:price:currency` (price in minor
	// units), what users can buy. PlatformFeeBPS: the platform's cut of a paid-room entry in
	// basis points (1000 = 10 %). TipMax bounds one tip; TipRate limits tips per sender.
	// IdempotencyKeyTTL: how long an Idempotency-Key is remembered (at least 24h).
	CreditPackages    Packages      `env:"APP_CREDIT_PACKAGES" envDefault:"small:100:199:usd,medium:550:999:usd,large:1200:1999:usd"`
	PlatformFeeBPS    int           `env:"APP_PLATFORM_FEE_BPS" envDefault:"1000"`
	TipMax            int64         `env:"APP_TIP_MAX" envDefault:"100000"`
	TipRate           Rate          `env:"APP_TIP_RATE" envDefault:"30/1m"`
	IdempotencyKeyTTL time.Duration `env:"APP_IDEMPOTENCY_KEY_TTL" envDefault:"24h"`
	// TopupReconcileInterval: how often pending top-ups older than five minutes are settled
	// from the provider's state (a lost webhook, an abandoned checkout).
	TopupReconcileInterval time.Duration `env:"APP_TOPUP_RECONCILE_INTERVAL" envDefault:"5m"`
	// MaxPendingTopups: how many top-ups one account may have awaiting payment at once (each
	// opens a checkout session at the provider).
	MaxPendingTopups int `env:"APP_MAX_PENDING_TOPUPS" envDefault:"5"`
	// JobWorkers: how many background jobs (webhook processing, reconciling, pruning) one
	// instance runs at once; each holds a database connection while it runs.
	JobWorkers int `env:"APP_JOB_WORKERS" envDefault:"10"`
	// JobRescueAfter: how long a background job may run before it is presumed lost (its
	// instance died) and retried; jobs are idempotent, so a retry of one still running
	// repeats no effect. River's own default is an hour.
	JobRescueAfter time.Duration `env:"APP_JOB_RESCUE_AFTER" envDefault:"5m"`
	// AdminUserIDs are the users with the admin role (refunds): granted here by an operator,
	// never through the API.
	AdminUserIDs []uuid.UUID `env:"APP_ADMIN_USER_IDS" envSeparator:","`

	// Payments. StripeSecretKey empty: the offline sandbox provider plays Stripe's part.
	// StripeWebhookSecret verifies webhook signatures (and signs the sandbox's events; in
	// development an empty one is generated per process). StripeAPIURL overrides Stripe's API
	// host (stripe-mock).
	StripeSecretKey     string `env:"STRIPE_SECRET_KEY"`
	StripeWebhookSecret string `env:"STRIPE_WEBHOOK_SECRET"`
	StripeAPIURL        string `env:"STRIPE_API_URL"`

	DBURL            string `env:"DB_URL" envDefault:"postgres://parlor:parlor@127.0.0.1:5432/parlor?sslmode=disable"`
	DBMaxConns       int32  `env:"DB_MAX_CONNS" envDefault:"20"`
	DBMigrateOnStart *bool  `env:"DB_MIGRATE_ON_START"`

	// RedisURL empty means no Redis: throttles, presence and fan-out stay in this process,
	// which production allows only with SingleInstance.
	RedisURL string `env:"REDIS_URL"`
	// SingleInstance says this process is the deployment's only instance, so production may
	// run it without Redis.
	SingleInstance bool `env:"APP_SINGLE_INSTANCE"`
	// RedisKeyPrefix namespaces every key, so several deployments can share one Redis.
	RedisKeyPrefix string `env:"REDIS_KEY_PREFIX" envDefault:"parlor:"`
}

// LogLevels are the values APP_LOG_LEVEL takes, least severe first.
var LogLevels = []string{"debug", "info", "warn", "error"}

var slogLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

// DefaultShutdownDrain is how long production keeps serving after SIGTERM, answering /readyz
// 503, unless APP_SHUTDOWN_DRAIN says otherwise: a few readiness probes' worth, for load
// balancers to stop sending new requests before the listener closes.
const DefaultShutdownDrain = 5 * time.Second

// maxShutdownDrain bounds APP_SHUTDOWN_DRAIN: drain and shutdown must both fit in the
// orchestrator's grace period before it kills the process.
const maxShutdownDrain = time.Minute

// Rate is "N per window", written "N/duration" (e.g. "10/15m").
type Rate struct {
	N      int
	Window time.Duration
}

// UnmarshalText parses "N/duration".
func (r *Rate) UnmarshalText(b []byte) error {
	n, w, ok := strings.Cut(string(b), "/")
	if !ok {
		return fmt.Errorf("rate %q: want N/duration, e.g. 10/15m", b)
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return fmt.Errorf("rate %q: N must be a positive integer", b)
	}
	window, err := time.ParseDuration(w)
	if err != nil || window <= 0 {
		return fmt.Errorf("rate %q: bad duration", b)
	}
	*r = Rate{N: count, Window: window}
	return nil
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Window) }

// Package is a credit package on sale: Credits for Price minor units of Currency.
type Package struct {
	ID       string
	Credits  int64
	Price    int64
	Currency string
}

// Packages is a list of credit packages, written `id:credits:price:currency,…`.
type Packages []Package

// UnmarshalText parses `id:credits:price:currency,…`.
func (p *Packages) UnmarshalText(b []byte) error {
	var out Packages
	seen := map[string]bool{}
	for _, item := range strings.Split(string(b), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) != 4 {
			return fmt.Errorf("credit package %q: want id:credits:price:currency", item)
		}
		credits, err1 := strconv.ParseInt(parts[1], 10, 64)
		price, err2 := strconv.ParseInt(parts[2], 10, 64)
		id, currency := parts[0], strings.ToLower(parts[3])
		switch {
		case id == "" || len(id) > 64 || seen[id]:
			return fmt.Errorf("credit package %q: the id must be 1 to 64 characters and unique", item)
		case err1 != nil || credits < 1:
			return fmt.Errorf("credit package %q: credits must be a positive integer", item)
		case err2 != nil || price < 1:
			return fmt.Errorf("credit package %q: the price must be a positive integer in minor units", item)
		case len(currency) != 3:
			return fmt.Errorf("credit package %q: the currency must be an ISO 4217 code like usd", item)
		}
		seen[id] = true
		out = append(out, Package{ID: id, Credits: credits, Price: price, Currency: currency})
	}
	*p = out
	return nil
}

// Load reads the environment and checks the result.
func Load() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, cfg.Validate()
}

// IsProduction reports whether Parlor runs with production safeguards.
func (c Config) IsProduction() bool { return c.Env == Production }

// MigrateOnStart reports whether `serve` applies pending migrations: by default in
// development only.
func (c Config) MigrateOnStart() bool {
	if c.DBMigrateOnStart != nil {
		return *c.DBMigrateOnStart
	}
	return !c.IsProduction()
}

// SlogLevel is APP_LOG_LEVEL as a slog level (Validate has refused any other value).
func (c Config) SlogLevel() slog.Level {
	return slogLevels[strings.ToLower(c.LogLevel)]
}

// ShutdownDrain is how long, after SIGTERM, the server keeps accepting and serving while
// /readyz answers 503, before the listener closes: APP_SHUTDOWN_DRAIN, by default
// DefaultShutdownDrain in production and 0 in development.
func (c Config) ShutdownDrain() time.Duration {
	if c.ShutdownDrainSetting != nil {
		return *c.ShutdownDrainSetting
	}
	if c.IsProduction() {
		return DefaultShutdownDrain
	}
	return 0
}

// Validate checks values that the types alone can't, and the production safeguards.
func (c Config) Validate() error {
	var errs []error
	switch c.Env {
	case Development, Production:
	default:
		errs = append(errs, fmt.Errorf("APP_ENV must be %q or %q, not %q", Development, Production, c.Env))
	}
	if _, ok := slogLevels[strings.ToLower(c.LogLevel)]; !ok {
		errs = append(errs, fmt.Errorf("APP_LOG_LEVEL must be one of %s, not %q", strings.Join(LogLevels, ", "), c.LogLevel))
	}
	if n, err := bytes.Parse(c.BodyLimit); err != nil || n < 1 {
		errs = append(errs, fmt.Errorf("APP_BODY_LIMIT must be a size like 64K or 1M, not %q", c.BodyLimit))
	}
	if d := c.ShutdownDrain(); d < 0 || d > maxShutdownDrain {
		errs = append(errs, fmt.Errorf("APP_SHUTDOWN_DRAIN must be between 0s and %s, not %s", maxShutdownDrain, d))
	}
	if c.AccessTokenTTL <= 0 || c.AccessTokenTTL > 15*time.Minute {
		errs = append(errs, fmt.Errorf("APP_ACCESS_TOKEN_TTL must be in (0, 15m], not %s", c.AccessTokenTTL))
	}
	if c.RefreshTokenTTL < time.Hour {
		errs = append(errs, fmt.Errorf("APP_REFRESH_TOKEN_TTL must be at least 1h, not %s", c.RefreshTokenTTL))
	}
	if c.PasswordHashConcurrency < 1 {
		errs = append(errs, errors.New("APP_PASSWORD_HASH_CONCURRENCY must be at least 1"))
	}
	if c.MetricsAddr != "" && c.MetricsAddr == c.Addr {
		errs = append(errs, fmt.Errorf("APP_METRICS_ADDR must differ from APP_ADDR (%s): metrics are not served on the public port", c.Addr))
	}
	if c.SyncMaxBacklog < 1 || c.SyncMaxBacklog > 1_000_000 {
		errs = append(errs, fmt.Errorf("APP_SYNC_MAX_BACKLOG must be between 1 and 1000000, not %d", c.SyncMaxBacklog))
	}
	if c.RequestTimeout < 100*time.Millisecond || c.RequestTimeout > 30*time.Second {
		errs = append(errs, fmt.Errorf("APP_REQUEST_TIMEOUT must be between 100ms and 30s, not %s", c.RequestTimeout))
	}
	if c.WSBatchInterval < 0 || c.WSBatchInterval > time.Second {
		errs = append(errs, fmt.Errorf("APP_WS_BATCH_INTERVAL must be between 0 and 1s, not %s", c.WSBatchInterval))
	}
	if c.WSWriterNice < 0 || c.WSWriterNice > 19 {
		errs = append(errs, fmt.Errorf("APP_WS_WRITER_NICE must be between 0 and 19, not %d", c.WSWriterNice))
	}
	if c.WSWriteTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("APP_WS_WRITE_TIMEOUT must be at least 100ms, not %s", c.WSWriteTimeout))
	}
	if c.WSPingInterval < 100*time.Millisecond || c.WSPongTimeout < 100*time.Millisecond {
		errs = append(errs, errors.New("APP_WS_PING_INTERVAL and APP_WS_PONG_TIMEOUT must be at least 100ms"))
	}
	if c.WSMaxConnsPerUser < 1 || c.WSQueueSize < 16 || c.WSFramesPerSecond < 1 || c.WSMaxFrameBytes < 1024 {
		errs = append(errs, errors.New("APP_WS_MAX_CONNS_PER_USER ≥ 1, APP_WS_QUEUE_SIZE ≥ 16, APP_WS_FRAMES_PER_SECOND ≥ 1 and APP_WS_MAX_FRAME_BYTES ≥ 1024 are required"))
	}
	if c.PlatformFeeBPS < 0 || c.PlatformFeeBPS > 10000 {
		errs = append(errs, fmt.Errorf("APP_PLATFORM_FEE_BPS must be in [0, 10000], not %d", c.PlatformFeeBPS))
	}
	if c.TipMax < 1 || c.TipMax > 1_000_000_000 {
		errs = append(errs, fmt.Errorf("APP_TIP_MAX must be in [1, 1000000000], not %d", c.TipMax))
	}
	if c.IdempotencyKeyTTL < 24*time.Hour {
		errs = append(errs, fmt.Errorf("APP_IDEMPOTENCY_KEY_TTL must be at least 24h, not %s", c.IdempotencyKeyTTL))
	}
	if c.MaxPendingTopups < 1 || c.MaxPendingTopups > 1000 {
		errs = append(errs, fmt.Errorf("APP_MAX_PENDING_TOPUPS must be between 1 and 1000, not %d", c.MaxPendingTopups))
	}
	if c.TopupReconcileInterval < time.Second {
		errs = append(errs, fmt.Errorf("APP_TOPUP_RECONCILE_INTERVAL must be at least 1s, not %s", c.TopupReconcileInterval))
	}
	if c.JobRescueAfter < 5*time.Second || c.JobRescueAfter > time.Hour {
		errs = append(errs, fmt.Errorf("APP_JOB_RESCUE_AFTER must be between 5s and 1h, not %s", c.JobRescueAfter))
	}
	if c.JobWorkers < 1 || c.JobWorkers >= int(c.DBMaxConns) {
		errs = append(errs, fmt.Errorf("APP_JOB_WORKERS must be in [1, DB_MAX_CONNS) = [1, %d), not %d: requests need connections too", c.DBMaxConns, c.JobWorkers))
	}
	if c.DBURL == "" {
		errs = append(errs, errors.New("DB_URL is required"))
	}
	if c.IsProduction() {
		if strings.TrimSpace(c.JWTKeys) == "" {
			errs = append(errs, errors.New("APP_JWT_KEYS is required in production (run `parlor keygen` to make a key)"))
		}
		if c.StripeSecretKey != "" && c.StripeWebhookSecret == "" {
			errs = append(errs, errors.New("STRIPE_WEBHOOK_SECRET is required in production with STRIPE_SECRET_KEY"))
		}
		if !strings.HasPrefix(c.PublicURL, "https://") {
			errs = append(errs, fmt.Errorf("APP_PUBLIC_URL must be https in production, not %q", c.PublicURL))
		}
		if c.RedisURL == "" && !c.SingleInstance {
			errs = append(errs, errors.New("REDIS_URL is required in production: without it the realtime fan-out, "+
				"presence and throttles stay in this process, and a second instance would silently miss the first's "+
				"events; set REDIS_URL, or APP_SINGLE_INSTANCE=true if this is the deployment's only instance"))
		}
	}
	return errors.Join(errs...)
}
