package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/httpapi"
	"github.com/parlor-dev/parlor/internal/postgres"
)

const (
	defaultAdminURL = "postgres://parlor:parlor@127.0.0.1:5432/parlor?sslmode=disable"
	defaultRedisURL = "redis://127.0.0.1:6379/0"
)

// adminURL is where benchmark databases are created and dropped: BENCH_DB_URL, or the
// development default. Its role needs CREATEDB.
func adminURL() string {
	if u := os.Getenv("BENCH_DB_URL"); u != "" {
		return u
	}
	return defaultAdminURL
}

// redisURL is the Redis the server under test uses ("" for none): like a deployment from
// docker-compose.yml, throttles and event notices go through Redis.
func redisURL() string {
	switch u := os.Getenv("BENCH_REDIS_URL"); u {
	case "":
		return defaultRedisURL
	case "none", "off":
		return ""
	default:
		return u
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// database is a benchmark's own migrated database.
type database struct {
	name string
	url  string
}

// newDatabase creates and migrates a database named after the benchmark. The caller drops
// it with drop, however the benchmark ends.
func newDatabase(ctx context.Context, bench string) (*database, error) {
	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		return nil, fmt.Errorf("connect to the admin URL (is PostgreSQL running? set BENCH_DB_URL): %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	d := &database{name: "bench_" + bench + "_" + randomHex(4)}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+d.name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", d.name, err)
	}
	u, err := url.Parse(adminURL())
	if err != nil {
		d.drop()
		return nil, err
	}
	u.Path = "/" + d.name
	d.url = u.String()
	pool, err := postgres.Connect(ctx, d.url, 2)
	if err != nil {
		d.drop()
		return nil, err
	}
	defer pool.Close()
	m, err := postgres.NewMigrator(pool)
	if err != nil {
		d.drop()
		return nil, err
	}
	defer m.Close()
	if err := m.Up(ctx, io.Discard); err != nil {
		d.drop()
		return nil, err
	}
	return d, nil
}

// drop removes the database, closing whatever is still connected to it.
func (d *database) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: drop %s: %v\n", d.name, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)"); err != nil {
		fmt.Fprintf(os.Stderr, "bench: drop %s: %v\n", d.name, err)
	}
}

// pool opens a pool on the database for the harness's own SQL (seeding, checks).
func (d *database) pool(ctx context.Context, conns int32) (*pgxpool.Pool, error) {
	return postgres.Connect(ctx, d.url, conns)
}

// endpoint is a Parlor reachable over HTTP, in-process or a `parlor serve` subprocess: its
// API as users call it.
type endpoint struct {
	URL  string
	http *http.Client
}

func newEndpoint(url string) *endpoint { return &endpoint{URL: url, http: newHTTPClient()} }

// server is Parlor running in-process on a real TCP listener.
type server struct {
	*app.App
	*endpoint
	stop context.CancelFunc
	done chan error
}

// serverConfig is the configuration of an in-process server: the environment's (so
// DB_MAX_CONNS and the like can be tuned as in production), with the benchmark's database,
// Redis under a prefix of its own, a fresh signing key, and throttles out of the way.
func serverConfig(dbURL string) (config.Config, error) {
	cfg, err := config.Load()
	if err != nil {
		return config.Config{}, err
	}
	migrate := false
	cfg.DBURL = dbURL
	cfg.DBMigrateOnStart = &migrate
	cfg.RedisURL = redisURL()
	cfg.RedisKeyPrefix = "parlorbench:" + uuid.NewString() + ":"
	if cfg.JWTKeys, err = signingKey(); err != nil {
		return config.Config{}, err
	}
	cfg.ShutdownTimeout = 5 * time.Second
	lots := config.Rate{N: 1_000_000, Window: time.Minute}
	cfg.LoginRateIP, cfg.LoginRateIPEmail, cfg.RegisterRateIP = lots, lots, lots
	// The load is one client's, far past a person's; the limits are still counted.
	cfg.RateSync, cfg.RateRead, cfg.RateWrite, cfg.RatePublic = lots, lots, lots, lots
	return cfg, nil
}

// signingKey is the APP_JWT_KEYS entry every in-process server of this run shares, so a
// user's access token works on each.
var signingKey = sync.OnceValues(func() (string, error) {
	_, entry, err := auth.GenerateKey()
	return entry, err
})

// startServer runs Parlor on the database until stop, with adjust applied to its
// configuration. Its logs are formatted as in production and discarded.
func startServer(ctx context.Context, dbURL string, adjust ...func(*config.Config)) (*server, error) {
	cfg, err := serverConfig(dbURL)
	if err != nil {
		return nil, err
	}
	for _, f := range adjust {
		f(&cfg)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	logger := slog.New(httpapi.LogHandler{Handler: slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level})})
	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		return nil, err
	}
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &server{App: a, endpoint: newEndpoint("http://" + ln.Addr().String()), stop: stop, done: make(chan error, 1)}
	go func() { s.done <- a.Serve(serveCtx, ln) }()
	return s, nil
}

// close shuts the server down and releases its connections.
func (s *server) close() {
	s.stop()
	if err := <-s.done; err != nil {
		fmt.Fprintf(os.Stderr, "bench: server: %v\n", err)
	}
	s.App.Close()
	s.http.CloseIdleConnections()
}

// newHTTPClient is a keep-alive client that holds a connection per concurrent caller.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// client returns a generated client, calling as the holder of token when it is not empty.
func (s *endpoint) client(token string) *apiclient.ClientWithResponses {
	opts := []apiclient.ClientOption{apiclient.WithHTTPClient(s.http)}
	if token != "" {
		opts = append(opts, apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+token)
			return nil
		}))
	}
	c, err := apiclient.NewClientWithResponses(s.URL, opts...)
	if err != nil {
		panic(err) // only a malformed server URL fails, and ours is well-formed
	}
	return c
}

// user is a registered user with a client calling as them.
type user struct {
	ID     uuid.UUID
	Token  string                         // the access token issued at sign-up
	Client *apiclient.ClientWithResponses // calls with the current access token, renewed as it ages
	auth   *tokens
}

// register signs up a user through the API. Its Client renews the access token (which
// lives 15 minutes) through POST /v1/auth/refresh once it is 10 minutes old, so the long
// benchmarks can keep calling as the users they registered at the start.
func (s *endpoint) register(ctx context.Context, name string) (*user, error) {
	res, err := s.client("").RegisterWithResponse(ctx, apiclient.RegisterJSONRequestBody{
		Email:       fmt.Sprintf("%s-%s@bench.example", name, randomHex(4)),
		Password:    "bench-password-" + name,
		DisplayName: name,
	})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	if res.JSON201 == nil {
		return nil, fmt.Errorf("register %s: status %d: %s", name, res.StatusCode(), res.Body)
	}
	t := &tokens{ep: s, access: res.JSON201.AccessToken, refresh: res.JSON201.RefreshToken, issued: time.Now()}
	c, err := apiclient.NewClientWithResponses(s.URL, apiclient.WithHTTPClient(s.http),
		apiclient.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
			access, err := t.current(ctx)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+access)
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return &user{ID: res.JSON201.User.Id, Token: res.JSON201.AccessToken, Client: c, auth: t}, nil
}

// tokens are a user's access and refresh tokens.
type tokens struct {
	ep              *endpoint
	mu              sync.Mutex
	access, refresh string
	issued          time.Time
}

// tokenRenewAge is when a user's access token is renewed: well before the 15 minutes it
// lives (APP_ACCESS_TOKEN_TTL allows no more).
const tokenRenewAge = 10 * time.Minute

// current is the access token to call with, refreshed first when it is old.
func (t *tokens) current(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.issued) < tokenRenewAge || t.refresh == "" {
		return t.access, nil
	}
	res, err := t.ep.client("").RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: t.refresh})
	if err != nil {
		return "", fmt.Errorf("refresh the access token: %w", err)
	}
	if res.JSON200 == nil {
		return "", fmt.Errorf("refresh the access token: status %d: %.200s", res.StatusCode(), res.Body)
	}
	t.access, t.refresh, t.issued = res.JSON200.AccessToken, res.JSON200.RefreshToken, time.Now()
	return t.access, nil
}

// registerMany signs up n users named prefix00, prefix01…, a few at a time (password hashing
// is the slow part).
func (s *endpoint) registerMany(ctx context.Context, bench, prefix string, n int) ([]*user, error) {
	users := make([]*user, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next, done := 0, 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				users[i], errs[i] = s.register(ctx, fmt.Sprintf("%s%02d", prefix, i))
				mu.Lock()
				done++
				if done%16 == 0 || done == n {
					progress(bench, "registered %d/%d users", done, n)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return users, ctx.Err()
}

// pgbenchPath finds pgbench: PGBENCH, PATH, or the Debian/Ubuntu server packages.
func pgbenchPath() (string, error) {
	if p := os.Getenv("PGBENCH"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", errors.New("pgbench not found: install postgresql-contrib (or the server package) or set PGBENCH")
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchResult is what one pgbench run reports.
type pgbenchResult struct {
	tps     float64
	txs     int64  // transactions processed
	latency string // "latency average = …" as pgbench prints it
	failed  string // failed transactions line, if any failed
}

// runPgbench runs a custom script against dbURL and parses its tps.
func runPgbench(ctx context.Context, dbURL, script string, clients int, d time.Duration) (pgbenchResult, error) {
	bin, err := pgbenchPath()
	if err != nil {
		return pgbenchResult{}, err
	}
	dir, err := os.MkdirTemp("", "parlor-pgbench-")
	if err != nil {
		return pgbenchResult{}, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		return pgbenchResult{}, err
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return pgbenchResult{}, err
	}
	seconds := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, bin, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(2, clients)),
		"-T", strconv.Itoa(seconds), "-f", file, cfg.Database)
	cmd.Env = append(os.Environ(),
		"PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGUSER="+cfg.User,
		"PGPASSWORD="+cfg.Password, "PGAPPNAME=parlor-bench")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return pgbenchResult{}, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	res := pgbenchResult{}
	res.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "number of transactions actually processed: "); ok {
			res.txs, _ = strconv.ParseInt(strings.Fields(v + " 0")[0], 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "latency average = "); ok {
			res.latency = v
		}
		if strings.HasPrefix(line, "number of failed transactions:") && !strings.Contains(line, ": 0 ") {
			res.failed = line
		}
	}
	return res, nil
}
