package realtime_test

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// loseSessionNotices is a broker that loses every notice of a revoked session on the way in,
// as a Redis outage would.
type loseSessionNotices struct{ events.Broker }

func (b loseSessionNotices) Subscribe(ctx context.Context, fn func(events.Notice)) {
	b.Broker.Subscribe(ctx, func(n events.Notice) {
		if n.Kind != events.KindSession {
			fn(n)
		}
	})
}

func logout(t *testing.T, c *apiclient.ClientWithResponses) {
	t.Helper()
	res, err := c.LogoutWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 204, res.StatusCode(), string(res.Body))
}

// A logout racing a socket's handshake never leaves that socket open: either the ticket is
// refused, or the socket, once upgraded, is closed with 4001. (A logout between the ticket's
// redemption and the socket's registration once left it open for good.)
func TestALogoutRacingTheHandshakeLeavesNoSocketOpen(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	var refused, closed atomic.Int64
	for i := range 12 {
		u := gwLogin(t, s, ann) // a session of its own
		ticket := s.Ticket(t, u)
		dialed := make(chan *gwSock, 1)
		go func() {
			conn, res, err := s.Dial(url.Values{"ticket": {ticket}}, nil)
			if err != nil {
				require.NotNil(t, res)
				require.Equal(t, 401, res.StatusCode)
				refused.Add(1)
				dialed <- nil
				return
			}
			dialed <- gwRead(t, conn)
		}()
		// Spread the logout over the handshake's stages.
		time.Sleep(time.Duration(i%4) * time.Millisecond)
		logout(t, u.Client)
		if ws := <-dialed; ws != nil {
			ce, _ := ws.waitClosed(5 * time.Second)
			require.NotNil(t, ce, "the socket of a logged-out session ended without a close frame")
			require.Equal(t, 4001, ce.Code)
			closed.Add(1)
		}
	}
	t.Logf("refused before the upgrade: %d, closed with 4001: %d", refused.Load(), closed.Load())
}

// A revocation reaches every instance's sockets within seconds even when the broker loses
// its notice: each instance also looks for revoked sessions in PostgreSQL.
func TestARevocationReachesEveryInstanceWithoutTheBroker(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg, app.WithBroker(func(br events.Broker) events.Broker { return loseSessionNotices{br} }))
	ann := a.Register(t, "ann")
	onB := gwConnect(t, b, ann, "")
	onB.hello()
	logout(t, ann.Client)
	onB.requireClosedWith(4001, 5*time.Second)
}

// stalledRoom is a busy room of bob's in which ann's sockets stopped reading after their
// kernel buffers filled, while carol's socket read along.
type stalledRoom struct {
	s          *parlortest.Server
	ann, bob   *parlortest.User
	room       uuid.UUID
	stuck      []*parlortest.WS
	fast       *parlortest.WS
	sentBefore int // messages sent to fill the buffers
}

// stallRoom builds a stalledRoom with n stuck sockets on a server with writeTimeout.
func stallRoom(t *testing.T, writeTimeout time.Duration, n int) stalledRoom {
	t.Helper()
	cfg := parlortest.Config(t)
	cfg.WSWriteTimeout = writeTimeout
	s := parlortest.Start(t, cfg)
	ann, bob, carol := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carol")
	room := createRoom(t, bob, "busy")
	join(t, ann, room)
	join(t, carol, room)
	r := stalledRoom{s: s, ann: ann, bob: bob, room: room, sentBefore: 60}
	for range n {
		ws := s.ConnectWith(t, parlortest.SmallBufferDialer(), ann, "")
		ws.Next("hello", 5*time.Second)
		ws.Pause()
		r.stuck = append(r.stuck, ws)
	}
	r.fast = s.Connect(t, carol, "")
	r.fast.Next("hello", 5*time.Second)
	// More than a stuck socket's kernel buffers hold on both ends.
	big := fmt.Sprintf("%04000d", 0)
	for range r.sentBefore {
		send(t, bob.Client, room, big)
	}
	r.fast.Events(r.sentBefore, 20*time.Second)
	return r
}

// requireFast sends body and requires carol to get it within two seconds.
func (r stalledRoom) requireFast(t *testing.T, body, why string) {
	t.Helper()
	sentAt := time.Now()
	m := send(t, r.bob.Client, r.room, body)
	got := r.fast.Events(1, 30*time.Second)[0]
	require.Equal(t, m.Id, got.Event.Message.Id)
	require.Less(t, time.Since(sentAt), 2*time.Second, why)
}

// A socket that stopped reading holds up nobody when its session ends: the others' events
// keep flowing while its close waits on its full buffers. (Closing under the fan-out's lock
// once stalled the whole instance for a second per stuck socket.)
func TestAStuckSocketOfAnEndedSessionStallsNobody(t *testing.T) {
	t.Parallel()
	r := stallRoom(t, 5*time.Second, 4)
	logout(t, r.ann.Client)
	r.requireFast(t, "right after the logout", "carol's event waited behind the stuck sockets' close")
	for _, ws := range r.stuck {
		ws.Resume()
	}
}

// A client that stops reading holds up no other socket: while its kernel buffers are full
// and the server still waits (up to the write timeout) to hand it the rest of a write, the
// room's other members get every event at once. (The instance writes all its sockets with a
// few goroutines: one that waited for a stuck client would stall the whole room.)
func TestAClientThatStopsReadingHoldsUpNoOne(t *testing.T) {
	t.Parallel()
	r := stallRoom(t, 20*time.Second, 1)
	for i := range 5 {
		r.requireFast(t, fmt.Sprintf("after the stall %d", i), "carol's event waited behind a client that stopped reading")
	}
	stuck := r.stuck[0]
	select {
	case ce := <-stuck.Closed:
		t.Fatalf("the stuck socket was closed (%v): the test did not keep it stuck", ce)
	default:
	}
	// Reading again, the stuck client gets every message once, in order, no frame torn.
	stuck.Resume()
	want := r.sentBefore + 5
	got := stuck.Events(want, 20*time.Second)
	require.Len(t, requireInOrder(t, got)[r.room], want)
	require.Equal(t, "after the stall 4", *got[want-1].Event.Message.Body)
}

// The per-user socket cap holds across instances: two sockets on two instances fill a cap of
// two, and a third on either is closed with 4009; closing one frees its place at once.
func TestTheSocketCapIsClusterWide(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.WSMaxConnsPerUser = 2
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg)
	ann := a.Register(t, "ann")
	first := gwConnect(t, a, ann, "")
	first.hello()
	second := gwConnect(t, b, ann, "")
	second.hello()
	for _, s := range []*parlortest.Server{a, b} {
		conn, res, err := gwDial(s, s.Ticket(t, ann), "", "")
		require.NoError(t, err)
		require.Equal(t, 101, res.StatusCode)
		gwRead(t, conn).requireClosedWith(4009, 5*time.Second)
	}
	require.NoError(t, first.Conn.Close())
	gwEventually(t, 5*time.Second, "a closed socket frees its place", func() bool {
		conn, res, err := gwDial(b, b.Ticket(t, ann), "", "")
		if err != nil || res.StatusCode != 101 {
			return false
		}
		ws := gwRead(t, conn)
		select {
		case f := <-ws.frames:
			return f.Type == "hello"
		case <-time.After(2 * time.Second):
			return false
		}
	})
	second.alive()
}

// Every frame a client sends counts against its rate limit, WebSocket pings included.
func TestAPingFloodIsClosedWith4029(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	ws := gwConnect(t, s, ann, "")
	ws.hello()
	for i := 0; i < 500; i++ {
		if err := ws.Conn.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second)); err != nil {
			break // closed by the server
		}
	}
	ws.requireClosedWith(4029, 5*time.Second)
}

// Typing reaches a socket only while its user is a member: not before the socket has its
// user's rooms, not before the user's join arrives on it, not after their kick.
func TestTypingReachesASocketOnlyWhileItsUserIsAMember(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob, carol := s.Register(t, "bob"), s.Register(t, "carol")
	room := createRoom(t, bob, "typing")
	bobWS := gwConnect(t, s, bob, "")
	bobWS.hello()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(600 * time.Millisecond):
				_ = bobWS.Conn.WriteJSON(map[string]any{"type": "typing.start", "room_id": room})
			}
		}
	}()
	defer func() { close(stop); <-done }()

	ws := gwConnect(t, s, carol, "")
	first := ws.next("hello", 5*time.Second)
	require.Equal(t, "hello", first.Type)
	ws.quiet(1500*time.Millisecond, "typing before carol is a member", gwTypingBy(bob.ID, room))

	join(t, carol, room)
	frames := ws.until("bob's typing after carol's join", 5*time.Second, gwTypingBy(bob.ID, room))
	joinedAt := -1
	for i, f := range frames {
		if f.Type == "event" && f.Event.RoomId == room && f.Event.Type == apiclient.MemberJoined && *f.Event.UserId == carol.ID {
			joinedAt = i
		}
	}
	require.GreaterOrEqual(t, joinedAt, 0, "typing arrived before carol's join: %s", gwDump(frames))

	res, err := bob.Client.KickMemberWithResponse(ctx, room, carol.ID)
	require.NoError(t, err)
	require.Equal(t, 204, res.StatusCode(), string(res.Body))
	ws.until("carol's kick", 5*time.Second, func(f parlortest.Frame) bool {
		return f.Type == "event" && f.Event.Type == apiclient.MemberKicked && *f.Event.UserId == carol.ID
	})
	ws.quiet(1500*time.Millisecond, "typing after carol's kick", gwTypingBy(bob.ID, room))
}

// A ticket opens one socket, even when two instances redeem it at the same moment: it is
// signed, not stored, and its nonce is claimed in the Redis they share.
func TestATicketOpensOneSocketAcrossInstances(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg)
	ann := a.Register(t, "ann")
	for range 5 {
		ticket := a.Ticket(t, ann)
		statuses := make(chan int, 2)
		for _, s := range []*parlortest.Server{a, b} {
			go func() {
				conn, res, err := s.Dial(url.Values{"ticket": {ticket}}, nil)
				if err == nil {
					t.Cleanup(func() { _ = conn.Close() })
				}
				if res == nil {
					statuses <- 0
					return
				}
				statuses <- res.StatusCode
			}()
		}
		got := []int{<-statuses, <-statuses}
		require.ElementsMatch(t, []int{101, 401}, got, "one upgrade, one refusal")
	}
}
