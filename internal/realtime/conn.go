package realtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
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

// conn is one WebSocket. An idle one costs its reader goroutine and a few small structs:
// the HTTP handler returns after the upgrade (net/http frees its buffers), and the
// instance's writer pool writes its frames when it has some. The frames are framed already
// and shared by every socket; a writer writes a lone frame as it is and joins several into
// one write, to the network connection directly.
type conn struct {
	g       *Gateway
	ws      *websocket.Conn // reads; writes only its own control frames (read limit, protocol errors)
	nc      net.Conn
	id      string
	user    uuid.UUID
	session uuid.UUID
	bucket  int // which heartbeat tick pings it
	opened  time.Time

	// Owned by the node (under node.mu).
	rooms   []uuid.UUID
	live    bool         // receives the stream from `from` on
	gone    bool         // unregistered
	from    events.Token // the batch end it joined the stream at
	refused int          // a close code the node gave instead of joining (4001)
	touched uint64       // the last batch that queued a frame for it
	joined  chan struct{}

	deadline time.Time // the write deadline a waiting write set last (zero: none is set)

	raw   syscall.RawConn // for writes that never wait (nil: every write may wait)
	batch bool            // joins runs of events into `events` frames (batch=true)

	mu              sync.Mutex
	queue           []*frame
	lastBatch       uint64 // the batch of the last durable frame queued
	writing         bool   // in the writers' line, or being written
	inWrite         bool   // frames are being written: the writer owns the wire
	started         bool   // hello and the replay are written: the writers may take it
	closing         []byte // a close frame to write after what is queued
	closeAfterWrite []byte // a close frame that waits for the write in progress
	closed          bool

	sentOnce  sync.Once
	closeSent chan struct{} // closed once the close frame is written
}

// push queues a frame and puts the socket in the writers' line. The first event of a
// batch that finds the queue full closes the socket as a slow consumer (it resumes from its
// token and loses nothing): a batch is queued whole, however many events it has, so a burst
// does not close a client that keeps up, but one that has not written out the earlier
// batches does. A droppable frame that finds the queue full is dropped.
func (c *conn) push(f *frame) {
	if c.enqueue(f) {
		c.wake()
	}
}

// enqueue queues a frame without waking a writer (the fan-out queues a whole batch, then
// puts each socket in the writers' line once). It reports whether the frame was queued.
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

// wake puts the socket in the writers' line if there is something to write.
func (c *conn) wake() {
	c.mu.Lock()
	c.wakeWriterLocked()
	c.mu.Unlock()
}

// wakeWriterLocked puts the socket in the writers' line if there is something to write and
// it is not there or being written already.
func (c *conn) wakeWriterLocked() {
	if c.started && !c.writing && (len(c.queue) > 0 || c.closing != nil) {
		c.writing = true
		c.g.writers.add(c)
	}
}

// takeQueue hands the writer what is queued. done: nothing is left (or the socket closed)
// and the socket leaves the writers' line; frames empty and not done: only the close frame
// is left. While frames are out, the writer owns the wire: a close arriving meanwhile is
// left to it (closeNow), so no close frame lands inside a frame written in parts.
func (c *conn) takeQueue() (q []*frame, closing []byte, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, closing = c.queue, c.closing
	c.queue = nil
	if c.closed || (len(q) == 0 && closing == nil) {
		c.writing = false
		return nil, nil, true
	}
	if len(q) == 0 {
		c.closed = true
		return nil, closing, false
	}
	c.inWrite = true
	return q, nil, false
}

// writeTurn is a pool writer's turn at the socket: it writes what is queued as far as the
// socket takes it at once, and hands the rest to a goroutine that may wait for the client.
func (c *conn) writeTurn(buf *[]byte) {
	q, closing, done := c.takeQueue()
	switch {
	case done:
		return
	case q == nil:
		go c.finishClose(closing)
		return
	}
	rest, err := c.writeWhatFits(q, buf)
	if err == nil && rest != nil {
		go c.finishWrite(q, rest)
		return
	}
	c.wrote(q, err)
}

// finishWrite writes, waiting up to the write timeout, what the socket did not take at once.
func (c *conn) finishWrite(q []*frame, rest [][]byte) {
	c.wrote(q, c.write(rest...))
}

// wrote ends a write of q: it counts the deliveries, writes the close frame that arrived
// meanwhile, and puts the socket back in line if more is queued.
func (c *conn) wrote(q []*frame, err error) {
	if err == nil {
		c.g.metrics.deliveries.Add(float64(countEvents(q)))
		c.g.metrics.observeLag(q, time.Now())
	}
	c.mu.Lock()
	c.inWrite = false
	closing := c.closeAfterWrite
	c.closeAfterWrite = nil
	if err == nil && c.queue == nil && cap(q) <= 16 {
		clear(q)
		c.queue = q[:0] // a small array goes round between the queue and the writer
	}
	c.mu.Unlock()
	switch {
	case closing != nil && err == nil:
		go c.finishClose(closing)
	case closing != nil:
		c.closeWritten() // a frame was cut short: a close frame after it would be garbage
	case err != nil:
		c.closeNow(CloseNormal, "")
	}
	c.mu.Lock()
	c.writing = false
	c.wakeWriterLocked()
	c.mu.Unlock()
}

func countEvents(q []*frame) (n int) {
	for _, f := range q {
		if f.durable {
			n++
		}
	}
	return n
}

// writeWhatFits writes q's frames, joined into writes of up to maxWriteBytes (and, on a
// socket that takes batches, runs of events into `events` frames), as far as the socket's
// send buffer takes them without waiting. It returns what was not written (nil: everything).
func (c *conn) writeWhatFits(q []*frame, buf *[]byte) ([][]byte, error) {
	if c.raw == nil {
		return wires(q, c.batch), nil
	}
	if !c.deadline.IsZero() {
		// A write that waited left its deadline on the socket, which would fail this one
		// once it has passed.
		_ = c.nc.SetWriteDeadline(time.Time{})
		c.deadline = time.Time{}
	}
	for i := 0; i < len(q); {
		b, j := (*buf)[:0], i
		for j < len(q) {
			end, size := nextUnit(q, j, c.batch)
			if j > i && len(b)+size > maxWriteBytes {
				break
			}
			b, j = appendUnit(b, q[j:end]), end
		}
		*buf = b
		n, err := writeNow(c.raw, b)
		if err != nil {
			return nil, err
		}
		if n < len(b) {
			// b is the writer's buffer: what is left of it is copied.
			return append([][]byte{append([]byte(nil), b[n:]...)}, wires(q[j:], c.batch)...), nil
		}
		i = j
	}
	return nil, nil
}

// writeBufs lends the buffers in which several frames are joined into one write. (Not
// writev: the runtime keeps a writev's vector on the socket for good, memory an idle
// socket would hold.)
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxWriteBytes); return &b }}

// maxWriteBytes bounds one write: the write timeout applies to each, so a client that reads
// slowly but steadily is not cut off in the middle of a long replay.
const maxWriteBytes = 16 << 10

// write writes frames with as few system calls as fit in maxWriteBytes each, waiting for
// the client up to the write timeout: for what a writer could not write at once
// (finishWrite), and for hello and the replay before the writers may take the socket.
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

// start lets the writers take the socket: what queued during the replay goes out now.
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

// closeNow closes at once: the close frame goes out right after the write in progress, if
// any, and the connection closes. It never blocks its caller: a socket that stopped reading
// may take up to two seconds.
func (c *conn) closeNow(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.queue = true, nil
	if c.inWrite {
		// The writer sends the close frame after its write, which the deadline cuts short
		// if the client is not reading.
		c.closeAfterWrite = closeFrame(code, reason)
		c.mu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeMessageTimeout))
		return
	}
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
		f, policy := parseClientFrame(kind, data)
		if policy != "" {
			c.g.metrics.closes.WithLabelValues("policy").Inc()
			c.closeNow(ClosePolicy, policy)
			return
		}
		switch f.Type {
		case "ping":
			c.push(droppable("pong", api.PongFrame{Type: api.Pong, Id: f.ID}))
		case "typing.start", "typing.stop":
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
		}
	}
}

// parseClientFrame reads one frame from the client as the contract's ClientFrame. A frame
// the gateway does not take comes back with the reason to close it with (1008).
func parseClientFrame(kind int, data []byte) (f clientFrame, policy string) {
	if kind != websocket.TextMessage || json.Unmarshal(data, &f) != nil {
		return f, "frames are JSON text: ClientFrame in the contract"
	}
	switch f.Type {
	case "ping":
		if f.ID != nil && len(*f.ID) > maxPingID {
			return f, "a ping id is at most 64 characters"
		}
	case "typing.start", "typing.stop":
		if f.RoomID == nil {
			return f, "typing frames need room_id"
		}
	default:
		return f, fmt.Sprintf("unknown frame type %q", truncate(f.Type, 32))
	}
	return f, ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
