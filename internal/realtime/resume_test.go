package realtime_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// committed returns every event of rooms after base (per room), from the raw log.
func committed(t *testing.T, s *parlortest.Server, base map[uuid.UUID]int64) map[uuid.UUID][]int64 {
	t.Helper()
	out := map[uuid.UUID][]int64{}
	for r, b := range base {
		rows, err := s.Pool.Query(ctx, "SELECT seq FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq", r, b)
		require.NoError(t, err)
		for rows.Next() {
			var seq int64
			require.NoError(t, rows.Scan(&seq))
			out[r] = append(out[r], seq)
		}
		require.NoError(t, rows.Err())
	}
	return out
}

func lastSeqs(t *testing.T, s *parlortest.Server, rooms []uuid.UUID) map[uuid.UUID]int64 {
	t.Helper()
	out := map[uuid.UUID]int64{}
	for _, r := range rooms {
		var seq int64
		require.NoError(t, s.Pool.QueryRow(ctx, "SELECT last_seq FROM rooms WHERE id = $1", r).Scan(&seq))
		out[r] = seq
	}
	return out
}

func TestResumeReplaysExactlyWhatWasMissedThenGoesLive(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	rooms := []uuid.UUID{createRoom(t, ann, "r1"), createRoom(t, ann, "r2"), createRoom(t, ann, "r3")}
	for _, r := range rooms {
		join(t, bob, r)
	}

	ws := s.Connect(t, ann, "")
	hello := ws.Next("hello", 5*time.Second)
	base := lastSeqs(t, s, rooms)
	// A first live event, then disconnect: resume from the last token received.
	send(t, bob.Client, rooms[0], "before the disconnect")
	last := ws.Events(1, 5*time.Second)[0]
	require.NotEqual(t, hello.Token, last.Token)
	require.NoError(t, ws.Conn.Close())

	// 500 events across the rooms while ann is away.
	for i := 0; i < 500; i++ {
		send(t, bob.Client, rooms[i%3], fmt.Sprintf("away %d", i))
	}
	// Reconnect while more keep coming during the replay.
	var live atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			res, err := bob.Client.SendMessageWithResponse(ctx, rooms[i%3], apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "during replay"})
			if err == nil && res.StatusCode() == 201 {
				live.Add(1)
			}
		}
	}()
	ws2 := s.Connect(t, ann, last.Token)
	hello2 := ws2.Next("hello", 5*time.Second)
	require.Equal(t, last.Token, hello2.Token)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	want := 500 + int(live.Load())
	got := ws2.Events(want, 20*time.Second)
	byRoom := requireInOrder(t, got)

	// Exactly the committed events after the first live one: nothing missed, nothing twice.
	expected := committed(t, s, base)
	expected[rooms[0]] = expected[rooms[0]][1:] // delivered before the disconnect
	require.Equal(t, expected, byRoom)
	select {
	case f := <-ws2.Frames:
		require.NotEqual(t, "event", f.Type, "an extra event: %s", f.Raw)
	case <-time.After(300 * time.Millisecond):
	}

	// Then live.
	m := send(t, bob.Client, rooms[2], "live again")
	f := ws2.Events(1, 5*time.Second)[0]
	require.Equal(t, m.Id, f.Event.Message.Id)

	// The last token also works with GET /v1/sync: nothing more is missing.
	res, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &f.Token})
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Empty(t, res.JSON200.Events)
}

// dropper is a broker that loses chosen event notices on the way in, like a lost pub/sub
// message.
type dropper struct {
	events.Broker
	drop func(n events.Notice) bool
}

func (d *dropper) Subscribe(ctx context.Context, fn func(events.Notice)) {
	d.Broker.Subscribe(ctx, func(n events.Notice) {
		if n.Kind == events.KindEvent && d.drop(n) {
			return
		}
		fn(n)
	})
}

// A lost notice costs at most a second, and needs no later event: the fan-out reads the log
// on its own every second. (Gap repair once ran only when a later event arrived, so a lost
// notice of a room's last message left it undelivered until the next one.)
func TestALostNoticeIsDeliveredWithoutALaterEvent(t *testing.T) {
	t.Parallel()
	var dropSeq atomic.Int64
	s := parlortest.Start(t, parlortest.Config(t), app.WithBroker(func(b events.Broker) events.Broker {
		return &dropper{Broker: b, drop: func(n events.Notice) bool { return n.Seq == dropSeq.Load() }}
	}))
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	room := createRoom(t, ann, "lossy")
	join(t, bob, room)
	ws := s.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)

	first := send(t, bob.Client, room, "one")
	dropSeq.Store(first.Seq + 1) // the next message's notice is lost, and nothing follows it
	send(t, bob.Client, room, "two (notice lost, the room's last)")
	got := ws.Events(2, 3*time.Second)
	requireInOrder(t, got)
	require.Equal(t, []string{"one", "two (notice lost, the room's last)"},
		[]string{*got[0].Event.Message.Body, *got[1].Event.Message.Body})
	// Exactly once.
	select {
	case f := <-ws.Frames:
		require.NotEqual(t, "event", f.Type, "an extra event: %s", f.Raw)
	case <-time.After(1500 * time.Millisecond):
	}
}

func TestARedisRestartLosesNothing(t *testing.T) {
	t.Parallel()
	rds := parlortest.StartRedis(t)
	cfg := parlortest.Config(t)
	cfg.RedisURL = rds.URL
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg)
	ann, bob := a.Register(t, "ann"), a.Register(t, "bob")
	room := createRoom(t, ann, "restart")
	join(t, bob, room)
	ws := a.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)
	bobOnB := b.NewClient(parlortest.Bearer(bob.AccessToken))
	send(t, bobOnB, room, "before")
	ws.Events(1, 5*time.Second)

	// Redis goes away: messages are still committed (PostgreSQL is the record) and their
	// notices are lost. They reach the open socket anyway, within the fan-out's own read
	// interval, with no later message to drag them along (once, they waited for one).
	rds.Kill()
	send(t, bobOnB, room, "while redis is down 1")
	send(t, bobOnB, room, "while redis is down 2")
	got := ws.Events(2, 5*time.Second)
	requireInOrder(t, got)
	require.Equal(t, "while redis is down 1", *got[0].Event.Message.Body)
	require.Equal(t, "while redis is down 2", *got[1].Event.Message.Body)

	// Redis comes back on the same port; live delivery goes on, and nothing came twice.
	rds.Restart()
	require.Eventually(t, func() bool {
		res, err := b.Client.GetReadyWithResponse(ctx)
		return err == nil && res.StatusCode() == 200
	}, 10*time.Second, 50*time.Millisecond)
	send(t, bobOnB, room, "after")
	after := ws.Events(1, 5*time.Second)
	require.Equal(t, "after", *after[0].Event.Message.Body)
	require.Equal(t, got[1].Event.Seq+1, after[0].Event.Seq, "nothing between, nothing twice")
	select {
	case f := <-ws.Frames:
		require.NotEqual(t, "event", f.Type, "an extra event: %s", f.Raw)
	case <-time.After(1500 * time.Millisecond):
	}
}

func TestASlowConsumerIsClosedAndResumesComplete(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.WSQueueSize = 16
	s := parlortest.Start(t, cfg)
	ann, bob, carol := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carol")
	room := createRoom(t, ann, "firehose")
	join(t, bob, room)
	join(t, carol, room)
	base := lastSeqs(t, s, []uuid.UUID{room})

	slow := s.ConnectWith(t, parlortest.SmallBufferDialer(), ann, "")
	hello := slow.Next("hello", 5*time.Second)
	fast := s.Connect(t, carol, "")
	fast.Next("hello", 5*time.Second)
	slow.Pause()

	// Big messages fill the socket buffers, then the slow client's queue.
	big := fmt.Sprintf("%04000d", 0)
	const n = 300
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < n; i++ {
			if _, err := bob.Client.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: big}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Once the server has given up on it, the client reads again — soon enough to see why
	// (a client that never reads again is cut off without a close frame after the write
	// timeout).
	require.Eventually(t, func() bool {
		_, body := s.Scrape(t)
		return strings.Contains(string(body), `parlor_ws_closes_total{reason="slow_consumer"} 1`)
	}, 30*time.Second, 20*time.Millisecond)
	slow.Resume()
	<-sent
	// The fast client keeps receiving everything.
	require.Len(t, fast.Events(n, 30*time.Second), n)

	var received []parlortest.Frame
	timeout := time.After(20 * time.Second)
read:
	for {
		select {
		case f, ok := <-slow.Frames:
			if !ok {
				break read
			}
			if f.Type == "event" {
				received = append(received, f)
			}
		case <-timeout:
			t.Fatalf("the slow consumer was not closed (received %d of %d)", len(received), n)
		}
	}
	closeErr := <-slow.Closed
	require.NotNil(t, closeErr)
	require.Equal(t, 4008, closeErr.Code, "closed as a slow consumer")
	require.Less(t, len(received), n)

	// It resumes from its last token and ends complete.
	token := hello.Token
	if len(received) > 0 {
		token = received[len(received)-1].Token
	}
	again := s.Connect(t, ann, token)
	again.Next("hello", 5*time.Second)
	rest := again.Events(n-len(received), 20*time.Second)
	all := append(received, rest...)
	require.Equal(t, committed(t, s, base), requireInOrder(t, all))
}
