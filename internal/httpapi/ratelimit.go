package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/ratelimit"
)

// requestLimits are the limits of each endpoint class (APP_RATE_*).
type requestLimits struct {
	sync, read, write, public config.Rate
}

func requestLimitsOf(c config.Config) requestLimits {
	return requestLimits{sync: c.RateSync, read: c.RateRead, write: c.RateWrite, public: c.RatePublic}
}

// limitedRoutes are the operations whose contract declares a 429: every one but the
// probes and the key set.
func limitedRoutes(spec *openapi3.T) map[string]bool {
	return routesWhere(spec, func(op *openapi3.Operation) bool {
		return op.Responses != nil && op.Responses.Value("429") != nil
	})
}

// rateLimits counts each request of a limited route against its class's limit, per user
// (per client IP without a bearer token; the validator has authenticated the caller by
// now), on every instance together when the limiter is Redis's. Over the limit it answers
// 429 rate_limited with Retry-After. The endpoints that guard against guessing (login,
// sign-up) and tips have stricter limits of their own besides.
//
// A limiter that fails (Redis unreachable) lets the request through: the limits protect
// the service, and a request that needs Redis for its own work answers 503 there.
func rateLimits(limiter ratelimit.Limiter, limits requestLimits, routes map[string]bool, logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if !routes[req.Method+" "+c.Path()] {
				return next(c)
			}
			class, rate := "write", limits.write
			switch {
			case c.Path() == "/v1/sync":
				class, rate = "sync", limits.sync
			case req.Method == http.MethodGet:
				class, rate = "read", limits.read
			}
			who := "ip:" + c.RealIP()
			if p, ok := auth.PrincipalFrom(req.Context()); ok {
				who = "user:" + p.UserID.String()
			} else {
				class, rate = "public", limits.public
			}
			ok, retryAfter, err := limiter.Allow(req.Context(), "req:"+class+":"+who, rate.N, rate.Window)
			if err != nil {
				logger.WarnContext(req.Context(), "rate limit: not counted", "class", class, "error", err.Error())
				return next(c)
			}
			if !ok {
				return apperr.RateLimit(retryAfter, "too many "+class+" requests: at most "+rate.String()+" (see Retry-After)")
			}
			return next(c)
		}
	}
}
