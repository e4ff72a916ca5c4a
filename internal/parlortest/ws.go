package parlortest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parlor-dev/parlor/gen/apiclient"
)

// Frame is a server frame as received: its type, the raw JSON, and the decoded common parts.
type Frame struct {
	Type   string
	Raw    []byte
	Token  string                // hello, event and events frames
	Event  *apiclient.RoomEvent  // event frames
	Events []apiclient.RoomEvent // events frames (a socket opened with batch=true)
	Hello  *apiclient.HelloFrame // hello frames
}

// WS is a test WebSocket client: it reads frames in the background into Frames; CloseErr
// receives how the server closed the connection.
type WS struct {
	Conn     *websocket.Conn
	Frames   chan Frame
	Closed   chan *websocket.CloseError
	t        testing.TB
	mu       sync.Mutex
	paused   bool
	resumeCh chan struct{}
}

// Ticket gets a WebSocket ticket for u.
func (s *Server) Ticket(t testing.TB, u *User) string {
	t.Helper()
	res, err := u.Client.CreateRealtimeTicketWithResponse(context.Background())
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
	if res.JSON201 == nil {
		t.Fatalf("ticket: status %d: %s", res.StatusCode(), res.Body)
	}
	return res.JSON201.Ticket
}

// Dial opens /v1/realtime with the raw query and header, returning the HTTP response on a
// refused handshake.
func (s *Server) Dial(query url.Values, header http.Header) (*websocket.Conn, *http.Response, error) {
	return s.DialWith(websocket.DefaultDialer, query, header)
}

// DialWith is Dial with a dialer of the caller's.
func (s *Server) DialWith(d *websocket.Dialer, query url.Values, header http.Header) (*websocket.Conn, *http.Response, error) {
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/realtime?" + query.Encode()
	return d.Dial(u, header)
}

// SmallBufferDialer dials with a tiny TCP receive buffer, so a client that stops reading
// stalls the server quickly (a slow consumer).
func SmallBufferDialer() *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, err
		},
	}
}

// Connect opens a socket for u (resuming after since when given) and starts reading.
func (s *Server) Connect(t testing.TB, u *User, since string) *WS {
	t.Helper()
	return s.ConnectWith(t, websocket.DefaultDialer, u, since)
}

// ConnectWith is Connect with a dialer of the caller's.
func (s *Server) ConnectWith(t testing.TB, d *websocket.Dialer, u *User, since string) *WS {
	t.Helper()
	return s.connect(t, d, u, since, nil)
}

// ConnectBatched is Connect for a socket that takes batches (batch=true): events that are
// ready together arrive as one `events` frame.
func (s *Server) ConnectBatched(t testing.TB, u *User, since string) *WS {
	t.Helper()
	return s.connect(t, websocket.DefaultDialer, u, since, url.Values{"batch": {"true"}})
}

func (s *Server) connect(t testing.TB, d *websocket.Dialer, u *User, since string, extra url.Values) *WS {
	t.Helper()
	q := url.Values{"ticket": {s.Ticket(t, u)}}
	if since != "" {
		q.Set("since", since)
	}
	for k, v := range extra {
		q[k] = v
	}
	conn, res, err := s.DialWith(d, q, nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	ws := &WS{Conn: conn, Frames: make(chan Frame, 100000), Closed: make(chan *websocket.CloseError, 1), t: t, resumeCh: make(chan struct{})}
	t.Cleanup(func() { _ = conn.Close() })
	go ws.read()
	return ws
}

func (ws *WS) read() {
	for {
		ws.mu.Lock()
		paused, resume := ws.paused, ws.resumeCh
		ws.mu.Unlock()
		if paused {
			<-resume
		}
		_, data, err := ws.Conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if ok := asCloseError(err, &ce); ok {
				ws.Closed <- ce
			} else {
				ws.Closed <- nil
			}
			close(ws.Frames)
			return
		}
		var head struct {
			Type   string                `json:"type"`
			Token  string                `json:"token"`
			Event  *apiclient.RoomEvent  `json:"event"`
			Events []apiclient.RoomEvent `json:"events"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			ws.t.Errorf("frame is not JSON: %s", data)
			continue
		}
		f := Frame{Type: head.Type, Raw: data, Token: head.Token, Event: head.Event, Events: head.Events}
		if head.Type == "hello" {
			var h apiclient.HelloFrame
			_ = json.Unmarshal(data, &h)
			f.Hello = &h
		}
		ws.Frames <- f
	}
}

func asCloseError(err error, target **websocket.CloseError) bool {
	ce, ok := err.(*websocket.CloseError)
	if ok {
		*target = ce
	}
	return ok
}

// Pause stops reading from the socket (a slow consumer); Resume starts again.
func (ws *WS) Pause() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.paused = true
}

// Next returns the next frame of a type (skipping others), or fails after timeout.
func (ws *WS) Next(typ string, timeout time.Duration) Frame {
	ws.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-ws.Frames:
			if !ok {
				ws.t.Fatalf("connection closed while waiting for a %q frame", typ)
			}
			if f.Type == typ {
				return f
			}
		case <-deadline:
			ws.t.Fatalf("no %q frame within %s", typ, timeout)
		}
	}
}

// Events collects n event frames (other frames are skipped), or fails after timeout.
func (ws *WS) Events(n int, timeout time.Duration) []Frame {
	ws.t.Helper()
	var out []Frame
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case f, ok := <-ws.Frames:
			if !ok {
				ws.t.Fatalf("connection closed after %d of %d events (%s)", len(out), n, ws.closeReason())
			}
			if f.Type == "event" {
				out = append(out, f)
			}
		case <-deadline:
			ws.t.Fatalf("only %d of %d events within %s", len(out), n, timeout)
		}
	}
	return out
}

// closeReason says how a socket whose frames have ended was closed.
func (ws *WS) closeReason() string {
	select {
	case ce := <-ws.Closed:
		ws.Closed <- ce
		if ce == nil {
			return "no close frame"
		}
		return ce.Error()
	default:
		return "still open"
	}
}

// Send writes a client frame.
func (ws *WS) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ws.Conn.WriteMessage(websocket.TextMessage, b)
}

// WaitClosed returns the server's close frame, or fails after timeout.
func (ws *WS) WaitClosed(timeout time.Duration) *websocket.CloseError {
	ws.t.Helper()
	for {
		select {
		case _, ok := <-ws.Frames:
			if !ok {
				return <-ws.Closed
			}
		case <-time.After(timeout):
			ws.t.Fatalf("the server did not close the connection within %s", timeout)
			return nil
		}
	}
}

// Resume starts reading again after Pause.
func (ws *WS) Resume() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.paused {
		ws.paused = false
		close(ws.resumeCh)
		ws.resumeCh = make(chan struct{})
	}
}
