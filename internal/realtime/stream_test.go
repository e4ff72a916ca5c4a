package realtime_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// inParallel runs fn(i) for i < n on eight workers.
func inParallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// freshToken is the token of a fresh GET /v1/sync.
func freshToken(t *testing.T, u *parlortest.User) string {
	t.Helper()
	res, err := u.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	return res.JSON200.NextToken
}

// syncAll follows next_token from since until has_more is false, checking each token's size.
func syncAll(t *testing.T, u *parlortest.User, since string) ([]apiclient.RoomEvent, string) {
	t.Helper()
	var out []apiclient.RoomEvent
	limit := 500
	for {
		res, err := u.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &since, Limit: &limit})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		out = append(out, res.JSON200.Events...)
		since = res.JSON200.NextToken
		require.LessOrEqual(t, len(since), events.MaxTokenBytes, "a sync token over 1 KiB")
		if !res.JSON200.HasMore {
			return out, since
		}
	}
}

func seqsByRoom(evs []apiclient.RoomEvent) map[uuid.UUID][]int64 {
	out := map[uuid.UUID][]int64{}
	for _, e := range evs {
		out[e.RoomId] = append(out[e.RoomId], e.Seq)
	}
	return out
}

// A user in 1,000 rooms (the most an account may be in) with news in every one of them:
// every token the socket and sync hand out stays under 1 KiB, and resuming from one in the
// middle, on the socket or through sync, gives exactly the rest. (Socket tokens once gained
// an entry per room: 150 rooms made a token of 8 KiB that both paths refused.)
func TestTokensStaySmallWhateverTheRoomsAndTheBacklog(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	start := freshToken(t, ann)
	ws := s.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)

	const n = 1000
	rooms := make([]uuid.UUID, n)
	inParallel(n, func(i int) { rooms[i] = createRoom(t, ann, fmt.Sprintf("room %d", i)) })
	inParallel(n, func(i int) { send(t, ann.Client, rooms[i], "news") })

	live := ws.Events(2*n, 90*time.Second) // each room's member.joined, then its message
	for _, f := range live {
		require.LessOrEqual(t, len(f.Token), events.MaxTokenBytes, "an event frame's token over 1 KiB")
	}
	want := requireInOrder(t, live)
	require.Len(t, want, n)

	// Everything, through sync, from before the rooms existed.
	all, _ := syncAll(t, ann, start)
	require.Equal(t, want, seqsByRoom(all))

	// From the middle of the live stream: exactly the second half, on a socket…
	mid := live[n-1].Token
	rest := map[uuid.UUID][]int64{}
	for _, f := range live[n:] {
		rest[f.Event.RoomId] = append(rest[f.Event.RoomId], f.Event.Seq)
	}
	again := s.Connect(t, ann, mid)
	again.Next("hello", 5*time.Second)
	replayed := again.Events(n, 60*time.Second)
	for _, f := range replayed {
		require.LessOrEqual(t, len(f.Token), events.MaxTokenBytes, "a replayed frame's token over 1 KiB")
	}
	require.Equal(t, rest, requireInOrder(t, replayed))
	select {
	case f := <-again.Frames:
		require.NotEqual(t, "event", f.Type, "an extra event: %s", f.Raw)
	case <-time.After(500 * time.Millisecond):
	}
	// … and through sync.
	fromMid, _ := syncAll(t, ann, mid)
	require.Equal(t, rest, seqsByRoom(fromMid))
}

// A room joined while the socket is still replaying its backlog is followed live from its
// join on. (It once got the join event and then nothing of that room until a reconnect.)
func TestARoomJoinedDuringTheReplayIsFollowedLive(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	busy := createRoom(t, bob, "busy")
	join(t, ann, busy)
	later := createRoom(t, bob, "joined during the replay")
	since := freshToken(t, ann)
	const backlog = 2500
	inParallel(backlog, func(i int) { send(t, bob.Client, busy, fmt.Sprintf("backlog %d", i)) })

	// A client that stops reading after the first frame: the replay stalls on the full
	// buffers (64 KiB each way, far less than the backlog) until it reads again. It joins
	// the other room meanwhile, so the join is part of what the socket catches up on.
	sent := time.Now()
	ws := s.ConnectWith(t, gwReadBufferDialer(64<<10), ann, since)
	ws.Next("hello", 5*time.Second)
	ws.Events(1, 10*time.Second)
	ws.Pause()
	join(t, ann, later)
	ws.Resume()

	// The whole backlog and the join arrive…
	got, joined := 1, false
	for got < backlog+1 {
		f := ws.Events(1, 30*time.Second)[0]
		got++
		if f.Event.RoomId == later && f.Event.Type == apiclient.MemberJoined && *f.Event.UserId == ann.ID {
			joined = true
		}
	}
	require.True(t, joined, "the join")
	// … and then what is said in the joined room arrives live, with nothing to drag it along.
	m := send(t, bob.Client, later, "after the join")
	f := ws.Events(1, 5*time.Second)[0]
	require.Equal(t, m.Id, f.Event.Message.Id, "the room joined during the replay is followed live")
	t.Logf("replayed and followed in %s", time.Since(sent).Round(time.Millisecond))
}
