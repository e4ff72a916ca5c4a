// API8:2023 Security Misconfiguration.
//
// For Parlor misconfiguration would be a response without the headers that keep browsers
// from sniffing, framing or caching it; CORS that lets any site's script call the API; a
// problem that shows a stack, a query or a library's message; operator endpoints
// (/metrics, profiling) on the public port; production without HSTS.
//
// This file proves the configuration as served: TestEveryResponseCarriesARequestIDAndSecurityHeaders,
// TestProductionAddsHSTSAndKeepsAPIAnswersOutOfCaches, TestCORSAllowsOnlyConfiguredOrigins,
// TestUnknownRoutesAndMethodsAreProblems, TestInternalErrorsLeakNothing,
// TestRefusalsNameNoInternals and TestOperatorEndpointsAreNotOnThePublicPort. (Production's
// refusal to start without signing keys and an https public URL is internal/config's;
// the demo client's and the docs' content policies are internal/httpapi's
// TestTheDemoClientIsServedAtTheRootUnderAStrictPolicy and TestContractAndDocsAreServed;
// the socket's Origin check is internal/realtime's TestGatewayLimitsAndCloseCodes.)
package owasp_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/parlortest"
)

func TestEveryResponseCarriesARequestIDAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)

	res, _ := s.Do(t, http.MethodGet, "/healthz", "", nil, http.Header{"X-Request-Id": {"trace-abc-123"}})
	require.Equal(t, "trace-abc-123", res.Header.Get("X-Request-Id"))
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	require.Equal(t, "default-src 'none'; frame-ancestors 'none'", res.Header.Get("Content-Security-Policy"))

	// A request id that could forge or bloat log lines is replaced.
	for _, bad := range []string{"has space", strings.Repeat("x", 129), "line\u00a0break"} {
		res, _ := s.Do(t, http.MethodGet, "/healthz", "", nil, http.Header{"X-Request-Id": {bad}})
		got := res.Header.Get("X-Request-Id")
		require.NotEmpty(t, got)
		require.NotEqual(t, bad, got)
	}

	// The access log has one JSON line per request, with the request id.
	require.Eventually(t, func() bool { return strings.Contains(s.Logs.String(), `"request_id":"trace-abc-123"`) }, time.Second, 10*time.Millisecond)
	for _, line := range strings.Split(strings.TrimSpace(s.Logs.String()), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		if rec["msg"] == "request" {
			require.NotEmpty(t, rec["request_id"], line)
			require.Contains(t, rec, "latency_ms")
			require.Contains(t, rec, "status")
		}
	}
}

func TestUnknownRoutesAndMethodsAreProblems(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	res, body := s.Do(t, http.MethodGet, "/v1/nope", "", nil, nil)
	parlortest.RequireProblem(t, res, body, 404, "not_found")
	res, body = s.Do(t, http.MethodDelete, "/v1/auth/login", "", nil, nil)
	parlortest.RequireProblem(t, res, body, 405, "method_not_allowed")
	res, body = s.Do(t, http.MethodGet, "/nowhere", "", nil, nil)
	parlortest.RequireProblem(t, res, body, 404, "not_found")
}

func TestInternalErrorsLeakNothing(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	s.Echo.GET("/test/panic", func(echo.Context) error { panic("secret: password=hunter2 at db.internal:5432") })
	// An error nothing classifies (not a store going away, which is a 503): internal.
	s.Echo.GET("/test/fail", func(echo.Context) error { return errors.New("scan row: column secret_col does not exist") })

	for _, path := range []string{"/test/panic", "/test/fail"} {
		res, body := s.Do(t, http.MethodGet, path, "", nil, nil)
		p := parlortest.RequireProblem(t, res, body, 500, "internal")
		require.NotContains(t, string(body), "hunter2")
		require.NotContains(t, string(body), "secret_col")
		require.Contains(t, *p.Detail, "request id")
		// ...but the log has the cause, tied to the request id.
		require.Contains(t, s.Logs.String(), *p.RequestId)
	}
	require.Contains(t, s.Logs.String(), "hunter2")
	// The server keeps serving after a panic.
	health, err := s.Client.GetHealthWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, health.StatusCode())
}

func TestProductionAddsHSTSAndKeepsAPIAnswersOutOfCaches(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.Env, cfg.PublicURL = "production", "https://parlor.example"
	prod := parlortest.Start(t, cfg)
	u := prod.Register(t, "ann")
	for _, path := range []string{"/v1/me", "/healthz", "/v1/nope"} {
		res, _ := prod.As(t, u, http.MethodGet, path, "")
		require.Equal(t, "max-age=63072000; includeSubDomains", res.Header.Get("Strict-Transport-Security"), path)
		require.Equal(t, "no-store", res.Header.Get("Cache-Control"), path)
		require.Equal(t, "no-referrer", res.Header.Get("Referrer-Policy"), path)
		require.Equal(t, "same-origin", res.Header.Get("Cross-Origin-Opener-Policy"), path)
		require.Empty(t, res.Header.Get("Server"), path)
		require.Empty(t, res.Header.Get("X-Powered-By"), path)
	}
	// In development (plain http on localhost) HSTS would pin the browser: none.
	dev := parlortest.New(t)
	res, _ := dev.Do(t, http.MethodGet, "/healthz", "", nil, nil)
	require.Empty(t, res.Header.Get("Strict-Transport-Security"))
}

// preflight sends a CORS preflight for method on path from origin.
func preflight(t *testing.T, s *parlortest.Server, origin, path, method string) *http.Response {
	t.Helper()
	res, _ := s.Do(t, http.MethodOptions, path, "", nil, http.Header{
		"Origin": {origin}, "Access-Control-Request-Method": {method},
		"Access-Control-Request-Headers": {"authorization, content-type"},
	})
	return res
}

func TestCORSAllowsOnlyConfiguredOrigins(t *testing.T) {
	t.Parallel()
	// Same-origin by default: no foreign origin is allowed anything.
	s := parlortest.New(t)
	u := s.Register(t, "ann")
	for _, origin := range []string{"https://evil.example", "null", s.URL + ".evil.example"} {
		res := preflight(t, s, origin, "/v1/me", http.MethodGet)
		require.Empty(t, res.Header.Get("Access-Control-Allow-Origin"), origin)
		require.Empty(t, res.Header.Get("Access-Control-Allow-Credentials"), origin)
		res, _ = s.Do(t, http.MethodGet, "/v1/me", "", nil, http.Header{"Origin": {origin}, "Authorization": {"Bearer " + u.AccessToken}})
		require.Empty(t, res.Header.Get("Access-Control-Allow-Origin"), origin)
	}

	// Configured: that origin and no other, never "*", never with credentials.
	cfg := parlortest.Config(t)
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	c := parlortest.Start(t, cfg)
	res := preflight(t, c, "https://app.example.com", "/v1/rooms", http.MethodPost)
	require.Less(t, res.StatusCode, 300)
	require.Equal(t, "https://app.example.com", res.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "authorization")
	require.Empty(t, res.Header.Get("Access-Control-Allow-Credentials"))
	for _, origin := range []string{"https://evil.example", "https://app.example.com.evil.example", "http://app.example.com", "null"} {
		res := preflight(t, c, origin, "/v1/rooms", http.MethodPost)
		got := res.Header.Get("Access-Control-Allow-Origin")
		require.True(t, got == "" || got == "https://app.example.com", "%s is allowed as %q", origin, got)
		require.NotEqual(t, "*", got)
	}
}

// internals are what no problem may show: library and Go error text, SQL, file positions.
var internals = []string{"openapi3", "kin-openapi", "echo.", "json: ", "strconv.", "pgx", "SQLSTATE", "sql:", "goroutine", ".go:", "runtime error", "invalid character"}

// TestRefusalsNameNoInternals: malformed and invalid requests are answered with problems
// that say what is wrong in the contract's terms, never in a library's.
func TestRefusalsNameNoInternals(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "ann")
	auth := func(h http.Header) http.Header {
		h.Set("Authorization", "Bearer "+u.AccessToken)
		h.Set("Idempotency-Key", "k-1")
		return h
	}
	for _, tc := range []struct{ name, method, path, contentType, body string }{
		{"malformed JSON", "POST", "/v1/rooms", "application/json", `{"name": "x",`},
		{"a number for a string", "POST", "/v1/rooms", "application/json", `{"name": 12}`},
		{"huge number", "POST", "/v1/rooms", "application/json", `{"name": "x", "entry_price": 1e400}`},
		{"unknown field", "POST", "/v1/rooms", "application/json", `{"name": "x", "sql": "DROP TABLE rooms"}`},
		{"SQL in a uuid", "GET", "/v1/rooms/1'%20OR%20'1'='1", "", ""},
		{"a bad cursor", "GET", "/v1/rooms?cursor=%27%3B--", "", ""},
		{"a bad sync token", "GET", "/v1/sync?since=not-a-token", "", ""},
		{"a limit out of range", "GET", "/v1/wallet/transactions?limit=100000000000000000000", "", ""},
		{"a bad enum", "GET", "/v1/rooms?scope=all", "", ""},
		{"XML", "POST", "/v1/rooms", "application/xml", `<room><name>x</name></room>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			res, b := s.Do(t, tc.method, tc.path, tc.contentType, body, auth(http.Header{}))
			require.GreaterOrEqual(t, res.StatusCode, 400, string(b))
			require.Less(t, res.StatusCode, 500, string(b))
			require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
			var p map[string]any
			require.NoError(t, json.Unmarshal(b, &p))
			for _, leak := range internals {
				require.NotContains(t, string(b), leak, "the problem shows an internal")
			}
		})
	}
}

// TestOperatorEndpointsAreNotOnThePublicPort: metrics and profiling are served only on the
// metrics listener (APP_METRICS_ADDR), never on the public port.
func TestOperatorEndpointsAreNotOnThePublicPort(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/debug/vars", "/server-status", "/.env", "/.git/config"} {
		res, body := s.Do(t, http.MethodGet, path, "", nil, nil)
		parlortest.RequireProblem(t, res, body, http.StatusNotFound, "not_found")
	}
	res, body := s.Scrape(t)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), "parlor_http_requests_total")
	for _, path := range []string{"/debug/pprof/", "/v1/me"} {
		req, err := http.NewRequest(http.MethodGet, s.MetricsURL+path, nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		require.Equal(t, http.StatusNotFound, res.StatusCode, "the metrics listener serves %s", path)
	}
}
