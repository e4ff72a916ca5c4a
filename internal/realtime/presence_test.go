package realtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/realtime"
)

// TestRedisPresenceKeepsSiblingSocketsOnline: a user with two sockets, one of which closes
// with a short grace period, stays online through the other — on every instance, since the
// state is in Redis — and goes offline only once the last socket is gone and its grace ends.
func TestRedisPresenceKeepsSiblingSocketsOnline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts, err := redis.ParseURL(parlortest.RedisURL())
	require.NoError(t, err)
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	p := realtime.NewRedisPresence(client, "parlortest:"+uuid.NewString()+":")
	ann := uuid.New()
	const grace = 100 * time.Millisecond

	first, err := p.Connect(ctx, ann, "a", 10*time.Second)
	require.NoError(t, err)
	require.True(t, first, "the first socket brings ann online")
	first, err = p.Connect(ctx, ann, "b", 10*time.Second)
	require.NoError(t, err)
	require.False(t, first)

	last, err := p.Disconnect(ctx, ann, "a", grace)
	require.NoError(t, err)
	require.False(t, last, "socket b is still open")
	time.Sleep(3 * grace) // past a's grace: only b keeps ann online now
	online, err := p.Online(ctx, []uuid.UUID{ann})
	require.NoError(t, err)
	require.True(t, online[ann], "ann's open socket keeps her online after a sibling's grace ended")

	last, err = p.Disconnect(ctx, ann, "b", grace)
	require.NoError(t, err)
	require.True(t, last)
	online, err = p.Online(ctx, []uuid.UUID{ann})
	require.NoError(t, err)
	require.True(t, online[ann], "online during the grace period")
	require.Eventually(t, func() bool {
		online, err := p.Online(ctx, []uuid.UUID{ann})
		return err == nil && !online[ann]
	}, 5*time.Second, 20*time.Millisecond, "offline once the last grace ends")
}
