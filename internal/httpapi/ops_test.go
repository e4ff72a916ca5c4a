package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

func TestProbes(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)

	health, err := s.Client.GetHealthWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, health.StatusCode())

	ready, err := s.Client.GetReadyWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, ready.StatusCode(), string(ready.Body))
	require.Equal(t, apiclient.ReadinessChecksOk, ready.JSON200.Checks["postgres"])
	require.Equal(t, apiclient.ReadinessChecksOk, ready.JSON200.Checks["redis"])

	// Without Redis configured, readiness says so instead of failing.
	cfg := parlortest.Config(t)
	cfg.RedisURL = ""
	noRedis := parlortest.Start(t, cfg)
	ready, err = noRedis.Client.GetReadyWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, ready.StatusCode())
	require.Equal(t, apiclient.ReadinessChecksDisabled, ready.JSON200.Checks["redis"])
}

// tcpProxy forwards a local port to target until closed, so a test can cut a dependency off.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.Close)
	return p
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func TestReadinessFailsWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	redisAddr := strings.TrimPrefix(strings.TrimSuffix(parlortest.RedisURL(), "/0"), "redis://")
	proxy := newTCPProxy(t, redisAddr)
	cfg := parlortest.Config(t)
	cfg.RedisURL = "redis://" + proxy.Addr() + "/0"
	s := parlortest.Start(t, cfg)

	ready, err := s.Client.GetReadyWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, ready.StatusCode())

	proxy.Close()
	ready, err = s.Client.GetReadyWithResponse(ctx)
	require.NoError(t, err)
	p := parlortest.RequireProblem(t, ready.HTTPResponse, ready.Body, 503, "not_ready")
	require.Contains(t, *p.Detail, "Redis")
	require.NotEmpty(t, ready.HTTPResponse.Header.Get("Retry-After"))
	// Liveness does not depend on Redis.
	health, err := s.Client.GetHealthWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, health.StatusCode())
}

func TestContractAndDocsAreServed(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)

	res, body := s.Do(t, http.MethodGet, "/openapi.yaml", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	onDisk, err := os.ReadFile("../../api/openapi.yaml")
	require.NoError(t, err)
	require.Equal(t, string(onDisk), string(body), "/openapi.yaml must be the contract as written")

	res, body = s.Do(t, http.MethodGet, "/openapi.json", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Equal(t, "3.0.3", doc.OpenAPI)
	require.Contains(t, doc.Paths, "/v1/auth/login")

	res, body = s.Do(t, http.MethodGet, "/docs/", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, string(body), "/docs/scalar.js")
	csp := res.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "script-src 'self'")
	require.NotContains(t, csp, "unsafe-eval")
	res, body = s.Do(t, http.MethodGet, "/docs/init.js", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, string(body), "telemetry: false")
	require.Contains(t, string(body), "withDefaultFonts: false")
	res, _ = s.Do(t, http.MethodGet, "/docs/scalar.js", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
}

func TestTheDemoClientIsServedAtTheRootUnderAStrictPolicy(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.PublicURL = "https://parlor.example.com"
	s := parlortest.Start(t, cfg)

	res, body := s.Do(t, http.MethodGet, "/", "", nil, nil)
	require.Equal(t, 200, res.StatusCode, "/ is the demo client, no longer a redirect")
	require.Contains(t, res.Header.Get("Content-Type"), "text/html")
	require.Contains(t, string(body), `<script type="module" src="/demo/app.js"></script>`)
	require.NotContains(t, string(body), "<script>", "no inline script: the policy would block it")
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self';", "connect-src 'self' wss://parlor.example.com;", "frame-ancestors 'none'"} {
		require.Contains(t, csp, want)
	}
	require.NotContains(t, csp, "unsafe")

	for path, mime := range map[string]string{"/demo/app.js": "text/javascript", "/demo/app.css": "text/css"} {
		res, body := s.Do(t, http.MethodGet, path, "", nil, nil)
		require.Equal(t, 200, res.StatusCode, path)
		require.Contains(t, res.Header.Get("Content-Type"), mime, path)
		require.Equal(t, csp, res.Header.Get("Content-Security-Policy"), path)
		require.NotEmpty(t, body, path)
	}
	res, _ = s.Do(t, http.MethodGet, "/demo/nope.js", "", nil, nil)
	require.Equal(t, 404, res.StatusCode)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "mallory")
	_, err := u.Client.GetMeWithResponse(ctx)
	require.NoError(t, err)
	_, _ = s.Do(t, http.MethodGet, "/v1/no/such/route/"+strings.Repeat("x", 10), "", nil, nil)

	// (That the public port does not serve /metrics is the OWASP suite's API8.)
	res, body := s.Scrape(t)
	require.Equal(t, 200, res.StatusCode)
	text := string(body)
	for _, want := range []string{
		`parlor_http_requests_total{method="GET",route="/v1/me",status="200"} 1`,
		`parlor_http_requests_total{method="POST",route="/v1/auth/register",status="201"} 1`,
		`parlor_http_request_duration_seconds_bucket{method="GET",route="/v1/me",le=`,
		`parlor_db_pool_max_conns{pool="main"} 10`,
		`parlor_db_pool_acquires_total`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		require.Contains(t, text, want)
	}
	// Unknown paths are counted under one label, not one series per path.
	require.NotContains(t, text, "xxxxxxxxxx")
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	started := make(chan struct{})
	s.Echo.GET("/test/slow", func(c echo.Context) error {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return c.String(200, "finished")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(runCtx, ln) }()

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/test/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		got <- result{string(b), err}
	}()
	<-started
	stop() // SIGTERM, as far as Serve knows
	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, "finished", r.body)
	require.NoError(t, <-served)
	// New connections are refused once shut down.
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	require.Error(t, err)
}

// TestProbesAndScrapesAreLoggedAtDebug: a load balancer's probes and a scraper's requests
// every few seconds would drown the info log; their lines are at debug, while the API's
// requests stay at info.
func TestProbesAndScrapesAreLoggedAtDebug(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		res, _ := s.Do(t, http.MethodGet, path, "", nil, nil)
		res.Body.Close()
	}
	levels := func() map[string]string {
		out := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(s.Logs.String()), "\n") {
			var rec struct{ Msg, Level, Path string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" {
				out[rec.Path] = rec.Level
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(levels()) == 4 }, 2*time.Second, 10*time.Millisecond, s.Logs.String())
	require.Equal(t, map[string]string{
		"/healthz": "DEBUG", "/readyz": "DEBUG", "/metrics": "DEBUG", "/openapi.json": "INFO",
	}, levels())
}
