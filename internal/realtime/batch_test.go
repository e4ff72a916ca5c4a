package realtime_test

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// eventsRead reads frames until n events arrived, in `event` or `events` frames. It returns
// the event-carrying frames as read, and one frame per event (an `events` frame's events
// each with its token) in the order they arrived.
func (c *gwSock) eventsRead(n int, timeout time.Duration) (read, flat []parlortest.Frame) {
	c.t.Helper()
	c.until(fmt.Sprintf("%d events", n), timeout, func(f parlortest.Frame) bool {
		switch f.Type {
		case "event":
			read, flat = append(read, f), append(flat, f)
		case "events":
			read = append(read, f)
			for i := range f.Events {
				flat = append(flat, parlortest.Frame{Type: "event", Token: f.Token, Event: &f.Events[i]})
			}
		}
		return len(flat) >= n
	})
	require.Len(c.t, flat, n, "more events than expected")
	return read, flat
}

func framesOfType(frames []parlortest.Frame, typ string) (n int) {
	for _, f := range frames {
		if f.Type == typ {
			n++
		}
	}
	return n
}

// A socket opened with batch=true receives what is ready together as one `events` frame
// (of at most 16 KiB), exactly the events `event` frames would have carried, and resumes
// exactly from an `events` frame's token; a socket without it never sees one.
func TestABatchedSocketTakesBurstsAsOneFrameAndResumesExactly(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	rooms := []uuid.UUID{createRoom(t, ann, "r1"), createRoom(t, ann, "r2")}
	for _, r := range rooms {
		join(t, bob, r)
	}
	since := freshToken(t, ann)
	base := lastSeqs(t, s, rooms)
	const away = 300
	for i := 0; i < away; i++ {
		send(t, bob.Client, rooms[i%2], fmt.Sprintf("while ann is away %d", i))
	}
	want := committed(t, s, base)

	// The replay: a few frames of up to 16 KiB rather than one per event.
	batched := gwConnectBatched(t, s, ann, since)
	batched.hello()
	read, flat := batched.eventsRead(away, 10*time.Second)
	require.Equal(t, want, requireInOrder(t, flat), "the batched replay differs from the log")
	require.Less(t, len(read), away/10, "the replay of %d events came in %d frames", away, len(read))
	for _, f := range read {
		require.LessOrEqual(t, len(f.Raw), 16<<10, "a frame over 16 KiB")
	}

	// The same replay without batch=true: one `event` frame per event, never `events`.
	plain := gwConnect(t, s, ann, since)
	plain.hello()
	plainRead, plainFlat := plain.eventsRead(away, 10*time.Second)
	require.Equal(t, want, requireInOrder(t, plainFlat))
	require.Equal(t, away, framesOfType(plainRead, "event"))

	// Resuming from the token of an `events` frame in the middle of the replay brings
	// exactly the events after its last one.
	var mid, upto int
	for i, f := range read {
		upto += max(1, len(f.Events))
		if f.Type == "events" && upto < away {
			mid = i
			break
		}
	}
	require.Equal(t, "events", read[mid].Type, "no events frame before the end of the replay")
	resumed := gwConnectBatched(t, s, ann, read[mid].Token)
	resumed.hello()
	_, rest := resumed.eventsRead(away-upto, 10*time.Second)
	for i, f := range rest {
		require.Equal(t, flat[upto+i].Event.RoomId, f.Event.RoomId)
		require.Equal(t, flat[upto+i].Event.Seq, f.Event.Seq, "event %d after the resume", i)
	}
	resumed.quiet(300*time.Millisecond, "an event past the replay", func(f parlortest.Frame) bool {
		return f.Type == "event" || f.Type == "events"
	})

	// Live: a burst from several senders arrives whole, once, in per-room order, and the
	// last frame's token is caught up for GET /v1/sync.
	live := lastSeqs(t, s, rooms)
	const burst = 60
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < burst; i += 6 {
				res, err := bob.Client.SendMessageWithResponse(ctx, rooms[i%2], apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: fmt.Sprintf("burst %d", i)})
				if err != nil || res.StatusCode() != 201 {
					t.Errorf("send: %v %v", err, res)
				}
			}
		}()
	}
	wg.Wait()
	liveRead, liveFlat := batched.eventsRead(burst, 10*time.Second)
	require.Equal(t, committed(t, s, live), requireInOrder(t, liveFlat))
	last := liveRead[len(liveRead)-1].Token
	res, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &last})
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Empty(t, res.JSON200.Events, "the last batched frame's token is not caught up")
}

// batch takes a boolean: anything else is refused before the upgrade with a problem that
// names it, and the ticket is not spent.
func TestBatchMustBeABoolean(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	ticket := s.Ticket(t, ann)
	conn, res, err := s.Dial(url.Values{"ticket": {ticket}, "batch": {"yes please"}}, nil)
	p := gwRequireRefused(t, conn, res, err, 400, "invalid_request")
	require.Equal(t, []string{"query.batch"}, parlortest.ProblemFields(p))
	conn, res, err = s.Dial(url.Values{"ticket": {ticket}, "batch": {"false"}}, nil)
	gwRequireUpgraded(t, conn, res, err)
}
