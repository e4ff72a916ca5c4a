package realtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/events"
)

// Close codes, documented in the contract (tag realtime).
const (
	CloseNormal         = websocket.CloseNormalClosure   // 1000
	CloseGoingAway      = websocket.CloseGoingAway       // 1001: server restart; reconnect with your token
	ClosePolicy         = websocket.ClosePolicyViolation // 1008: malformed or unknown frame
	CloseServerError    = websocket.CloseInternalServerErr
	CloseSessionEnded   = 4001 // logout or revoked session: sign in again
	CloseHeartbeat      = 4002 // missed the pong deadline: reconnect with your token
	CloseSlowConsumer   = 4008 // did not read fast enough: reconnect with your token
	CloseTooManyConns   = 4009 // per-user connection cap (cluster-wide)
	CloseRateLimited    = 4029 // frame rate limit: back off, reconnect with your token
	CloseFullSync       = 4400 // the since token cannot be used here: start over from GET /v1/sync
	replayPageSize      = 500
	typingTTL           = 5 * time.Second
	typingMinInterval   = 500 * time.Millisecond
	maxTypingRooms      = 64
	maxPingID           = 64 // PingFrame.id maxLength in the contract
	closeMessageTimeout = time.Second
	// socketSendBuffer caps what the kernel buffers per socket, so a client that stops
	// reading is noticed (as a slow consumer) after little data rather than megabytes.
	socketSendBuffer = 64 << 10
)

func typingTTLms(typing bool) *int {
	if !typing {
		return nil
	}
	ms := int(typingTTL / time.Millisecond)
	return &ms
}

// WebSocket opcodes (RFC 6455, 5.2).
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// frame is one WebSocket frame ready for the wire, shared by every socket it goes to: an
// event is serialized, given its token and framed once, whatever the number of subscribers.
type frame struct {
	wire    []byte
	durable bool         // an event: a full queue closes the socket rather than drop it
	batch   uint64       // for a durable frame: the fan-out batch it came in
	kind    string       // what a droppable frame is, for the dropped-frames metric
	event   events.Event // for a durable frame: the event it carries
}

// wsFrame frames a payload as one final, unmasked frame (the server never masks).
func wsFrame(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op
	return append(b, payload...)
}

// droppable frames a JSON frame that may be lost when a socket's queue is full.
func droppable(kind string, v any) *frame {
	return &frame{wire: wsFrame(opText, mustFrame(v)), kind: kind}
}

var pingFrame = &frame{wire: wsFrame(opPing, nil), kind: "ping"}

func closeFrame(code int, reason string) []byte {
	return wsFrame(opClose, websocket.FormatCloseMessage(code, reason))
}

func mustFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own frame types always encode
	}
	return b
}

// conn is one WebSocket. An idle one costs its reader goroutine and a few small structs:
// the HTTP handler returns after the upgrade (net/http frees its buffers), and a writer
// goroutine exists only while frames are waiting. The frames are framed already and shared
// by every socket; the writer writes a lone frame as it is and joins several into one
// write, to the network connection directly.
type conn struct {
	g       *Gateway
	ws      *websocket.Conn // reads; writes only its own control frames (read limit, protocol errors)
	nc      net.Conn
	id      string
	user    uuid.UUID
	session uuid.UUID
	bucket  int // which heartbeat tick pings it

	// Owned by the node (under node.mu).
	rooms   []uuid.UUID
	live    bool         // receives the stream from `from` on
	gone    bool         // unregistered
	from    events.Token // the batch end it joined the stream at
	refused int          // a close code the node gave instead of joining (4001)
	touched uint64       // the last batch that queued a frame for it
	joined  chan struct{}

	deadline time.Time // the write deadline set last (writer-owned)

	mu        sync.Mutex
	queue     []*frame
	lastBatch uint64 // the batch of the last durable frame queued
	writing   bool   // a writer goroutine runs
	started   bool   // hello and the replay are written: the writer may run
	closing   []byte // a close frame to write after what is queued
	closed    bool

	sentOnce  sync.Once
	closeSent chan struct{} // closed once the close frame is written
}

// push queues a frame and wakes the writer. The first event of a batch that finds the
// queue full closes the socket as a slow consumer (it resumes from its token and loses
// nothing): a batch is queued whole, however many events it has, so a burst does not close a
// client that keeps up, but one that has not written out the earlier batches does. A
// droppable frame that finds the queue full is dropped.
func (c *conn) push(f *frame) {
	if c.enqueue(f) {
		c.wake()
	}
}

// enqueue queues a frame without waking the writer (the fan-out queues a whole batch, then
// wakes each socket's writer once). It reports whether the frame was queued.
func (c *conn) enqueue(f *frame) bool {
	c.mu.Lock()
	if c.closed || c.closing != nil {
		c.mu.Unlock()
		return false
	}
	sameBatch := f.durable && f.batch == c.lastBatch
	if f.durable {
		c.lastBatch = f.batch
	}
	if !sameBatch && len(c.queue) >= c.g.cfg.WSQueueSize {
		c.mu.Unlock()
		if f.durable {
			c.g.metrics.closes.WithLabelValues("slow_consumer").Inc()
			c.closeSoon(CloseSlowConsumer, "slow consumer: resume with your last token")
		} else {
			c.g.metrics.dropped.WithLabelValues(f.kind).Inc()
		}
		return false
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	return true
}

// wake starts the writer if there is something to write and none runs.
func (c *conn) wake() {
	c.mu.Lock()
	c.wakeWriterLocked()
	c.mu.Unlock()
}

// wakeWriterLocked starts the writer if there is something to write and none runs.
func (c *conn) wakeWriterLocked() {
	if c.started && !c.writing && (len(c.queue) > 0 || c.closing != nil) {
		c.writing = true
		go c.flush()
	}
}

// flush writes what is queued, in as few system calls as it takes, until nothing is left;
// then the goroutine ends.
func (c *conn) flush() {
	var spare []*frame
	for {
		c.mu.Lock()
		q, closing := c.queue, c.closing
		c.queue = spare // a small array goes round between the queue and the writer
		if c.closed || (len(q) == 0 && closing == nil) {
			c.writing = false
			c.mu.Unlock()
			return
		}
		if len(q) == 0 {
			c.closed = true
		}
		c.mu.Unlock()
		if len(q) == 0 { // only the close frame is left
			c.finishClose(closing)
			return
		}
		delivered, err := c.writeFrames(q)
		if err != nil {
			c.closeNow(CloseNormal, "")
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.g.metrics.deliveries.Add(float64(delivered))
		spare = nil
		if cap(q) <= 16 { // a big one is not kept by a socket that had a burst
			clear(q)
			spare = q[:0]
		}
	}
}

// writeFrames writes q and counts the events in it.
func (c *conn) writeFrames(q []*frame) (events int, err error) {
	for _, f := range q {
		if f.durable {
			events++
		}
	}
	if len(q) == 1 {
		return events, c.writeOnce(q[0].wire)
	}
	wires := make([][]byte, len(q))
	for i, f := range q {
		wires[i] = f.wire
	}
	return events, c.write(wires...)
}

// writeBufs lends the buffers in which several frames are joined into one write. (Not
// writev: the runtime keeps a writev's vector on the socket for good, memory an idle
// socket would hold.)
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxWriteBytes); return &b }}

// maxWriteBytes bounds one write: the write timeout applies to each, so a client that reads
// slowly but steadily is not cut off in the middle of a long replay.
const maxWriteBytes = 16 << 10

// write writes frames with as few system calls as fit in maxWriteBytes each. The writer
// calls it, and the connection's own goroutine before the writer may run (hello, replay).
func (c *conn) write(wires ...[]byte) error {
	if len(wires) == 1 {
		return c.writeOnce(wires[0])
	}
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 4*maxWriteBytes {
			*bp = buf[:0]
			writeBufs.Put(bp)
		}
	}()
	for _, w := range wires {
		if len(buf) > 0 && len(buf)+len(w) > maxWriteBytes {
			if err := c.writeOnce(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		buf = append(buf, w...)
	}
	return c.writeOnce(buf)
}

// writeOnce writes with the write timeout. The deadline moves only once half of it has
// passed: resetting a timer on every write of every socket costs more than the write.
func (c *conn) writeOnce(b []byte) error {
	now := time.Now()
	if c.deadline.Sub(now) < c.g.cfg.WSWriteTimeout/2 {
		c.deadline = now.Add(c.g.cfg.WSWriteTimeout)
		_ = c.nc.SetWriteDeadline(c.deadline)
	}
	_, err := c.nc.Write(b)
	return err
}

// start lets the writer run: what queued during the replay goes out now.
func (c *conn) start() {
	c.mu.Lock()
	c.started = true
	c.wakeWriterLocked()
	c.mu.Unlock()
}

// isClosing reports whether the socket is on its way out.
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.closing != nil
}

// closeSoon drops what is queued and has the writer send the close frame after the write
// in progress, so a client that starts reading again learns why; one that never does is
// cut off after the write timeout.
func (c *conn) closeSoon(code int, reason string) {
	c.mu.Lock()
	if c.closed || c.closing != nil {
		c.mu.Unlock()
		return
	}
	c.queue, c.closing = nil, closeFrame(code, reason)
	c.wakeWriterLocked()
	c.mu.Unlock()
	time.AfterFunc(c.g.cfg.WSWriteTimeout+time.Second, func() { c.closeNow(code, reason) })
}

// closeAfterQueue has the writer send what is queued, then the close frame (shutdown).
func (c *conn) closeAfterQueue(code int, reason string) {
	c.mu.Lock()
	if c.closed || c.closing != nil {
		c.mu.Unlock()
		return
	}
	c.closing = closeFrame(code, reason)
	c.wakeWriterLocked()
	c.mu.Unlock()
}

// closeNow closes at once: the close frame goes out beside whatever is being written (a
// frame is one write, so the two never interleave) and the connection closes. It never
// blocks its caller: a socket that stopped reading may take up to a second.
func (c *conn) closeNow(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.queue = true, nil
	c.mu.Unlock()
	go c.finishClose(closeFrame(code, reason))
}

// finishClose writes the close frame, then only half-closes: the client reads the frame and
// answers, and the reader, given a second for that, ends and closes the socket (finish). A
// socket closed at once with unread client data in it answers with a reset, which can
// overtake the close frame.
func (c *conn) finishClose(frame []byte) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeMessageTimeout))
	_, _ = c.nc.Write(frame)
	c.closeWritten()
}

// closeWritten records that no frame follows any more: the write side is shut and the
// reader has a second left.
func (c *conn) closeWritten() {
	c.sentOnce.Do(func() {
		if tc, ok := c.nc.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(closeMessageTimeout))
		close(c.closeSent)
	})
}

// release closes the socket once its close frame is out (or a second has passed), reading
// what the client still sends until it closes its side, so no reset overtakes the frame.
func (c *conn) release() {
	c.closeNow(CloseNormal, "")
	select {
	case <-c.closeSent:
	case <-time.After(2 * closeMessageTimeout):
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeMessageTimeout))
	_, _ = io.Copy(io.Discard, c.nc)
	_ = c.nc.Close()
}

// extendReadDeadline gives the client another ping interval and pong timeout to be heard
// from: the heartbeat closes a socket whose client stays silent longer.
func (c *conn) extendReadDeadline() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.g.cfg.WSPingInterval + c.g.cfg.WSPongTimeout))
}

// clientFrame is any frame a client sends; the type picks which fields matter.
type clientFrame struct {
	Type   string     `json:"type"`
	ID     *string    `json:"id,omitempty"`
	RoomID *uuid.UUID `json:"room_id,omitempty"`
}

var errRateLimited = errors.New("realtime: frame rate limit")

// readLoop reads client frames until the connection ends, enforcing the heartbeat, the
// frame size (gorilla closes with 1009) and one rate limit over every frame the client
// sends, control frames (pings, pongs) included.
func (c *conn) readLoop() {
	limiter := rate.NewLimiter(rate.Limit(c.g.cfg.WSFramesPerSecond), 2*c.g.cfg.WSFramesPerSecond)
	allow := func() bool {
		if limiter.Allow() {
			return true
		}
		c.g.metrics.closes.WithLabelValues("rate_limited").Inc()
		c.closeNow(CloseRateLimited, "too many frames")
		return false
	}
	extend := func() {
		if !c.isClosing() { // a closing socket keeps the second it was given
			c.extendReadDeadline()
		}
	}
	extend()
	c.ws.SetPongHandler(func(string) error {
		if !allow() {
			return errRateLimited
		}
		extend()
		return nil
	})
	c.ws.SetPingHandler(func(data string) error {
		if !allow() {
			return errRateLimited
		}
		extend()
		c.push(&frame{wire: wsFrame(opPong, []byte(data)), kind: "pong"})
		return nil
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		if code == websocket.CloseNoStatusReceived {
			code = CloseNormal
		}
		c.closeNow(code, "")
		return nil
	})
	var lastTyping map[uuid.UUID]time.Time
	for {
		kind, data, err := c.ws.ReadMessage()
		if errors.Is(err, websocket.ErrReadLimit) {
			// gorilla has sent the close frame (1009) itself.
			c.g.metrics.closes.WithLabelValues("too_big").Inc()
			c.mu.Lock()
			c.closed, c.queue = true, nil
			c.mu.Unlock()
			c.closeWritten()
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.isClosing() {
				c.g.metrics.closes.WithLabelValues("heartbeat").Inc()
				c.closeNow(CloseHeartbeat, "heartbeat missed")
			}
			return
		}
		extend()
		if !allow() {
			return
		}
		var f clientFrame
		if kind != websocket.TextMessage || json.Unmarshal(data, &f) != nil {
			c.g.metrics.closes.WithLabelValues("policy").Inc()
			c.closeNow(ClosePolicy, "frames are JSON text: ClientFrame in the contract")
			return
		}
		switch f.Type {
		case "ping":
			if f.ID != nil && len(*f.ID) > maxPingID {
				c.g.metrics.closes.WithLabelValues("policy").Inc()
				c.closeNow(ClosePolicy, "a ping id is at most 64 characters")
				return
			}
			c.push(droppable("pong", api.PongFrame{Type: api.Pong, Id: f.ID}))
		case "typing.start", "typing.stop":
			if f.RoomID == nil {
				c.g.metrics.closes.WithLabelValues("policy").Inc()
				c.closeNow(ClosePolicy, "typing frames need room_id")
				return
			}
			if !c.g.node.subscribed(c, *f.RoomID) {
				c.push(droppable("error", api.ErrorFrame{Type: api.Error, Code: "not_found", Message: "you are not a member of that room"}))
				continue
			}
			typing := f.Type == "typing.start"
			if typing && time.Since(lastTyping[*f.RoomID]) < typingMinInterval {
				continue // renewals faster than this add nothing
			}
			if lastTyping == nil || len(lastTyping) >= maxTypingRooms {
				lastTyping = map[uuid.UUID]time.Time{}
			}
			if typing {
				lastTyping[*f.RoomID] = time.Now()
			} else {
				delete(lastTyping, *f.RoomID)
			}
			c.g.publish(events.Notice{Kind: events.KindTyping, RoomID: *f.RoomID, UserID: &c.user, Typing: typing})
		default:
			c.g.metrics.closes.WithLabelValues("policy").Inc()
			c.closeNow(ClosePolicy, fmt.Sprintf("unknown frame type %q", truncate(f.Type, 32)))
			return
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
