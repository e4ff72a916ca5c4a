// Package config loads Parlor's configuration from the environment, once, in main.
//
// Every knob is documented with its default in env.template and the README. Secrets have no
// default: in development a missing one is generated at start (with a warning); in production
// Parlor refuses to start and names what is missing.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Environments Parlor knows.
const (
	Development = "development"
	Production  = "production"
)

// Config is the whole configuration of one Parlor process.
type Config struct {
	Env       string `env:"APP_ENV" envDefault:"development"`
	Addr      string `env:"APP_ADDR" envDefault:":8080"`
	PublicURL string `env:"APP_PUBLIC_URL" envDefault:"http://localhost:8080"`
	// AllowedOrigins are the browser origins allowed to call the API (CORS) and, later, to
	// open WebSockets. Empty means same-origin only.
	AllowedOrigins []string `env:"APP_ALLOWED_ORIGINS" envSeparator:","`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed. Empty: the client IP is
	// the TCP peer's, whatever the headers say.
	TrustedProxies []netip.Prefix `env:"APP_TRUSTED_PROXIES" envSeparator:","`
	LogLevel       string         `env:"APP_LOG_LEVEL" envDefault:"info"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish on SIGTERM.
	ShutdownTimeout time.Duration `env:"APP_SHUTDOWN_TIMEOUT" envDefault:"20s"`
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

	// WebSocket gateway.
	WSPingInterval    time.Duration `env:"APP_WS_PING_INTERVAL" envDefault:"25s"`
	WSPongTimeout     time.Duration `env:"APP_WS_PONG_TIMEOUT" envDefault:"10s"`
	WSMaxConnsPerUser int           `env:"APP_WS_MAX_CONNS_PER_USER" envDefault:"8"`
	WSQueueSize       int           `env:"APP_WS_QUEUE_SIZE" envDefault:"1024"`
	WSFramesPerSecond int           `env:"APP_WS_FRAMES_PER_SECOND" envDefault:"20"`
	WSMaxFrameBytes   int64         `env:"APP_WS_MAX_FRAME_BYTES" envDefault:"65536"`
	WSPresenceGrace   time.Duration `env:"APP_WS_PRESENCE_GRACE" envDefault:"10s"`

	DBURL            string `env:"DB_URL" envDefault:"postgres://parlor:parlor@127.0.0.1:5432/parlor?sslmode=disable"`
	DBMaxConns       int32  `env:"DB_MAX_CONNS" envDefault:"20"`
	DBMigrateOnStart *bool  `env:"DB_MIGRATE_ON_START"`

	// RedisURL empty means no Redis: throttles and fan-out stay in this process.
	RedisURL string `env:"REDIS_URL"`
	// RedisKeyPrefix namespaces every key, so several deployments can share one Redis.
	RedisKeyPrefix string `env:"REDIS_KEY_PREFIX" envDefault:"parlor:"`
}

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

// Validate checks values that the types alone can't, and the production safeguards.
func (c Config) Validate() error {
	var errs []error
	switch c.Env {
	case Development, Production:
	default:
		errs = append(errs, fmt.Errorf("APP_ENV must be %q or %q, not %q", Development, Production, c.Env))
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
	if c.WSPingInterval < 100*time.Millisecond || c.WSPongTimeout < 100*time.Millisecond {
		errs = append(errs, errors.New("APP_WS_PING_INTERVAL and APP_WS_PONG_TIMEOUT must be at least 100ms"))
	}
	if c.WSMaxConnsPerUser < 1 || c.WSQueueSize < 16 || c.WSFramesPerSecond < 1 || c.WSMaxFrameBytes < 1024 {
		errs = append(errs, errors.New("APP_WS_MAX_CONNS_PER_USER ≥ 1, APP_WS_QUEUE_SIZE ≥ 16, APP_WS_FRAMES_PER_SECOND ≥ 1 and APP_WS_MAX_FRAME_BYTES ≥ 1024 are required"))
	}
	if c.DBURL == "" {
		errs = append(errs, errors.New("DB_URL is required"))
	}
	if c.IsProduction() {
		if strings.TrimSpace(c.JWTKeys) == "" {
			errs = append(errs, errors.New("APP_JWT_KEYS is required in production (run `parlor keygen` to make a key)"))
		}
		if !strings.HasPrefix(c.PublicURL, "https://") {
			errs = append(errs, fmt.Errorf("APP_PUBLIC_URL must be https in production, not %q", c.PublicURL))
		}
	}
	return errors.Join(errs...)
}
