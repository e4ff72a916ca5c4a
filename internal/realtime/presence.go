package realtime

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Presence tracks, cluster-wide, each user's open sockets (which count against the per-user
// connection cap) and recently closed ones (which keep the user online for a grace period,
// so a quick reconnect does not flap). Every entry has an expiry: open sockets are refreshed
// by the heartbeat, and an entry that is not refreshed expires, so a crashed instance's
// sockets stop counting, for the cap and for presence, on their own. Shared trackers also
// know which instances are alive (RedisPresence.Run), so the sockets of an instance killed
// without a goodbye stop counting within its instance timeout instead of their expiry.
type Presence interface {
	// NewConnID names a new socket of this instance.
	NewConnID() string
	// Admit spends the socket's ticket (unless ticket is the zero TicketClaim) and records
	// the new socket if its user has fewer than max open sockets cluster-wide (sockets in
	// their grace period after closing do not count against the cap). Both are one atomic
	// step in one round trip (a Lua script over the user's one key in Redis), so a ticket
	// opens one socket and concurrent handshakes on several instances cannot overshoot the
	// cap. A ticket spent before gets ErrTicketUsed and records nothing; admitted=false
	// (over the cap) spends the ticket and records no socket. first reports that the user
	// had no socket before, live or in grace (so they are newly online); it is false when
	// the socket is not admitted.
	Admit(ctx context.Context, user uuid.UUID, conn string, ttl time.Duration, max int, ticket TicketClaim) (admitted, first bool, err error)
	// Refresh extends the entries of many sockets (the heartbeat refreshes a batch at once):
	// one round trip (a pipeline) in Redis however many sockets. A socket that has been
	// disconnected (and is in its grace period) is not revived by a late refresh; one whose
	// entry has expired is recorded again, since it is evidently still open.
	Refresh(ctx context.Context, ttl time.Duration, socks ...Socket) error
	// Disconnect marks a socket gone: it no longer counts against the cap but keeps its user
	// online for grace; last reports whether the user has no other open socket.
	Disconnect(ctx context.Context, user uuid.UUID, conn string, grace time.Duration) (last bool, err error)
	// Online reports which of users have a socket, open or in grace.
	Online(ctx context.Context, users []uuid.UUID) (map[uuid.UUID]bool, error)
}

// Socket names one socket of a user.
type Socket struct {
	User uuid.UUID
	Conn string
}

// graceTag prefixes the entry a closed socket leaves for its grace period, and ticketTag
// the entry of a spent ticket. An open socket's entry is its bare id (socket ids start with
// neither), so the cap counts only untagged entries, presence only untagged and grace ones,
// and no two kinds collide.
const (
	graceTag  = "g:"
	ticketTag = "t:"
)

// TicketClaim is a ticket to spend with a socket's admission: its nonce, remembered as used
// until a little past the ticket's expiry (when it is refused for that anyway).
type TicketClaim struct {
	Nonce   string
	Expires time.Time
}

func (t TicketClaim) field() string { return ticketTag + t.Nonce }

// ErrTicketUsed is Admit's answer to a ticket spent before.
var ErrTicketUsed = errors.New("the ticket was used already")

func graceField(conn string) string { return graceTag + conn }

// newSocketID is a random socket id (no '.', which RedisPresence uses to name the instance).
func newSocketID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// MemoryPresence is Presence for a single instance.
type MemoryPresence struct {
	mu sync.Mutex
	// users maps each user to their entries: socket id (open) or graceField(id) → expiry.
	users map[uuid.UUID]map[string]time.Time
	now   func() time.Time
}

// NewMemoryPresence returns an in-process presence tracker.
func NewMemoryPresence() *MemoryPresence {
	return &MemoryPresence{users: map[uuid.UUID]map[string]time.Time{}, now: time.Now}
}

// scan prunes user's expired entries and counts those left, other than the field skip: the
// open ones and all of them.
func (p *MemoryPresence) scan(user uuid.UUID, now time.Time, skip string) (open, all int) {
	entries := p.users[user]
	for f, exp := range entries {
		switch {
		case !exp.After(now):
			delete(entries, f)
		case f != skip && !strings.HasPrefix(f, ticketTag):
			all++
			if !strings.HasPrefix(f, graceTag) {
				open++
			}
		}
	}
	if len(entries) == 0 {
		delete(p.users, user)
	}
	return open, all
}

func (p *MemoryPresence) set(user uuid.UUID, field string, exp time.Time) {
	if p.users[user] == nil {
		p.users[user] = map[string]time.Time{}
	}
	p.users[user][field] = exp
}

// NewConnID implements Presence.
func (p *MemoryPresence) NewConnID() string { return "c_" + newSocketID() }

// Admit implements Presence.
func (p *MemoryPresence) Admit(_ context.Context, user uuid.UUID, conn string, ttl time.Duration, max int, ticket TicketClaim) (bool, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	open, all := p.scan(user, now, conn)
	if ticket != (TicketClaim{}) {
		if _, used := p.users[user][ticket.field()]; used {
			return false, false, ErrTicketUsed
		}
		p.set(user, ticket.field(), ticket.Expires)
	}
	if open >= max {
		return false, false, nil
	}
	p.set(user, conn, now.Add(ttl))
	return true, all == 0, nil
}

// Refresh implements Presence.
func (p *MemoryPresence) Refresh(_ context.Context, ttl time.Duration, socks ...Socket) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for _, s := range socks {
		entries := p.users[s.User]
		if _, open := entries[s.Conn]; !open {
			if g, ok := entries[graceField(s.Conn)]; ok && g.After(now) {
				continue // closed already: a late heartbeat must not reopen it
			}
		}
		p.set(s.User, s.Conn, now.Add(ttl))
	}
	return nil
}

// Disconnect implements Presence.
func (p *MemoryPresence) Disconnect(_ context.Context, user uuid.UUID, conn string, grace time.Duration) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	delete(p.users[user], conn)
	open, _ := p.scan(user, now, "")
	if grace > 0 {
		p.set(user, graceField(conn), now.Add(grace))
	}
	return open == 0, nil
}

// Online implements Presence.
func (p *MemoryPresence) Online(_ context.Context, users []uuid.UUID) (map[uuid.UUID]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	out := make(map[uuid.UUID]bool, len(users))
	for _, u := range users {
		_, all := p.scan(u, now, "")
		out[u] = all > 0
	}
	return out, nil
}

// RedisPresence is Presence shared by every instance: one hash per user, socket id (open) or
// graceField(id) → expiry (unix ms), pruned as it is written. The hash itself expires once
// its longest-lived entry has (the scripts extend the key's TTL, never shorten it), so an
// idle user leaves nothing behind. Times are the calling instance's clock, passed in.
//
// A socket id starts with its instance's id and a '.'. Each instance beats (Run) into one
// sorted set, instance id → last beat; an instance silent for longer than its timeout is
// dead, and its open entries count neither against the cap nor for presence. Without that,
// the sockets of a SIGKILLed instance held their users' cap until their entries expired
// (60 s by default), and reconnecting elsewhere was refused with 4009. The dead set is read
// with each beat and passed to the scripts as arguments, so they touch only their user's key
// (what Redis Cluster requires of a script).
type RedisPresence struct {
	client   redis.UniversalClient
	prefix   string
	now      func() time.Time
	instance string
	timeout  time.Duration
	dead     atomic.Pointer[[]string]
}

// DefaultInstanceTimeout is how long an instance may go without a beat (one every fifth of
// it) before its sockets stop counting. Longer than a GC pause or a Redis blip, and well
// under the 60 s its socket entries take to expire.
const DefaultInstanceTimeout = 10 * time.Second

// forgetInstanceAfter is how long a dead instance stays in the set: past any socket entry's
// expiry, after which it no longer matters.
const forgetInstanceAfter = time.Hour

// NewRedisPresence returns a tracker storing under prefix, for an instance that beats (Run)
// more often than timeout.
func NewRedisPresence(client redis.UniversalClient, prefix string, timeout time.Duration) *RedisPresence {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &RedisPresence{client: client, prefix: prefix + "presence:", now: time.Now,
		instance: "i" + base64.RawURLEncoding.EncodeToString(b), timeout: timeout}
}

func (p *RedisPresence) key(user uuid.UUID) string { return p.prefix + user.String() }

func (p *RedisPresence) instancesKey() string { return p.prefix + "instances" }

// NewConnID implements Presence.
func (p *RedisPresence) NewConnID() string { return p.instance + "." + newSocketID() }

// Run beats every fifth of the instance timeout until ctx ends, then leaves the set (a clean
// stop has closed its sockets already).
func (p *RedisPresence) Run(ctx context.Context, logger *slog.Logger) {
	tick := time.NewTicker(p.timeout / 5)
	defer tick.Stop()
	failing := false
	for {
		err := p.Beat(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			logger.Warn("presence: instance beat", "error", err.Error())
			failing = true
		case err == nil && failing:
			logger.Info("presence: instance beat recovered")
			failing = false
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = p.client.ZRem(rctx, p.instancesKey(), p.instance).Err()
			return
		case <-tick.C:
		}
	}
}

// Beat records that this instance is alive and reads which instances are dead: one round
// trip. On error the dead set read last is kept.
func (p *RedisPresence) Beat(ctx context.Context) error {
	now := p.now().UnixMilli()
	key := p.instancesKey()
	pipe := p.client.TxPipeline()
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(now), Member: p.instance})
	pipe.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(now-forgetInstanceAfter.Milliseconds(), 10))
	pipe.PExpire(ctx, key, forgetInstanceAfter)
	dead := pipe.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "-inf", Max: "(" + strconv.FormatInt(now-p.timeout.Milliseconds(), 10)})
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	ids := dead.Val()
	p.dead.Store(&ids)
	return nil
}

// deadArgs are the dead instances, as the scripts' trailing arguments.
func (p *RedisPresence) deadArgs() []any {
	d := p.dead.Load()
	if d == nil {
		return nil
	}
	out := make([]any, len(*d))
	for i, id := range *d {
		out[i] = id
	}
	return out
}

// deadInstance reports whether the open entry field belongs to a dead instance.
func (p *RedisPresence) deadInstance(field string) bool {
	d := p.dead.Load()
	if d == nil || len(*d) == 0 {
		return false
	}
	inst, _, ok := strings.Cut(field, ".")
	return ok && slices.Contains(*d, inst)
}

// luaHelpers are shared by the scripts. deadset reads the dead instances from ARGV[from] on.
// scan prunes the expired entries of the hash key and counts those left other than the field
// skip and the open entries of dead instances: the open ones and all of them. keep lets the
// hash live at least ms more, never shorter: a socket leaving with a short grace, or refreshed
// with a short ttl, must not cut the life of its siblings' entries (setting the key's TTL
// outright once expired a user's live sockets along with a closed one).
const luaHelpers = `
local function deadset(from)
  local d = {}
  for i = from, #ARGV do d[ARGV[i]] = true end
  return d
end
local function scan(key, now, skip, dead)
  local entries = redis.call('HGETALL', key)
  local open, all = 0, 0
  for i = 1, #entries, 2 do
    local f = entries[i]
    if tonumber(entries[i+1]) <= now then
      redis.call('HDEL', key, f)
    elseif f ~= skip and string.sub(f, 1, 2) ~= 't:' then
      if string.sub(f, 1, 2) == 'g:' then
        all = all + 1
      elseif not dead[string.match(f, '^([^.]*)%.') or ''] then
        all = all + 1
        open = open + 1
      end
    end
  end
  return open, all
end
local function keep(key, ms)
  if ms > 0 and redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
`

// admitScript: KEYS[1] the user's hash; ARGV conn, now (unix ms), expiry (unix ms), ttl (ms),
// max, the ticket's field (” for none), the ticket's claim expiry (unix ms), dead
// instances…. Returns {admitted, first}, or {-1, 0} for a ticket used before.
var admitScript = redis.NewScript(luaHelpers + `
local now = tonumber(ARGV[2])
local open, all = scan(KEYS[1], now, ARGV[1], deadset(8))
if ARGV[6] ~= '' then
  if redis.call('HEXISTS', KEYS[1], ARGV[6]) == 1 then return {-1, 0} end
  redis.call('HSET', KEYS[1], ARGV[6], ARGV[7])
  keep(KEYS[1], tonumber(ARGV[7]) - now)
end
if open >= tonumber(ARGV[5]) then return {0, 0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
keep(KEYS[1], tonumber(ARGV[4]))
if all == 0 then return {1, 1} end
return {1, 0}
`)

// refreshScript: KEYS[1] the user's hash; ARGV conn, now (unix ms), expiry (unix ms), ttl
// (ms). A socket already disconnected (its grace entry live, its open entry gone) is left
// alone, so a heartbeat racing the close cannot reopen it.
var refreshScript = redis.NewScript(luaHelpers + `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  local g = redis.call('HGET', KEYS[1], 'g:' .. ARGV[1])
  if g and tonumber(g) > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
keep(KEYS[1], tonumber(ARGV[4]))
return 1
`)

// disconnectScript: KEYS[1] the user's hash; ARGV conn, now (unix ms), grace expiry (unix
// ms), grace (ms), dead instances…. Returns 1 if the user has no other open socket.
var disconnectScript = redis.NewScript(luaHelpers + `
redis.call('HDEL', KEYS[1], ARGV[1])
local open = scan(KEYS[1], tonumber(ARGV[2]), '', deadset(5))
local grace = tonumber(ARGV[4])
if grace > 0 then
  redis.call('HSET', KEYS[1], 'g:' .. ARGV[1], ARGV[3])
  keep(KEYS[1], grace)
end
if open == 0 then return 1 end
return 0
`)

// Admit implements Presence.
func (p *RedisPresence) Admit(ctx context.Context, user uuid.UUID, conn string, ttl time.Duration, max int, ticket TicketClaim) (bool, bool, error) {
	now := p.now()
	field, claimUntil := "", int64(0)
	if ticket != (TicketClaim{}) {
		field, claimUntil = ticket.field(), ticket.Expires.UnixMilli()
	}
	args := append([]any{conn, now.UnixMilli(), now.Add(ttl).UnixMilli(), ttl.Milliseconds(), max, field, claimUntil}, p.deadArgs()...)
	res, err := admitScript.Run(ctx, p.client, []string{p.key(user)}, args...).Int64Slice()
	if err != nil {
		return false, false, err
	}
	if res[0] == -1 {
		return false, false, ErrTicketUsed
	}
	return res[0] == 1, res[1] == 1, nil
}

// Refresh implements Presence.
func (p *RedisPresence) Refresh(ctx context.Context, ttl time.Duration, socks ...Socket) error {
	if len(socks) == 0 {
		return nil
	}
	now := p.now()
	args := func(s Socket) []any {
		return []any{s.Conn, now.UnixMilli(), now.Add(ttl).UnixMilli(), ttl.Milliseconds()}
	}
	pipe := p.client.Pipeline()
	cmds := make([]*redis.Cmd, len(socks))
	for i, s := range socks {
		cmds[i] = refreshScript.EvalSha(ctx, pipe, []string{p.key(s.User)}, args(s)...)
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	// A pipeline cannot fall back to EVAL per command as Script.Run does: resend, with the
	// script's source, only the commands that found it missing (a flushed or new server).
	retry := p.client.Pipeline()
	for i, s := range socks {
		if e := cmds[i].Err(); e != nil {
			if !redis.HasErrorPrefix(e, "NOSCRIPT") {
				return e
			}
			refreshScript.Eval(ctx, retry, []string{p.key(s.User)}, args(s)...)
		}
	}
	if retry.Len() == 0 {
		return err
	}
	_, err = retry.Exec(ctx)
	return err
}

// Disconnect implements Presence.
func (p *RedisPresence) Disconnect(ctx context.Context, user uuid.UUID, conn string, grace time.Duration) (bool, error) {
	now := p.now()
	args := append([]any{conn, now.UnixMilli(), now.Add(grace).UnixMilli(), grace.Milliseconds()}, p.deadArgs()...)
	last, err := disconnectScript.Run(ctx, p.client, []string{p.key(user)}, args...).Int64()
	return last == 1, err
}

// Online implements Presence.
func (p *RedisPresence) Online(ctx context.Context, users []uuid.UUID) (map[uuid.UUID]bool, error) {
	out := make(map[uuid.UUID]bool, len(users))
	if len(users) == 0 {
		return out, nil
	}
	now := p.now().UnixMilli()
	pipe := p.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGetAll(ctx, p.key(u))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	for i, u := range users {
		out[u] = false
		for field, exp := range cmds[i].Val() {
			if ms, _ := strconv.ParseInt(exp, 10, 64); ms > now && !strings.HasPrefix(field, ticketTag) && (strings.HasPrefix(field, graceTag) || !p.deadInstance(field)) {
				out[u] = true
				break
			}
		}
	}
	return out, nil
}
