package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
)

const (
	// revocationPoll is how often an instance reads the sessions revoked elsewhere: a
	// logout on one instance stops its access tokens on every other within this (the
	// contract promises 5 s).
	revocationPoll = 2 * time.Second
	// revocationWindow is how far back each poll reads, so that a slow poll or a revoking
	// transaction that commits late is still seen.
	revocationWindow = 30 * time.Second
)

// Revocations is this instance's set of the sessions revoked while an access token of
// theirs may still be valid. Access tokens are stateless JWTs; asking PostgreSQL on every
// request would cost a round trip each, so every instance keeps the set in memory and the
// request path costs a map lookup. A revocation made here is in the set at once, one made
// on another instance within revocationPoll, and a starting instance loads every
// revocation a live token could still carry.
type Revocations struct {
	pool *pgxpool.Pool
	// keep is how long after a revocation a token of the session may still pass its own
	// checks: the access-token lifetime plus the clock leeway.
	keep time.Duration

	mu    sync.RWMutex
	until map[uuid.UUID]time.Time // revoked session → when it may be forgotten
}

// NewRevocations returns an empty set for access tokens that live accessTTL.
func NewRevocations(pool *pgxpool.Pool, accessTTL time.Duration) *Revocations {
	return &Revocations{pool: pool, keep: accessTTL + clockLeeway, until: map[uuid.UUID]time.Time{}}
}

// Revoked says whether the session was revoked.
func (r *Revocations) Revoked(session uuid.UUID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.until[session]
	return ok
}

// Add records a revocation made by this instance.
func (r *Revocations) Add(session uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.until[session] = time.Now().Add(r.keep)
}

// Load reads every session revoked within the lifetime of an access token: call it before
// the instance serves requests.
func (r *Revocations) Load(ctx context.Context) error {
	return r.read(ctx, r.keep)
}

// read adds the sessions revoked within the last `within`, and forgets those whose tokens
// have all expired.
func (r *Revocations) read(ctx context.Context, within time.Duration) error {
	ids, err := db.New(r.pool).RecentlyRevokedSessions(ctx, within.Seconds())
	if err != nil {
		return fmt.Errorf("read revoked sessions: %w", err)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if _, ok := r.until[id]; !ok {
			r.until[id] = now.Add(r.keep)
		}
	}
	for id, t := range r.until {
		if now.After(t) {
			delete(r.until, id)
		}
	}
	return nil
}

// Run keeps the set current, reading what other instances revoked every revocationPoll,
// until ctx ends.
func (r *Revocations) Run(ctx context.Context, logger *slog.Logger) {
	tick := time.NewTicker(revocationPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := r.read(ctx, revocationWindow); err != nil && ctx.Err() == nil {
			logger.Error("auth: read revoked sessions", "error", err.Error())
		}
	}
}
