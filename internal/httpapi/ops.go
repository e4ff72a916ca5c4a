package httpapi

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/auth"
)

// opsHandlers serve the `ops` tag and the key set.
type opsHandlers struct {
	pool     *pgxpool.Pool
	redis    redis.UniversalClient
	keys     *auth.KeyRing
	draining func() bool
}

// readinessTimeout bounds each dependency check, so a hung dependency fails the probe
// instead of hanging it.
const readinessTimeout = time.Second

// errDraining is /readyz's answer while the process drains before it stops: an expected
// answer, not a failure, so it is not logged as one.
var errDraining = &apperr.Error{Code: apperr.NotReady, Message: "shutting down: this instance takes no new traffic", RetryAfter: time.Second}

func (h opsHandlers) GetHealth(context.Context, api.GetHealthRequestObject) (api.GetHealthResponseObject, error) {
	return api.GetHealth200JSONResponse{Status: api.HealthStatusOk}, nil
}

func (h opsHandlers) GetReady(ctx context.Context, _ api.GetReadyRequestObject) (api.GetReadyResponseObject, error) {
	if h.draining != nil && h.draining() {
		return nil, errDraining
	}
	ctx, cancel := context.WithTimeout(ctx, readinessTimeout)
	defer cancel()
	checks := map[string]api.ReadinessChecks{}
	if err := h.pool.Ping(ctx); err != nil {
		return nil, &apperr.Error{Code: apperr.NotReady, Message: "PostgreSQL is unreachable", RetryAfter: time.Second, Err: err}
	}
	checks["postgres"] = api.ReadinessChecksOk
	if h.redis == nil {
		checks["redis"] = api.ReadinessChecksDisabled
	} else if err := h.redis.Ping(ctx).Err(); err != nil {
		return nil, &apperr.Error{Code: apperr.NotReady, Message: "Redis is unreachable", RetryAfter: time.Second, Err: err}
	} else {
		checks["redis"] = api.ReadinessChecksOk
	}
	return api.GetReady200JSONResponse{Status: api.ReadinessStatusOk, Checks: checks}, nil
}

func (h opsHandlers) GetJWKS(context.Context, api.GetJWKSRequestObject) (api.GetJWKSResponseObject, error) {
	keys := make([]api.JWK, 0, len(h.keys.Keys()))
	for _, k := range h.keys.Keys() {
		keys = append(keys, api.JWK{
			Kty: api.OKP, Crv: api.Ed25519, Alg: api.EdDSA, Use: api.Sig,
			Kid: k.ID, X: base64.RawURLEncoding.EncodeToString(k.Public()),
		})
	}
	cache := "public, max-age=300"
	return api.GetJWKS200JSONResponse{Body: api.JWKS{Keys: keys}, Headers: api.GetJWKS200ResponseHeaders{CacheControl: &cache}}, nil
}

func millis(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
