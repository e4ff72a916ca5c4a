// Package parlortest runs a whole Parlor in-process for end-to-end tests: its own
// PostgreSQL database, real Redis (under a key prefix of its own), the real echo stack on a
// real listener, and the generated Go client with every response checked against the
// contract.
package parlortest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/httpapi"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// RedisURL is the Redis the tests use: TEST_REDIS_URL, or the local default.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// TestKeySeed is the seed of the signing key test servers use unless told otherwise, so
// tests can forge tokens with the real key.
var TestKeySeed = bytes.Repeat([]byte{7}, ed25519.SeedSize)

// TestKeyID is TestKeySeed's kid.
const TestKeyID = "test-key-1"

// KeyEntry renders an APP_JWT_KEYS entry.
func KeyEntry(kid string, seed []byte) string {
	return kid + ":" + base64.RawURLEncoding.EncodeToString(seed)
}

// Server is a running Parlor under test.
type Server struct {
	*app.App
	URL string
	// MetricsURL is the metrics listener's (APP_METRICS_ADDR in production).
	MetricsURL string
	Client     *apiclient.ClientWithResponses
	// Logs holds everything the server logged, as JSON lines.
	Logs *SyncBuffer
	t    testing.TB
}

// Config returns the configuration test servers start from: a fresh database, real Redis
// under a unique prefix, and a known signing key.
func Config(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("parlortest: default config: %v", err)
	}
	migrate := false
	cfg.DBURL = pgtest.NewURL(t)
	cfg.DBMigrateOnStart = &migrate
	cfg.DBMaxConns = 10
	cfg.JobWorkers = 4 // background jobs and requests share the small pool
	cfg.RedisURL = RedisURL()
	cfg.RedisKeyPrefix = "parlortest:" + uuid.NewString() + ":"
	cfg.JWTKeys = KeyEntry(TestKeyID, TestKeySeed)
	cfg.StripeWebhookSecret = WebhookSecret
	cfg.ShutdownTimeout = 5 * time.Second
	// Tests act far faster than a person (the authorization matrix, polling every 50 ms):
	// the request limits are raised, and internal/owasp's TestRequestRateLimits sets its own to
	// prove them.
	lots := config.Rate{N: 1_000_000, Window: time.Minute}
	cfg.RateSync, cfg.RateRead, cfg.RateWrite, cfg.RatePublic = lots, lots, lots, lots
	// The suite runs under -race beside other packages on two cores, where 100 tips that
	// serialize on one room's lock took 20 s in CI and the default 10 s deadline answered
	// half of them 503. A test's subject is what a request does, not how fast a loaded
	// machine does it: the deadline is raised to its upper bound here, and
	// internal/faults' toxiproxy test sets a short one to prove it.
	cfg.RequestTimeout = 30 * time.Second
	return cfg
}

// Start runs Parlor with cfg (from Config, adjusted) until the test ends.
func Start(t testing.TB, cfg config.Config, opts ...app.Option) *Server {
	t.Helper()
	logs := &SyncBuffer{}
	logger := slog.New(httpapi.LogHandler{Handler: slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	a, err := app.New(context.Background(), cfg, logger, opts...)
	if err != nil {
		t.Fatalf("parlortest: start: %v", err)
	}
	ts := httptest.NewUnstartedServer(a.Echo)
	ts.Config = httpapi.NewHTTPServer(a.Echo)
	ts.Start()
	metrics := httptest.NewServer(a.Metrics) // the metrics listener, apart as in production
	t.Cleanup(func() {
		metrics.Close()
		ts.Close()
		a.Close()
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	s := &Server{App: a, URL: ts.URL, MetricsURL: metrics.URL, Logs: logs, t: t}
	s.Client = s.NewClient(nil)
	return s
}

// New starts a Parlor with the default test configuration.
func New(t testing.TB) *Server {
	t.Helper()
	return Start(t, Config(t))
}

// NewClient returns a generated client whose every response is validated against the
// contract; edit may add request editors (e.g. a bearer token).
func (s *Server) NewClient(edit apiclient.RequestEditorFn) *apiclient.ClientWithResponses {
	opts := []apiclient.ClientOption{apiclient.WithHTTPClient(s.HTTPClient())}
	if edit != nil {
		opts = append(opts, apiclient.WithRequestEditorFn(edit))
	}
	c, err := apiclient.NewClientWithResponses(s.URL, opts...)
	if err != nil {
		s.t.Fatalf("parlortest: client: %v", err)
	}
	return c
}

// HTTPClient is a plain HTTP client that checks every response against the contract.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Transport: &validatingTransport{t: s.t, next: http.DefaultTransport}}
}

// Bearer returns a request editor that sends token as a bearer token.
func Bearer(token string) apiclient.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

// User is a registered user with a session.
type User struct {
	ID           uuid.UUID
	Email        string
	Password     string
	AccessToken  string
	RefreshToken string
	// Client calls the API as this user.
	Client *apiclient.ClientWithResponses
}

// Register creates a user with a unique email and returns it signed in.
func (s *Server) Register(t testing.TB, name string) *User {
	t.Helper()
	email := fmt.Sprintf("%s-%s@example.com", strings.ToLower(name), uuid.NewString()[:8])
	password := "password-" + name
	res, err := s.Client.RegisterWithResponse(context.Background(), apiclient.RegisterJSONRequestBody{
		Email: email, Password: password, DisplayName: name,
	})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	if res.JSON201 == nil {
		t.Fatalf("register %s: status %d: %s", name, res.StatusCode(), res.Body)
	}
	return &User{
		ID: res.JSON201.User.Id, Email: email, Password: password,
		AccessToken: res.JSON201.AccessToken, RefreshToken: res.JSON201.RefreshToken,
		Client: s.NewClient(Bearer(res.JSON201.AccessToken)),
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	routerOnce sync.Once
	router     routers.Router
	routerErr  error
)

func contractRouter() (routers.Router, error) {
	routerOnce.Do(func() {
		var spec *openapi3.T
		spec, routerErr = api.GetSpec()
		if routerErr != nil {
			return
		}
		spec.Servers = nil
		router, routerErr = gorillamux.NewRouter(spec)
	})
	return router, routerErr
}

// validatingTransport checks each response of an operation in the contract against it:
// status declared, headers and body matching their schemas. A mismatch fails the test.
type validatingTransport struct {
	t    testing.TB
	next http.RoundTripper
}

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := v.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	r, err := contractRouter()
	if err != nil {
		v.t.Errorf("contract router: %v", err)
		return res, nil
	}
	route, params, err := r.FindRoute(req)
	if err != nil {
		return res, nil // not an operation of the contract (metrics, docs, unknown paths)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: res.StatusCode,
		Header: res.Header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		v.t.Errorf("%s %s → %d does not match the contract: %v\nbody: %s", req.Method, req.URL.Path, res.StatusCode, err, body)
	}
	return res, nil
}

// RequireProblem asserts that a response is an application/problem+json problem with the
// given status and code, carrying the request id, and returns it.
func RequireProblem(t testing.TB, res *http.Response, body []byte, status int, code string) apiclient.Problem {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status = %d, want %d; body: %s", res.StatusCode, status, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body: %s", ct, body)
	}
	var p apiclient.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body: %v; body: %s", err, body)
	}
	if p.Code != code || p.Status != status {
		t.Fatalf("problem code/status = %s/%d, want %s/%d; body: %s", p.Code, p.Status, code, status, body)
	}
	if p.RequestId == nil || *p.RequestId != res.Header.Get("X-Request-Id") {
		t.Fatalf("problem request_id does not match X-Request-Id %q; body: %s", res.Header.Get("X-Request-Id"), body)
	}
	return p
}

// ProblemFields returns the fields a problem's errors name.
func ProblemFields(p apiclient.Problem) []string {
	var fields []string
	if p.Errors != nil {
		for _, e := range *p.Errors {
			if e.Field != nil {
				fields = append(fields, *e.Field)
			}
		}
	}
	return fields
}

// Do sends a raw request (for bodies the generated client would never produce) through the
// contract-checking transport and returns the response and its body.
func (s *Server) Do(t testing.TB, method, path, contentType string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return readResponse(t, s.HTTPClient(), req)
}

// readResponse sends req with client and reads the whole answer.
func readResponse(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

// Scrape reads /metrics from the metrics listener.
func (s *Server) Scrape(t testing.TB) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.MetricsURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	return readResponse(t, http.DefaultClient, req)
}

// Count returns the number of rows a query counts, for "nothing was written" checks.
func (s *Server) Count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("count %q: %v", query, err)
	}
	return n
}

// Tampered changes one character in the middle of a token or cursor, so its signature no
// longer holds.
func Tampered(tok string) string {
	b := []byte(tok)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
