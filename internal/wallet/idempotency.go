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
//
// The rule for a key reused after its retention (24 h by default) is Stripe's: it is a new
// request. Its claim is new (Claim.Since), and the money paths name what they create after
// the claim, not the bare key, so a reuse never replays a day-old tip.
type IdempotencyKeys struct {
	pool *pgxpool.Pool
	// Retention is how long a key is kept (at least 24 h).
	Retention time.Duration
	// Stale is how long a request may stay in flight before a repeat may take over its key
	// (its instance is presumed dead). It outlives the slowest request that holds a key:
	// creating a top-up, bounded by CheckoutCreateTimeout. The money paths are idempotent by
	// themselves, so even a takeover never moves credits twice.
	Stale time.Duration
	// Now is the clock (time.Now; tests move it).
	Now func() time.Time
}

// IdempotencyStale is IdempotencyKeys.Stale's default: a minute more than the slowest
// request that holds a key.
const IdempotencyStale = CheckoutCreateTimeout + time.Minute

// NewIdempotencyKeys returns the store.
func NewIdempotencyKeys(pool *pgxpool.Pool, retention time.Duration) *IdempotencyKeys {
	return &IdempotencyKeys{pool: pool, Retention: retention, Stale: IdempotencyStale, Now: time.Now}
}

// Claim is a request's hold on its Idempotency-Key: the key, and when it was claimed. Every
// retry of one request shares the claim; a reuse of the key past its retention gets a new
// one.
type Claim struct {
	Key   string
	Since time.Time
}

// Name names the operation the claim stands for: the same for every retry of one request,
// another for a reuse of the key past its retention.
func (c Claim) Name() string { return c.Key + "@" + c.Since.UTC().Format(time.RFC3339Nano) }

type claimKey struct{}

// WithClaim returns ctx carrying the request's claim.
func WithClaim(ctx context.Context, c Claim) context.Context {
	return context.WithValue(ctx, claimKey{}, c)
}

// RequestName is the name of the operation a money-moving request stands for: its claim's
// name when the Idempotency-Key store claimed the key (the HTTP layer), else the key.
func RequestName(ctx context.Context, key string) string {
	if c, ok := ctx.Value(claimKey{}).(Claim); ok && c.Key == key {
		return c.Name()
	}
	return key
}

// StoredResponse is a finished request's response.
type StoredResponse struct {
	Status      int
	ContentType string
	Body        []byte
}

// InFlightRetry is what a repeat of a request still in flight is told to wait.
const InFlightRetry = time.Second

// Begin claims key for a request with fingerprint hash. It returns the claim when the caller
// now owns the key and must run the request (then Finish or Release it); the stored response
// when the same request finished before; and an error when the key was used for a different
// request (422) or the first request is still running (409 with Retry-After).
func (k *IdempotencyKeys) Begin(ctx context.Context, user uuid.UUID, key string, hash []byte) (*StoredResponse, Claim, error) {
	q := db.New(k.pool)
	inFlight := &apperr.Error{Code: apperr.IdempotencyInFlight, RetryAfter: InFlightRetry,
		Message: "a request with this Idempotency-Key is still in progress; retry after a moment"}
	for range 3 {
		now := k.Now()
		since, err := q.ClaimIdempotencyKey(ctx, db.ClaimIdempotencyKeyParams{
			UserID: user, Key: key, RequestHash: hash,
			Now: now, ExpiredBefore: now.Add(-k.Retention), StaleBefore: now.Add(-k.Stale),
		})
		if err == nil {
			return nil, Claim{Key: key, Since: since}, nil
		}
		if !postgres.IsNoRows(err) {
			return nil, Claim{}, fmt.Errorf("idempotency key: %w", err)
		}
		row, err := q.GetIdempotencyKey(ctx, db.GetIdempotencyKeyParams{UserID: user, Key: key})
		if postgres.IsNoRows(err) {
			continue // pruned in between: claim again
		}
		if err != nil {
			return nil, Claim{}, fmt.Errorf("idempotency key: %w", err)
		}
		if string(row.RequestHash) != string(hash) {
			return nil, Claim{}, apperr.New(apperr.IdempotencyMismatch, "this Idempotency-Key was used for a different request; use a new key for a new request")
		}
		if row.Status == nil {
			return nil, Claim{}, inFlight
		}
		res := &StoredResponse{Status: int(*row.Status), Body: row.Body}
		if row.ContentType != nil {
			res.ContentType = *row.ContentType
		}
		return res, Claim{}, nil
	}
	return nil, Claim{}, inFlight
}

// Finish stores the response of the request that owns key.
func (k *IdempotencyKeys) Finish(ctx context.Context, user uuid.UUID, key string, res StoredResponse) error {
	status := int32(res.Status)
	return db.New(k.pool).FinishIdempotencyKey(ctx, db.FinishIdempotencyKeyParams{
		UserID: user, Key: key, Status: &status, ContentType: &res.ContentType, Body: res.Body,
	})
}

// Release unlocks key after a request that should not be replayed (a server error, a rate
// limit): the client may retry the same request with the same key at once, under the same
// claim.
func (k *IdempotencyKeys) Release(ctx context.Context, user uuid.UUID, key string) error {
	return db.New(k.pool).ReleaseIdempotencyKey(ctx, db.ReleaseIdempotencyKeyParams{UserID: user, Key: key})
}

// Prune deletes keys older than the retention; it returns how many.
func (k *IdempotencyKeys) Prune(ctx context.Context) (int64, error) {
	return db.New(k.pool).PruneIdempotencyKeys(ctx, k.Now().Add(-k.Retention))
}
