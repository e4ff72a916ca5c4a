package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parlor-dev/parlor/internal/auth"
)

type requestIDKey struct{}

// requestIDFrom returns the request id carried by ctx, or "".
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// validRequestID accepts a caller's id only if it is short and printable ASCII, so it can't
// forge log lines or bloat them.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// requestID takes the caller's X-Request-Id when it is sane (or makes one), echoes it in the
// response and puts it on the request context, where the log handler finds it.
func requestID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := c.Request().Header.Get(echo.HeaderXRequestID)
			if !validRequestID(id) {
				id = newRequestID()
			}
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), requestIDKey{}, id)))
			return next(c)
		}
	}
}

// LogHandler wraps a slog.Handler so every record logged with a request's context carries
// its request id.
type LogHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestIDFrom(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return LogHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h LogHandler) WithGroup(name string) slog.Handler { return LogHandler{h.Handler.WithGroup(name)} }

// httpMetrics are the request counters and latency histogram, by route template. A
// long-poll's duration is how long nothing happened, not latency: it has a histogram of its
// own, so the latency histogram stays one to alert on. (A WebSocket's life is not an HTTP
// request's: its handler returns after the upgrade, and the gateway records the life.)
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	longPoll prometheus.Histogram
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parlor_http_requests_total",
			Help: "HTTP requests served, by route template, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parlor_http_request_duration_seconds",
			Help:    "HTTP request latency, by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		longPoll: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parlor_sync_long_poll_duration_seconds",
			Help:    "How long GET /v1/sync calls that asked to wait (timeout_ms > 0) were held open.",
			Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 20, 30, 45, 60},
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.longPoll)
	return m
}

// isLongPoll reports whether a request asked GET /v1/sync to wait for events.
func isLongPoll(c echo.Context) bool {
	if c.Path() != "/v1/sync" {
		return false
	}
	ms, err := strconv.Atoi(c.QueryParam("timeout_ms"))
	return err == nil && ms > 0
}

// quietPaths are the probes and the scrape: a load balancer, an orchestrator and a scraper
// call them every few seconds, so their lines are logged at debug, whatever their status (a
// failing probe's cause is logged at error by the error handler; the drain's 503 is not a
// failure).
var quietPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// accessLog writes one structured line per request and records its metrics. It runs
// outside the error handler's reach, so it calls it itself to learn the final status.
func accessLog(logger *slog.Logger, metrics *httpMetrics) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			req, res := c.Request(), c.Response()
			elapsed := time.Since(start)
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := strconv.Itoa(res.Status)
			metrics.requests.WithLabelValues(route, req.Method, status).Inc()
			if isLongPoll(c) {
				metrics.longPoll.Observe(elapsed.Seconds())
			} else {
				metrics.latency.WithLabelValues(route, req.Method).Observe(elapsed.Seconds())
			}

			attrs := []slog.Attr{
				slog.String("method", req.Method),
				slog.String("path", req.URL.Path),
				slog.String("route", route),
				slog.Int("status", res.Status),
				slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
				slog.Int64("bytes_out", res.Size),
				slog.String("ip", c.RealIP()),
			}
			if p, ok := auth.PrincipalFrom(req.Context()); ok {
				attrs = append(attrs, slog.String("user_id", p.UserID.String()))
			}
			level := slog.LevelInfo
			switch {
			case quietPaths[req.URL.Path]:
				level = slog.LevelDebug
			case res.Status >= 500:
				level = slog.LevelError
			}
			logger.LogAttrs(req.Context(), level, "request", attrs...)
			return nil
		}
	}
}

// Content security policies: the API serves only JSON, so it allows nothing; the docs page
// loads its own scripts and styles and talks only to this origin. (The demo client's pages
// set a stricter one of their own: see demoCSP.)
const (
	apiCSP = "default-src 'none'; frame-ancestors 'none'"
	webCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

// securityHeaders sets the headers every response should carry.
func securityHeaders(hsts bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
			if hsts {
				h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
			}
			if isWebPath(c.Request().URL.Path) {
				h.Set("Content-Security-Policy", webCSP)
			} else {
				h.Set("Content-Security-Policy", apiCSP)
				h.Set("Cache-Control", "no-store")
			}
			return next(c)
		}
	}
}

// isWebPath reports whether path is a browser page (docs, demo client) rather than the API.
func isWebPath(path string) bool {
	return path == "/" || path == "/docs" || strings.HasPrefix(path, "/docs/") || strings.HasPrefix(path, "/demo/")
}

func jsonEncode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
