package ratelimit

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func testRedis(t *testing.T) *redis.Client {
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.Ping(context.Background()).Err(), "Redis must run for tests (scripts/dev-services.sh)")
	return c
}

func TestLimiters(t *testing.T) {
	t.Parallel()
	limiters := map[string]Limiter{
		"memory": NewMemory(),
		"redis":  NewRedis(testRedis(t), "parlortest:"+uuid.NewString()+":"),
	}
	for name, l := range limiters {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for i := 0; i < 3; i++ {
				ok, _, err := l.Allow(ctx, "k", 3, time.Minute)
				require.NoError(t, err)
				require.True(t, ok, "attempt %d", i+1)
			}
			ok, retry, err := l.Allow(ctx, "k", 3, time.Minute)
			require.NoError(t, err)
			require.False(t, ok)
			require.True(t, retry > 50*time.Second && retry <= time.Minute, "retry after %s", retry)

			// Keys are independent.
			ok, _, err = l.Allow(ctx, "other", 3, time.Minute)
			require.NoError(t, err)
			require.True(t, ok)

			require.NoError(t, l.Reset(ctx, "k"))
			ok, _, err = l.Allow(ctx, "k", 3, time.Minute)
			require.NoError(t, err)
			require.True(t, ok, "a reset key starts over")

			// A window reopens when it ends.
			for i := 0; i < 2; i++ {
				ok, _, err = l.Allow(ctx, "short", 1, 50*time.Millisecond)
				require.NoError(t, err)
				require.Equal(t, i == 0, ok)
			}
			time.Sleep(80 * time.Millisecond)
			ok, _, err = l.Allow(ctx, "short", 1, 50*time.Millisecond)
			require.NoError(t, err)
			require.True(t, ok)
		})
	}
}

func TestMemoryForgetsEndedWindows(t *testing.T) {
	m := NewMemory()
	now := time.Now()
	m.now = func() time.Time { return now }
	for i := 0; i < 100; i++ {
		_, _, _ = m.Allow(context.Background(), uuid.NewString(), 1, time.Second)
	}
	now = now.Add(2 * time.Minute)
	_, _, _ = m.Allow(context.Background(), "fresh", 1, time.Second)
	require.Len(t, m.windows, 1)
}
