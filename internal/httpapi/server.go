// Package httpapi is Parlor's HTTP edge: it implements the generated strict server interface
// with thin handlers (convert, call one service method, convert back), wires the middleware
// and renders every error as a problem in one place. It holds no SQL and no business rule.
package httpapi

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	echomiddleware "github.com/oapi-codegen/echo-middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	parlor "github.com/parlor-dev/parlor"
	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/ratelimit"
	"github.com/parlor-dev/parlor/internal/realtime"
	"github.com/parlor-dev/parlor/internal/rooms"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// Deps is what the HTTP layer needs from the rest of the process.
type Deps struct {
	Config  config.Config
	Rooms   *rooms.Service
	Chat    *chat.Service
	Tickets *realtime.Tickets
	Gateway *realtime.Gateway
	Logger  *slog.Logger
	Pool    *pgxpool.Pool
	Redis   redis.UniversalClient // nil when REDIS_URL is empty
	Auth    *auth.Service
	Wallet  *wallet.Service
	Topups  *wallet.Topups
	Idem    *wallet.IdempotencyKeys
	// Limiter counts the requests of each endpoint class (Config's APP_RATE_*).
	Limiter ratelimit.Limiter
	// WebhookSecret verifies provider webhooks (and signs the sandbox's).
	WebhookSecret string
	Keys          *auth.KeyRing
	Registry      *prometheus.Registry
	// Draining reports whether the process is shutting down, when /readyz answers 503
	// (nil: never).
	Draining func() bool
}

// Server implements api.StrictServerInterface by composing one handler set per OpenAPI tag.
type Server struct {
	authHandlers
	roomHandlers
	messageHandlers
	realtimeHandlers
	walletHandlers
	adminHandlers
	opsHandlers
}

var _ api.StrictServerInterface = (*Server)(nil)

// New builds the echo instance that serves Parlor's HTTP API, docs and probes.
func New(d Deps) (*echo.Echo, error) {
	spec, err := api.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load embedded spec: %w", err)
	}
	specJSON, err := spec.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("render spec as JSON: %w", err)
	}
	// The validator matches paths only, never the Host header.
	spec.Servers = nil

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.IPExtractor = ipExtractor(d.Config.TrustedProxies)

	metrics := newHTTPMetrics(d.Registry)
	e.Use(
		requestID(),
		clientInfo(),
		accessLog(d.Logger, metrics),
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				d.Logger.ErrorContext(c.Request().Context(), "panic", "error", err.Error(), "stack", string(stack))
				return err
			},
		}),
		securityHeaders(d.Config.IsProduction()),
		requestDeadline(d.Config.RequestTimeout),
	)
	if len(d.Config.AllowedOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:     d.Config.AllowedOrigins,
			AllowHeaders:     []string{echo.HeaderAuthorization, echo.HeaderContentType, echo.HeaderXRequestID, "Idempotency-Key"},
			ExposeHeaders:    []string{echo.HeaderXRequestID, echo.HeaderRetryAfter, echo.HeaderWWWAuthenticate},
			AllowCredentials: false,
			MaxAge:           600,
		}))
	}
	// The Stripe webhook holds Stripe's events to a bound of its own (maxWebhookBody):
	// they are larger than the API's requests, and a refused one is retried for days.
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		Limit:   d.Config.BodyLimit,
		Skipper: func(c echo.Context) bool { return c.Path() == stripeWebhookPath },
	}))

	// Everything the contract describes goes through the request validator; the rest
	// (metrics, the contract itself, docs, the demo client) is plain HTTP.
	// Each endpoint class is then held to its rate (rateLimits); text that PostgreSQL
	// cannot store is refused next (textInputs); money-moving POSTs
	// then go through the Idempotency-Key store.
	api.RegisterHandlers(e.Group("", validator(spec, d.Auth.Tokens(), d.Auth.Revocations()),
		rateLimits(d.Limiter, requestLimitsOf(d.Config), limitedRoutes(spec), d.Logger), textInputs(spec), idempotency(d.Idem, idempotentRoutes(spec), d.Logger)), api.NewStrictHandler(&Server{
		authHandlers:     authHandlers{svc: d.Auth},
		roomHandlers:     roomHandlers{svc: d.Rooms},
		messageHandlers:  messageHandlers{svc: d.Chat, rooms: d.Rooms},
		realtimeHandlers: realtimeHandlers{tickets: d.Tickets, gateway: d.Gateway, publicURL: d.Config.PublicURL},
		walletHandlers:   walletHandlers{svc: d.Wallet, topups: d.Topups},
		adminHandlers:    adminHandlers{svc: wallet.NewAdmin(d.Wallet, d.Topups), admins: admins(d.Config)},
		opsHandlers:      opsHandlers{pool: d.Pool, redis: d.Redis, keys: d.Keys, draining: d.Draining},
	}, nil))

	// Provider webhooks are verified on their raw body, before any JSON handling.
	e.POST(stripeWebhookPath, stripeWebhook(d.Topups, d.WebhookSecret, newWebhookMetrics(d.Registry)))
	if sandbox, ok := d.Topups.Provider().(*payments.Sandbox); ok {
		sandboxRoutes(e, sandbox, d.WebhookSecret)
	}
	// The WebSocket upgrade checks its own ticket and parameters (before upgrading).
	e.GET("/v1/realtime", d.Gateway.Handle)
	e.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", parlor.OpenAPIYAML)
	})
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, specJSON)
	})
	e.GET("/asyncapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", parlor.AsyncAPIYAML)
	})
	if err := serveStatic(e, d.Config.PublicURL); err != nil {
		return nil, err
	}
	return e, nil
}

// serveStatic serves the docs page at /docs/ and the demo client at / (its page) and /demo/
// (its script and stylesheet), all embedded from static/.
func serveStatic(e *echo.Echo, publicURL string) error {
	docs, err := fs.Sub(parlor.Static, "static/docs")
	if err != nil {
		return fmt.Errorf("docs assets: %w", err)
	}
	e.GET("/docs", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/docs/") })
	e.GET("/docs/*", echo.WrapHandler(http.StripPrefix("/docs/", http.FileServerFS(docs))))

	demo, err := fs.Sub(parlor.Static, "static/demo")
	if err != nil {
		return fmt.Errorf("demo client assets: %w", err)
	}
	index, err := fs.ReadFile(demo, "index.html")
	if err != nil {
		return fmt.Errorf("demo client page (run 'go tool task generate'): %w", err)
	}
	csp := demoCSP(publicURL)
	e.GET("/", func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-cache") // the page names app.js and app.css: always current
		return c.HTMLBlob(http.StatusOK, index)
	})
	files := http.StripPrefix("/demo/", http.FileServerFS(demo))
	e.GET("/demo/*", func(c echo.Context) error {
		c.Response().Header().Set("Content-Security-Policy", csp)
		c.Response().Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	})
	return nil
}

// demoCSP is the demo client's Content-Security-Policy: its own script and stylesheet only
// (no inline code, no eval), and connections to this origin — REST and the realtime socket
// (`'self'` covers ws: on the same host in current browsers; the public URL's ws(s) origin is
// named too).
func demoCSP(publicURL string) string {
	connect := "'self'"
	if u, err := url.Parse(wsURL(publicURL)); err == nil && u.Host != "" && (u.Scheme == "ws" || u.Scheme == "wss") {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

func admins(cfg config.Config) map[uuid.UUID]bool {
	out := make(map[uuid.UUID]bool, len(cfg.AdminUserIDs))
	for _, id := range cfg.AdminUserIDs {
		out[id] = true
	}
	return out
}

// maxLongPoll is the longest wait GET /v1/sync's timeout_ms may ask for (the contract's
// maximum).
const maxLongPoll = 30 * time.Second

// requestDeadline gives every request timeout to be answered in — plus the wait a
// long-poll asks for — after which what it waits on (PostgreSQL, Redis, a pool slot) is
// cancelled and the request is answered 503 unavailable with Retry-After. Without it, a
// store that stops answering without closing the connection holds the request for as
// long as the connection stays up. The socket's life after the upgrade is not bound by it.
func requestDeadline(timeout time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			d := timeout
			if isLongPoll(c) {
				ms, _ := strconv.Atoi(c.QueryParam("timeout_ms"))
				d += min(time.Duration(ms)*time.Millisecond, maxLongPoll)
			}
			ctx, cancel := context.WithTimeout(c.Request().Context(), d)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

// NewHTTPServer returns the http.Server for handler with every timeout set: Go's zero
// values mean "wait forever", which lets slow clients hold connections open.
func NewHTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Long enough for a 30 s long-poll; WebSockets clear it on upgrade.
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  120 * time.Second,
		// net/http's own default (1 MiB): the contract lets a query's `since` be 65,536
		// characters, up to 786,432 bytes percent-encoded, to be answered with a problem;
		// a smaller limit answered net/http's bare text/plain 431 instead.
		MaxHeaderBytes: http.DefaultMaxHeaderBytes,
	}
}

// validator returns the OpenAPI request validator: it authenticates bearer tokens (401,
// never 403, on failure; the token of a revoked session too, except to log out again),
// rejects unknown fields and out-of-range values, and hands any failure to the error
// handler as a problem.
func validator(spec *openapi3.T, tokens *auth.AccessTokens, revoked *auth.Revocations) echo.MiddlewareFunc {
	return echomiddleware.OapiRequestValidatorWithOptions(spec, &echomiddleware.Options{
		SilenceServersWarning: true,
		Options: openapi3filter.Options{
			MultiError:         true,
			KeepValidatedValue: true,
			AuthenticationFunc: func(ctx context.Context, in *openapi3filter.AuthenticationInput) error {
				c := echomiddleware.GetEchoContext(ctx)
				header := c.Request().Header.Get(echo.HeaderAuthorization)
				scheme, token, ok := strings.Cut(header, " ")
				if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
					return apperr.New(apperr.Unauthorized, "an Authorization: Bearer access token is required")
				}
				p, err := tokens.Verify(strings.TrimSpace(token))
				if err != nil {
					return err
				}
				if revoked.Revoked(p.SessionID) && in.RequestValidationInput.Route.Path != "/v1/auth/logout" {
					return apperr.New(apperr.Unauthorized, "this session has ended (logged out or revoked): sign in again")
				}
				c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
				return nil
			},
		},
		// Field-level details for every validation failure, authentication first.
		MultiErrorHandler: func(me openapi3.MultiError) *echo.HTTPError {
			return &echo.HTTPError{Code: http.StatusBadRequest, Message: "invalid request", Internal: me}
		},
	})
}

// ipExtractor trusts X-Forwarded-For only from the configured proxies; without any, the
// client IP is the TCP peer's.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		_, ipNet, err := net.ParseCIDR(p.String())
		if err == nil {
			opts = append(opts, echo.TrustIPRange(ipNet))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

type clientKey struct{}

// clientInfo puts who is calling (IP as the extractor decides, user agent) on the request
// context, for throttling and session records below the HTTP layer.
func clientInfo() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ip, _ := netip.ParseAddr(c.RealIP())
			client := auth.Client{IP: ip.Unmap(), UserAgent: c.Request().UserAgent()}
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), clientKey{}, client)))
			return next(c)
		}
	}
}

// clientOf returns the caller recorded by clientInfo.
func clientOf(ctx context.Context) auth.Client {
	client, _ := ctx.Value(clientKey{}).(auth.Client)
	return client
}

// MetricsHandler serves the registry in the Prometheus text format, for the metrics
// listener (APP_METRICS_ADDR): the public port does not serve it.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// canonicalUUID is the one spelling of a uuid the contract's `format: uuid` accepts: 32 hex
// digits in 8-4-4-4-12 groups. kin-openapi checks no uuid format unless told, and
// uuid.Parse also takes braces, a urn: prefix and bare hex, so those used to pass.
const canonicalUUID = `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`

func init() {
	openapi3.DefineStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(canonicalUUID))
}
