package wallet_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// TestAnIdempotencyKeyIsHeldAsLongAsItsRequestMayRun: a request holding its key (creating a
// top-up: at most CheckoutCreateTimeout, its provider call and retries included) keeps it
// against repeats for as long as it may run — past the minute after which the key used to
// be taken over — and only a request presumed dead (after IdempotencyStale) is taken over,
// under the same claim. A released key is claimed again at once, under the same claim; a
// key past its retention is a new claim.
func TestAnIdempotencyKeyIsHeldAsLongAsItsRequestMayRun(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	user := newUser(t, pool)
	keys := wallet.NewIdempotencyKeys(pool, 24*time.Hour)
	now := time.Now()
	keys.Now = func() time.Time { return now }
	hash := sha256.Sum256([]byte("POST /v1/wallet/topups {small}"))

	stored, first, err := keys.Begin(ctx, user, "k", hash[:])
	require.NoError(t, err)
	require.Nil(t, stored)
	for _, after := range []time.Duration{time.Second, time.Minute + time.Second, wallet.CheckoutCreateTimeout, wallet.IdempotencyStale - time.Second} {
		now = first.Since.Add(after)
		_, _, err := keys.Begin(ctx, user, "k", hash[:])
		require.Equal(t, apperr.IdempotencyInFlight, apperr.CodeOf(err), "%s into the first request: %v", after, err)
	}

	now = first.Since.Add(wallet.IdempotencyStale + time.Second)
	stored, takeover, err := keys.Begin(ctx, user, "k", hash[:])
	require.NoError(t, err)
	require.Nil(t, stored)
	require.Equal(t, first.Name(), takeover.Name(), "a takeover is a retry of the same request")

	require.NoError(t, keys.Release(ctx, user, "k"))
	_, retry, err := keys.Begin(ctx, user, "k", hash[:])
	require.NoError(t, err)
	require.Equal(t, first.Name(), retry.Name(), "a retry after a released attempt is the same request")
	other := sha256.Sum256([]byte("POST /v1/wallet/topups {large}"))
	require.NoError(t, keys.Release(ctx, user, "k"))
	_, _, err = keys.Begin(ctx, user, "k", other[:])
	require.Equal(t, apperr.IdempotencyMismatch, apperr.CodeOf(err), "the key stays bound to its request")

	now = first.Since.Add(24*time.Hour + time.Second)
	_, renewed, err := keys.Begin(ctx, user, "k", other[:])
	require.NoError(t, err)
	require.NotEqual(t, first.Name(), renewed.Name(), "past its retention the key names a new request")
	require.True(t, renewed.Since.After(first.Since))
}
