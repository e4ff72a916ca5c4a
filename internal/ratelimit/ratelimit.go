// Package ratelimit counts attempts per key in fixed windows, in Redis when several
// instances must share the counts, in process memory otherwise.
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter counts one attempt under key and reports whether it is within limit attempts per
// window; when not, retryAfter says when the window reopens.
type Limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
	// Reset forgets the attempts under key (e.g. after a successful login).
	Reset(ctx context.Context, key string) error
}

// Redis is a Limiter shared by every instance using the same Redis.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis returns a limiter storing its counters under prefix.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix + "rl:"}
}

// allowScript increments the counter, starts its window on the first hit and returns the
// count and the window's remaining milliseconds, atomically.
var allowScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
`)

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	res, err := allowScript.Run(ctx, r.client, []string{r.prefix + key}, window.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if res[0] > int64(limit) {
		return false, time.Duration(res[1]) * time.Millisecond, nil
	}
	return true, 0, nil
}

// Reset implements Limiter.
func (r *Redis) Reset(ctx context.Context, key string) error {
	return r.client.Del(ctx, r.prefix+key).Err()
}

// Memory is a Limiter for a single instance.
type Memory struct {
	mu        sync.Mutex
	windows   map[string]*window
	now       func() time.Time
	lastSweep time.Time
}

type window struct {
	count int
	ends  time.Time
}

// NewMemory returns an in-process limiter.
func NewMemory() *Memory {
	return &Memory{windows: make(map[string]*window), now: time.Now}
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, limit int, win time.Duration) (bool, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	w, ok := m.windows[key]
	if !ok || !now.Before(w.ends) {
		w = &window{ends: now.Add(win)}
		m.windows[key] = w
	}
	w.count++
	if w.count > limit {
		return false, w.ends.Sub(now), nil
	}
	return true, 0, nil
}

// Reset implements Limiter.
func (m *Memory) Reset(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.windows, key)
	return nil
}

// sweep drops ended windows at most once a minute, so memory stays bounded by the keys seen
// in the longest window.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.lastSweep) < time.Minute {
		return
	}
	m.lastSweep = now
	for k, w := range m.windows {
		if !now.Before(w.ends) {
			delete(m.windows, k)
		}
	}
}
