package realtime_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/realtime"
)

// presenceKit builds n Presence values sharing one store, as n instances would: for Redis,
// n trackers on n clients of one Redis under one key prefix (a fresh one per test); for
// memory, one tracker n times (it serves a single instance).
type presenceKit struct {
	name      string
	instances func(t *testing.T, n int) []realtime.Presence
}

var presenceKits = []presenceKit{
	{"memory", func(_ *testing.T, n int) []realtime.Presence {
		p := realtime.NewMemoryPresence()
		out := make([]realtime.Presence, n)
		for i := range out {
			out[i] = p
		}
		return out
	}},
	{"redis", func(t *testing.T, n int) []realtime.Presence {
		prefix := "parlortest:" + uuid.NewString() + ":"
		out := make([]realtime.Presence, n)
		for i := range out {
			out[i] = realtime.NewRedisPresence(presenceRedis(t, nil), prefix, realtime.DefaultInstanceTimeout)
		}
		return out
	}},
}

// presenceRedis returns a client of the test Redis, with hook (if any) installed.
func presenceRedis(t *testing.T, hook redis.Hook) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(parlortest.RedisURL())
	require.NoError(t, err)
	client := redis.NewClient(opts)
	if hook != nil {
		client.AddHook(hook)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// eachPresence runs test against every implementation.
func eachPresence(t *testing.T, test func(t *testing.T, kit presenceKit)) {
	t.Parallel()
	for _, kit := range presenceKits {
		t.Run(kit.name, func(t *testing.T) {
			t.Parallel()
			test(t, kit)
		})
	}
}

func admit(t *testing.T, p realtime.Presence, user uuid.UUID, conn string, ttl time.Duration, max int) (admitted, first bool) {
	t.Helper()
	admitted, first, err := p.Admit(context.Background(), user, conn, ttl, max, realtime.TicketClaim{})
	require.NoError(t, err)
	return admitted, first
}

func online(t *testing.T, p realtime.Presence, user uuid.UUID) bool {
	t.Helper()
	got, err := p.Online(context.Background(), []uuid.UUID{user})
	require.NoError(t, err)
	return got[user]
}

// offline is a condition for require.Eventually (which polls on another goroutine, where
// require must not be called).
func offline(p realtime.Presence, user uuid.UUID) func() bool {
	return func() bool {
		got, err := p.Online(context.Background(), []uuid.UUID{user})
		return err == nil && !got[user]
	}
}

func disconnect(t *testing.T, p realtime.Presence, user uuid.UUID, conn string, grace time.Duration) (last bool) {
	t.Helper()
	last, err := p.Disconnect(context.Background(), user, conn, grace)
	require.NoError(t, err)
	return last
}

// TestPresenceCapIsClusterWide: a user's sockets on two instances count against one cap; a
// refused socket records nothing; the cap is per user.
func TestPresenceCapIsClusterWide(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		a, b := ps[0], ps[1]
		ann, bob := uuid.New(), uuid.New()
		const ttl, max = 10 * time.Second, 3

		for _, s := range []struct {
			p    realtime.Presence
			conn string
		}{{a, "a1"}, {b, "b1"}, {a, "a2"}} {
			ok, _ := admit(t, s.p, ann, s.conn, ttl, max)
			require.True(t, ok, "socket %s is within the cap", s.conn)
		}
		ok, first := admit(t, b, ann, "b2", ttl, max)
		require.False(t, ok, "the fourth socket is refused on the instance holding one of them")
		require.False(t, first)
		ok, _ = admit(t, a, ann, "a3", ttl, max)
		require.False(t, ok, "and on the one holding two")
		ok, first = admit(t, b, bob, "b1", ttl, max)
		require.True(t, ok, "the cap is per user")
		require.True(t, first)

		// The refused b2 and a3 recorded nothing: freeing one slot makes room for exactly one.
		require.False(t, disconnect(t, a, ann, "a1", ttl))
		ok, _ = admit(t, b, ann, "b3", ttl, max)
		require.True(t, ok, "a closed socket's slot is free")
		ok, _ = admit(t, a, ann, "a4", ttl, max)
		require.False(t, ok, "only one slot was freed")

		carol := uuid.New()
		ok, first = admit(t, a, carol, "a1", ttl, 0)
		require.False(t, ok)
		require.False(t, first)
		require.False(t, online(t, b, carol), "a refused socket does not bring its user online")
	})
}

// TestPresenceATicketOpensOneSocket: the same ticket presented by 20 handshakes at once,
// spread over two instances, admits one socket; the others get ErrTicketUsed and record
// nothing. A spent ticket neither counts against the cap nor makes its user online, and a
// ticket refused for the cap is spent all the same.
func TestPresenceATicketOpensOneSocket(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		ann := uuid.New()
		ticket := realtime.TicketClaim{Nonce: uuid.NewString(), Expires: time.Now().Add(time.Minute)}
		const n = 20
		var admitted, used atomic.Int64
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				ok, _, err := ps[i%2].Admit(context.Background(), ann, fmt.Sprintf("c%d", i), 10*time.Second, 8, ticket)
				switch {
				case errors.Is(err, realtime.ErrTicketUsed):
					require.False(t, ok)
					used.Add(1)
				case err != nil:
					errs <- err
				case ok:
					admitted.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.EqualValues(t, 1, admitted.Load(), "one socket per ticket")
		require.EqualValues(t, n-1, used.Load())

		// The spent ticket takes no place under the cap: ann's one socket plus one more
		// fill a cap of 2.
		ok, _ := admit(t, ps[1], ann, "second", 10*time.Second, 2)
		require.True(t, ok, "a spent ticket does not count against the cap")
		full := realtime.TicketClaim{Nonce: uuid.NewString(), Expires: time.Now().Add(time.Minute)}
		ok, _, err := ps[0].Admit(context.Background(), ann, "third", 10*time.Second, 2, full)
		require.NoError(t, err)
		require.False(t, ok, "over the cap")
		_, _, err = ps[1].Admit(context.Background(), ann, "fourth", 10*time.Second, 3, full)
		require.ErrorIs(t, err, realtime.ErrTicketUsed, "a ticket refused for the cap is spent")

		// A user whose only entry is a spent ticket is not online.
		bob := uuid.New()
		_, _, err = ps[0].Admit(context.Background(), bob, "b1", 10*time.Second, 0, realtime.TicketClaim{Nonce: "n", Expires: time.Now().Add(time.Minute)})
		require.NoError(t, err)
		require.False(t, online(t, ps[1], bob), "a spent ticket is not a socket")
	})
}

// TestPresenceConcurrentAdmitsStopAtTheCap: 50 handshakes at once, spread over two
// instances, admit exactly max sockets, exactly one of them first.
func TestPresenceConcurrentAdmitsStopAtTheCap(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		ann := uuid.New()
		const n, max = 50, 8
		var admitted, firsts atomic.Int64
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				ok, first, err := ps[i%2].Admit(context.Background(), ann, fmt.Sprintf("c%d", i), 10*time.Second, max, realtime.TicketClaim{})
				if err != nil {
					errs <- err
					return
				}
				if ok {
					admitted.Add(1)
				}
				if first {
					firsts.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.EqualValues(t, max, admitted.Load(), "exactly max sockets admitted")
		require.EqualValues(t, 1, firsts.Load(), "exactly one socket brought ann online")
		ok, _ := admit(t, ps[0], ann, "late", 10*time.Second, max)
		require.False(t, ok, "the cap is full")
		ok, _ = admit(t, ps[1], ann, "late", 10*time.Second, max+1)
		require.True(t, ok, "exactly max are open: one more fits under max+1")
	})
}

// TestPresenceDisconnectFreesSlotKeepsOnline: a closed socket's slot is free at once, while
// its user stays online for the grace period, and then goes offline.
func TestPresenceDisconnectFreesSlotKeepsOnline(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		a, b := ps[0], ps[1]
		ann := uuid.New()
		const ttl, grace = 10 * time.Second, 400 * time.Millisecond

		ok, first := admit(t, a, ann, "a1", ttl, 1)
		require.True(t, ok)
		require.True(t, first)
		ok, _ = admit(t, b, ann, "b1", ttl, 1)
		require.False(t, ok, "cap of one reached")

		closed := time.Now()
		require.True(t, disconnect(t, a, ann, "a1", grace), "a1 was ann's only socket")
		require.True(t, online(t, b, ann), "online during the grace period")
		ok, first = admit(t, b, ann, "b1", ttl, 1)
		require.True(t, ok, "the closed socket's slot is free at once")
		require.False(t, first, "ann never went offline: a1 was in its grace period")
		require.Less(t, time.Since(closed), grace, "the checks ran within the grace period")

		// With two sockets closed, the one in grace does not count as open: closing the
		// other is the last, so its caller checks for offline after the grace.
		require.True(t, disconnect(t, b, ann, "b1", grace), "a1 in grace is not an open socket")
		require.True(t, online(t, a, ann))
		require.Eventually(t, offline(a, ann), 5*time.Second, 20*time.Millisecond,
			"offline once the last grace ends")
		require.GreaterOrEqual(t, time.Since(closed), grace, "not offline before the grace ended")
		ok, first = admit(t, b, ann, "b2", ttl, 1)
		require.True(t, ok)
		require.True(t, first, "back online after being offline")

		ok, _ = admit(t, a, ann, "a2", ttl, 2)
		require.True(t, ok)
		require.False(t, disconnect(t, a, ann, "a2", grace), "b2 is still open")
	})
}

// TestPresenceExpiredEntryFreesSlot: a socket whose instance stops refreshing it (a crash)
// stops counting, for the cap and for presence, once its ttl passes.
func TestPresenceExpiredEntryFreesSlot(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		crashed, alive := ps[0], ps[1]
		ann := uuid.New()
		const ttl = 300 * time.Millisecond

		ok, _ := admit(t, crashed, ann, "a1", ttl, 1)
		require.True(t, ok)
		ok, _ = admit(t, alive, ann, "b1", 10*time.Second, 1)
		require.False(t, ok, "a1 counts until its ttl passes")
		require.True(t, online(t, alive, ann))

		require.Eventually(t, offline(alive, ann), 5*time.Second, 20*time.Millisecond,
			"offline once a1's entry expires")
		ok, first := admit(t, alive, ann, "b1", 10*time.Second, 1)
		require.True(t, ok, "the expired socket's slot is free")
		require.True(t, first, "ann had no socket left")
	})
}

// TestPresenceRefreshKeepsManySockets: a heartbeat refreshing a batch of sockets keeps every
// one of them counting well past their ttl, while a socket left out of it expires.
func TestPresenceRefreshKeepsManySockets(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		ctx := context.Background()
		const ttl, perUser = 300 * time.Millisecond, 10
		users := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
		var batch []realtime.Socket
		for _, u := range users {
			for i := range perUser {
				s := realtime.Socket{User: u, Conn: fmt.Sprintf("c%d", i)}
				ok, _ := admit(t, ps[0], s.User, s.Conn, ttl, perUser+1)
				require.True(t, ok)
				batch = append(batch, s)
			}
		}
		ok, _ := admit(t, ps[0], users[0], "stale", ttl, perUser+1)
		require.True(t, ok)

		require.NoError(t, ps[0].Refresh(ctx, ttl), "refreshing nothing is a no-op")
		for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(ttl / 4) {
			require.NoError(t, ps[0].Refresh(ctx, ttl, batch...))
		}
		require.NoError(t, ps[0].Refresh(ctx, 10*time.Second, batch...))

		got, err := ps[1].Online(ctx, users)
		require.NoError(t, err)
		for _, u := range users {
			require.True(t, got[u], "user %s kept online", u)
		}
		for _, u := range users[1:] {
			ok, _ := admit(t, ps[1], u, "more", ttl, perUser)
			require.False(t, ok, "all %d refreshed sockets of %s still count", perUser, u)
		}
		ok, _ = admit(t, ps[1], users[0], "more", ttl, perUser+1)
		require.True(t, ok, "the socket left out of the heartbeat expired")
		ok, _ = admit(t, ps[1], users[0], "more2", ttl, perUser+1)
		require.False(t, ok, "its %d refreshed siblings all count", perUser)
	})
}

// TestPresenceRefreshDoesNotReopenClosedSocket: a heartbeat batch taken before a socket
// closed, and applied after, must not put the socket back under the cap.
func TestPresenceRefreshDoesNotReopenClosedSocket(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		p := kit.instances(t, 1)[0]
		ann := uuid.New()
		const ttl = 10 * time.Second
		ok, _ := admit(t, p, ann, "a1", ttl, 1)
		require.True(t, ok)
		require.True(t, disconnect(t, p, ann, "a1", ttl))
		require.NoError(t, p.Refresh(context.Background(), ttl, realtime.Socket{User: ann, Conn: "a1"}))
		ok, _ = admit(t, p, ann, "a2", ttl, 1)
		require.True(t, ok, "the late refresh did not take a1's slot back")
	})
}

// TestPresenceFirstOnlyForFirstSocket: only the socket that brings a user online reports
// first, whichever instance the others land on.
func TestPresenceFirstOnlyForFirstSocket(t *testing.T) {
	eachPresence(t, func(t *testing.T, kit presenceKit) {
		ps := kit.instances(t, 2)
		ann, bob := uuid.New(), uuid.New()
		const ttl = 10 * time.Second
		_, first := admit(t, ps[0], ann, "a1", ttl, 8)
		require.True(t, first, "ann's first socket")
		for i, conn := range []string{"a2", "b1", "b2"} {
			ok, first := admit(t, ps[i%2], ann, conn, ttl, 8)
			require.True(t, ok)
			require.False(t, first, "ann already had a socket when %s opened", conn)
		}
		ok, first := admit(t, ps[1], bob, "b3", ttl, 8)
		require.True(t, ok)
		require.True(t, first, "bob's first socket, though ann has several")
	})
}

// TestRedisPresenceKeepsSiblingSocketsOnline: a user with two sockets, one of which closes
// with a short grace period, stays online through the other — on every instance, since the
// state is in Redis — and goes offline only once the last socket is gone and its grace ends.
func TestRedisPresenceKeepsSiblingSocketsOnline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := realtime.NewRedisPresence(presenceRedis(t, nil), "parlortest:"+uuid.NewString()+":", realtime.DefaultInstanceTimeout)
	ann := uuid.New()
	const grace = 100 * time.Millisecond

	ok, first, err := p.Admit(ctx, ann, "a", 10*time.Second, 8, realtime.TicketClaim{})
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, first, "the first socket brings ann online")
	ok, first, err = p.Admit(ctx, ann, "b", 10*time.Second, 8, realtime.TicketClaim{})
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, first)

	last, err := p.Disconnect(ctx, ann, "a", grace)
	require.NoError(t, err)
	require.False(t, last, "socket b is still open")
	// A refresh with a short ttl (of a socket, or of a batch) must not cut b's life either.
	ok, _, err = p.Admit(ctx, ann, "c", grace, 8, realtime.TicketClaim{})
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, p.Refresh(ctx, grace, realtime.Socket{User: ann, Conn: "c"}))
	time.Sleep(3 * grace) // past a's grace and c's ttl: only b keeps ann online now
	online, err := p.Online(ctx, []uuid.UUID{ann})
	require.NoError(t, err)
	require.True(t, online[ann], "ann's open socket keeps her online after a sibling's grace ended")
	ok, _, err = p.Admit(ctx, ann, "d", 10*time.Second, 2, realtime.TicketClaim{})
	require.NoError(t, err)
	require.True(t, ok, "a and c no longer count; b does")
	ok, _, err = p.Admit(ctx, ann, "e", 10*time.Second, 2, realtime.TicketClaim{})
	require.NoError(t, err)
	require.False(t, ok, "b and d count")

	for _, conn := range []string{"d", "b"} {
		last, err = p.Disconnect(ctx, ann, conn, grace)
		require.NoError(t, err)
	}
	require.True(t, last)
	online, err = p.Online(ctx, []uuid.UUID{ann})
	require.NoError(t, err)
	require.True(t, online[ann], "online during the grace period")
	require.Eventually(t, func() bool {
		online, err := p.Online(ctx, []uuid.UUID{ann})
		return err == nil && !online[ann]
	}, 5*time.Second, 20*time.Millisecond, "offline once the last grace ends")
}

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ single, pipelines atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.single.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

// TestRedisPresenceRefreshIsOneRoundTrip: the heartbeat's batch refresh of many sockets, of
// many users, is one pipeline.
func TestRedisPresenceRefreshIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hook := &roundTrips{}
	p := realtime.NewRedisPresence(presenceRedis(t, hook), "parlortest:"+uuid.NewString()+":", realtime.DefaultInstanceTimeout)
	var batch []realtime.Socket
	for i := range 40 {
		batch = append(batch, realtime.Socket{User: uuid.New(), Conn: fmt.Sprintf("c%d", i)})
	}
	require.NoError(t, p.Refresh(ctx, 10*time.Second, batch[:1]...)) // warm: the script is loaded
	hook.single.Store(0)
	hook.pipelines.Store(0)

	require.NoError(t, p.Refresh(ctx, 10*time.Second, batch...))
	require.EqualValues(t, 1, hook.pipelines.Load(), "one pipeline")
	require.EqualValues(t, 0, hook.single.Load(), "and nothing else")

	users := make([]uuid.UUID, len(batch))
	for i, s := range batch {
		users[i] = s.User
	}
	got, err := p.Online(ctx, users)
	require.NoError(t, err)
	for _, u := range users {
		require.True(t, got[u], "every socket of the batch was recorded")
	}
}

// TestRedisPresenceForgetsTheSocketsOfADeadInstance: instance a holds ann's two sockets (her
// cap) and stops beating, as a SIGKILLed process does. Once a's timeout has passed, instance
// b no longer counts a's sockets, for the cap or for presence, and a close on b is ann's
// last; if a beats again (a long pause, not a death), its sockets count again.
func TestRedisPresenceForgetsTheSocketsOfADeadInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	prefix := "parlortest:" + uuid.NewString() + ":"
	a := realtime.NewRedisPresence(presenceRedis(t, nil), prefix, timeout)
	b := realtime.NewRedisPresence(presenceRedis(t, nil), prefix, timeout)
	require.NoError(t, a.Beat(ctx))
	require.NoError(t, b.Beat(ctx))
	ann := uuid.New()
	admit := func(p *realtime.RedisPresence) (conn string, ok, first bool) {
		t.Helper()
		conn = p.NewConnID()
		ok, first, err := p.Admit(ctx, ann, conn, time.Minute, 2, realtime.TicketClaim{})
		require.NoError(t, err)
		return conn, ok, first
	}
	for range 2 {
		_, ok, _ := admit(a)
		require.True(t, ok)
	}
	_, ok, _ := admit(b)
	require.False(t, ok, "a's sockets fill ann's cap")

	// a falls silent; b keeps beating.
	require.Eventually(t, func() bool {
		require.NoError(t, b.Beat(ctx))
		online, err := b.Online(ctx, []uuid.UUID{ann})
		require.NoError(t, err)
		return !online[ann]
	}, 20*timeout, timeout/10, "a dead instance's sockets do not keep ann online")
	conn, ok, first := admit(b)
	require.True(t, ok, "a dead instance's sockets do not count against the cap")
	require.True(t, first, "ann comes online again")
	last, err := b.Disconnect(ctx, ann, conn, 0)
	require.NoError(t, err)
	require.True(t, last, "the close on b is ann's last open socket")

	// a was only paused: once it beats, its sockets count again.
	require.NoError(t, a.Beat(ctx))
	require.NoError(t, b.Beat(ctx))
	_, ok, _ = admit(b)
	require.False(t, ok, "a live instance's sockets count against the cap")
}
