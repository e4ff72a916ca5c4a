package realtime

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Presence tracks which users have at least one open socket, cluster-wide. Each socket
// refreshes its entry on every heartbeat; an entry that is not refreshed expires, so a
// crashed instance's sockets stop counting on their own.
type Presence interface {
	// Connect records a socket; first reports whether the user had none before.
	Connect(ctx context.Context, user uuid.UUID, conn string, ttl time.Duration) (first bool, err error)
	// Refresh extends a socket's entry.
	Refresh(ctx context.Context, user uuid.UUID, conn string, ttl time.Duration) error
	// Disconnect marks a socket gone: it still counts for grace (so a quick reconnect does
	// not flap), and last reports whether the user has no other socket.
	Disconnect(ctx context.Context, user uuid.UUID, conn string, grace time.Duration) (last bool, err error)
	// Online reports which of users have a live socket.
	Online(ctx context.Context, users []uuid.UUID) (map[uuid.UUID]bool, error)
}

// MemoryPresence is Presence for a single instance.
type MemoryPresence struct {
	mu    sync.Mutex
	users map[uuid.UUID]map[string]time.Time
	now   func() time.Time
}

// NewMemoryPresence returns an in-process presence tracker.
func NewMemoryPresence() *MemoryPresence {
	return &MemoryPresence{users: map[uuid.UUID]map[string]time.Time{}, now: time.Now}
}

func (p *MemoryPresence) live(user uuid.UUID) int {
	now, n := p.now(), 0
	for c, exp := range p.users[user] {
		if exp.After(now) {
			n++
		} else {
			delete(p.users[user], c)
		}
	}
	if n == 0 {
		delete(p.users, user)
	}
	return n
}

// Connect implements Presence.
func (p *MemoryPresence) Connect(_ context.Context, user uuid.UUID, conn string, ttl time.Duration) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := p.live(user) == 0
	if p.users[user] == nil {
		p.users[user] = map[string]time.Time{}
	}
	p.users[user][conn] = p.now().Add(ttl)
	return first, nil
}

// Refresh implements Presence.
func (p *MemoryPresence) Refresh(_ context.Context, user uuid.UUID, conn string, ttl time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[user] == nil {
		p.users[user] = map[string]time.Time{}
	}
	p.users[user][conn] = p.now().Add(ttl)
	return nil
}

// Disconnect implements Presence.
func (p *MemoryPresence) Disconnect(_ context.Context, user uuid.UUID, conn string, grace time.Duration) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.users[user], conn)
	last := p.live(user) == 0
	if p.users[user] == nil {
		p.users[user] = map[string]time.Time{}
	}
	p.users[user][conn] = p.now().Add(grace)
	return last, nil
}

// Online implements Presence.
func (p *MemoryPresence) Online(_ context.Context, users []uuid.UUID) (map[uuid.UUID]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uuid.UUID]bool, len(users))
	for _, u := range users {
		out[u] = p.live(u) > 0
	}
	return out, nil
}

// RedisPresence is Presence shared by every instance: one hash per user, socket id →
// expiry (unix ms), pruned as it is read.
type RedisPresence struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisPresence returns a tracker storing under prefix.
func NewRedisPresence(client redis.UniversalClient, prefix string) *RedisPresence {
	return &RedisPresence{client: client, prefix: prefix + "presence:"}
}

// liveScript prunes expired sockets of a user and returns how many remain.
var liveScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local entries = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #entries, 2 do
  if tonumber(entries[i+1]) <= now then redis.call('HDEL', KEYS[1], entries[i]) else n = n + 1 end
end
return n
`)

func (p *RedisPresence) key(user uuid.UUID) string { return p.prefix + user.String() }

func (p *RedisPresence) live(ctx context.Context, user uuid.UUID) (int64, error) {
	return liveScript.Run(ctx, p.client, []string{p.key(user)}, time.Now().UnixMilli()).Int64()
}

// Connect implements Presence.
func (p *RedisPresence) Connect(ctx context.Context, user uuid.UUID, conn string, ttl time.Duration) (bool, error) {
	n, err := p.live(ctx, user)
	if err != nil {
		return false, err
	}
	return n == 0, p.Refresh(ctx, user, conn, ttl)
}

// refreshScript sets a socket's expiry and lets the user's hash live at least as long, never
// shorter: a socket leaving with a short grace must not cut the life of its siblings' entries
// (setting the key's TTL outright once expired a user's live sockets along with a closed one).
var refreshScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`)

// Refresh implements Presence.
func (p *RedisPresence) Refresh(ctx context.Context, user uuid.UUID, conn string, ttl time.Duration) error {
	return refreshScript.Run(ctx, p.client, []string{p.key(user)},
		conn, time.Now().Add(ttl).UnixMilli(), ttl.Milliseconds()).Err()
}

// Disconnect implements Presence.
func (p *RedisPresence) Disconnect(ctx context.Context, user uuid.UUID, conn string, grace time.Duration) (bool, error) {
	if err := p.client.HDel(ctx, p.key(user), conn).Err(); err != nil {
		return false, err
	}
	n, err := p.live(ctx, user)
	if err != nil {
		return false, err
	}
	return n == 0, p.Refresh(ctx, user, conn, grace)
}

// Online implements Presence.
func (p *RedisPresence) Online(ctx context.Context, users []uuid.UUID) (map[uuid.UUID]bool, error) {
	out := make(map[uuid.UUID]bool, len(users))
	now := time.Now().UnixMilli()
	pipe := p.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGetAll(ctx, p.key(u))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	for i, u := range users {
		for _, exp := range cmds[i].Val() {
			if ms, _ := strconv.ParseInt(exp, 10, 64); ms > now {
				out[u] = true
				break
			}
		}
	}
	return out, nil
}
