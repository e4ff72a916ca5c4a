package wallet

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// IdempotencyKeys stores, per user and Idempotency-Key, the fingerprint of the first request
// and, once it finished, its response, so a repeat is answered with the same response.
type IdempotencyKeys struct {
	pool *pgxpool.Pool
	// Retention is how long a key is kept (at least 24 h).
	Retention time.Duration
	// Stale is how long a request may stay in flight before a repeat may take over its key
	// (its instance is presumed dead). The money paths are idempotent by themselves, so a
	// takeover never moves credits twice.
	Stale time.Duration
}

// NewIdempotencyKeys returns the store.
func NewIdempotencyKeys(pool *pgxpool.Pool, retention time.Duration) *IdempotencyKeys {
	return &IdempotencyKeys{pool: pool, Retention: retention, Stale: time.Minute}
}

// StoredResponse is a finished request's response.
type StoredResponse struct {
	Status      int
	ContentType string
	Body        []byte
}

// InFlightRetry is what a repeat of a request still in flight is told to wait.
const InFlightRetry = time.Second

// Begin claims key for a request with fingerprint hash. It returns nil, nil when the caller
// now owns the key and must run the request (then Finish or Release it); the stored response
// when the same request finished before; and an error when the key was used for a different
// request (422) or the first request is still running (409 with Retry-After).
func (k *IdempotencyKeys) Begin(ctx context.Context, user uuid.UUID, key string, hash []byte) (*StoredResponse, error) {
	q := db.New(k.pool)
	for range 3 {
		_, err := q.ClaimIdempotencyKey(ctx, db.ClaimIdempotencyKeyParams{
			UserID: user, Key: key, RequestHash: hash,
			RetentionSeconds: k.Retention.Seconds(), StaleSeconds: k.Stale.Seconds(),
		})
		if err == nil {
			return nil, nil
		}
		if !postgres.IsNoRows(err) {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		row, err := q.GetIdempotencyKey(ctx, db.GetIdempotencyKeyParams{UserID: user, Key: key})
		if postgres.IsNoRows(err) {
			continue // released in between: claim again
		}
		if err != nil {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		if string(row.RequestHash) != string(hash) {
			return nil, apperr.New(apperr.IdempotencyMismatch, "this Idempotency-Key was used for a different request; use a new key for a new request")
		}
		if row.Status == nil {
			return nil, &apperr.Error{Code: apperr.IdempotencyInFlight, RetryAfter: InFlightRetry,
				Message: "a request with this Idempotency-Key is still in progress; retry after a moment"}
		}
		res := &StoredResponse{Status: int(*row.Status), Body: row.Body}
		if row.ContentType != nil {
			res.ContentType = *row.ContentType
		}
		return res, nil
	}
	return nil, &apperr.Error{Code: apperr.IdempotencyInFlight, RetryAfter: InFlightRetry,
		Message: "a request with this Idempotency-Key is still in progress; retry after a moment"}
}

// Finish stores the response of the request that owns key.
func (k *IdempotencyKeys) Finish(ctx context.Context, user uuid.UUID, key string, res StoredResponse) error {
	status := int32(res.Status)
	return db.New(k.pool).FinishIdempotencyKey(ctx, db.FinishIdempotencyKeyParams{
		UserID: user, Key: key, Status: &status, ContentType: &res.ContentType, Body: res.Body,
	})
}

// Release frees key after a request that should not be replayed (a server error, a rate
// limit): the client may retry with the same key.
func (k *IdempotencyKeys) Release(ctx context.Context, user uuid.UUID, key string) error {
	return db.New(k.pool).ReleaseIdempotencyKey(ctx, db.ReleaseIdempotencyKeyParams{UserID: user, Key: key})
}

// Prune deletes keys older than the retention; it returns how many.
func (k *IdempotencyKeys) Prune(ctx context.Context) (int64, error) {
	return db.New(k.pool).PruneIdempotencyKeys(ctx, k.Retention.Seconds())
}
