package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Close codes, documented in the contract (tag realtime).
const (
	CloseGoingAway      = websocket.CloseGoingAway       // 1001: server restart; reconnect with your token
	ClosePolicy         = websocket.ClosePolicyViolation // 1008: malformed or unknown frame
	CloseServerError    = websocket.CloseInternalServerErr
	CloseSessionEnded   = 4001 // logout or revoked session: sign in again
	CloseHeartbeat      = 4002 // missed the pong deadline: reconnect with your token
	CloseSlowConsumer   = 4008 // did not read fast enough: reconnect with your token
	CloseTooManyConns   = 4009 // per-user connection cap
	CloseRateLimited    = 4029 // frame rate limit: back off, reconnect with your token
	CloseInvalidToken   = 4400 // reserved: the since token needs pruned history; resync from GET /v1/sync
	replayPageSize      = 500
	typingTTL           = 5 * time.Second
	typingMinInterval   = 500 * time.Millisecond
	maxTypingRooms      = 64
	maxPingID           = 64 // PingFrame.id maxLength in the contract
	compactSeenAfter    = 64
	compactMinInterval  = 2 * time.Second
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

// item is one thing for a connection's writer: an event (durable), a ready frame
// (droppable), or an order to close.
type item struct {
	event     *eventFrame
	frame     []byte
	closeCode int
	reason    string
}

// conn is one WebSocket. Exactly one goroutine (writeLoop) writes data frames; readLoop
// reads. The writer owns the delivery state: the token and each room's last delivered seq.
type conn struct {
	g       *Gateway
	ws      *websocket.Conn
	id      string
	user    uuid.UUID
	session uuid.UUID
	queue   outbox

	// Writer-owned.
	token       events.Token
	lastSeq     map[uuid.UUID]int64
	lastCompact time.Time

	mu        sync.Mutex // guards rooms (read by readLoop for typing) and closed
	rooms     map[uuid.UUID]bool
	closed    bool
	done      chan struct{}
	closeOnce sync.Once
	// kill asks the writer to close after the frame it is writing (slow consumer).
	kill  chan item
	dying atomic.Bool
}

// enqueueEvent queues a durable event; a full queue means the client can't keep up, and it
// is closed with "slow consumer" (it resumes from its token and loses nothing).
func (c *conn) enqueueEvent(f *eventFrame) {
	if c.dying.Load() {
		return
	}
	if !c.queue.push(item{event: f}) {
		c.g.metrics.closes.WithLabelValues("slow_consumer").Inc()
		c.closeSoon(CloseSlowConsumer, "slow consumer: resume with your last token")
	}
}

// closeSoon has the writer send the close frame after the frame it is writing, so a client
// that starts reading again learns why; one that never does is cut off after the write
// timeout.
func (c *conn) closeSoon(code int, reason string) {
	if !c.dying.CompareAndSwap(false, true) {
		return
	}
	c.kill <- item{closeCode: code, reason: reason}
	time.AfterFunc(c.g.cfg.WSWriteTimeout+time.Second, func() { c.closeNow(code, reason) })
}

// enqueueDroppable queues a frame that may be lost (typing, presence, pong).
func (c *conn) enqueueDroppable(kind string, frame []byte) {
	if !c.queue.push(item{frame: frame}) {
		c.g.metrics.dropped.WithLabelValues(kind).Inc()
	}
}

// closeNow sends a close frame right away (WriteControl may run beside the writer) and
// tears the connection down.
func (c *conn) closeNow(code int, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeMessageTimeout))
		_ = c.ws.Close()
		close(c.done)
	})
}

// closeAfterQueue asks the writer to flush what is queued, then close (graceful shutdown).
func (c *conn) closeAfterQueue(code int, reason string) {
	if !c.queue.push(item{closeCode: code, reason: reason}) {
		c.closeNow(code, reason)
	}
}

func (c *conn) setRoom(room uuid.UUID, member bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if member {
		c.rooms[room] = true
	} else {
		delete(c.rooms, room)
	}
}

func (c *conn) inRoom(room uuid.UUID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[room]
}

// writeJSON writes one data frame.
func (c *conn) write(b []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.g.cfg.WSWriteTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// writeEvent writes an event frame with the token that resumes right after it, composing
// the frame around the event's shared serialization.
func (c *conn) writeEvent(f *eventFrame) error {
	c.lastSeq[f.event.RoomID] = f.event.Seq
	if err := c.writeWithToken(f); err != nil {
		return err
	}
	c.followMembership(f.event)
	return nil
}

// writeWithToken records f as delivered in the token and writes its frame with that token,
// composing the frame around the event's shared serialization.
func (c *conn) writeWithToken(f *eventFrame) error {
	c.token = c.token.WithSeen(f.event.RoomID, f.event.Seq)
	tok, err := json.Marshal(c.g.tokens.Encode(c.token))
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(f.json)+len(tok)+32)
	buf = append(buf, `{"type":"event","token":`...)
	buf = append(buf, tok...)
	buf = append(buf, `,"event":`...)
	buf = append(buf, f.json...)
	buf = append(buf, '}')
	if err := c.write(buf); err != nil {
		return err
	}
	c.g.metrics.deliveries.Inc()
	return nil
}

// followMembership keeps the subscriptions in step with the user's own membership events.
func (c *conn) followMembership(e events.Event) {
	if e.UserID == nil || *e.UserID != c.user {
		return
	}
	switch e.Type {
	case events.MemberJoined:
		c.setRoom(e.RoomID, true)
		c.g.node.subscribe(c, e.RoomID)
	case events.MemberLeft, events.MemberKicked, events.MemberBanned:
		c.setRoom(e.RoomID, false)
		c.g.node.unsubscribe(c, e.RoomID)
		delete(c.lastSeq, e.RoomID)
	}
}

// deliver writes a live event unless it was delivered already, first filling any gap in
// the room's seq from PostgreSQL.
func (c *conn) deliver(ctx context.Context, f *eventFrame) error {
	room := f.event.RoomID
	last, subscribed := c.lastSeq[room]
	if !subscribed {
		// Only the user's own join starts a room's stream.
		if f.event.Type != events.MemberJoined || f.event.UserID == nil || *f.event.UserID != c.user {
			return nil
		}
		return c.writeEvent(f)
	}
	if f.event.Seq <= last {
		return nil
	}
	if f.event.Seq > last+1 {
		missing, err := c.g.node.render(ctx, room, last+1, f.event.Seq-1)
		if err != nil {
			return err
		}
		c.g.metrics.gapRepairs.Inc()
		c.g.metrics.gapRepairRows.Add(float64(len(missing)))
		for i := range missing {
			if err := c.writeEvent(&missing[i]); err != nil {
				return err
			}
			if _, still := c.lastSeq[room]; !still {
				return nil // the user left within the gap
			}
		}
	}
	return c.writeEvent(f)
}

// replay sends every event after since from PostgreSQL, then fixes the live position: the
// token and each room's last seq, in the snapshot of the last page read.
func (c *conn) replay(ctx context.Context, since *events.Token) error {
	tok := events.Token{}
	if since != nil {
		tok = *since
		c.token = tok
		c.g.metrics.replays.Inc()
	}
	for {
		var (
			page    []eventFrame
			hasMore bool
			pos     events.Catchup
		)
		err := postgres.WithSnapshot(ctx, c.g.pool, func(q *db.Queries) error {
			if since == nil {
				var err error
				pos, err = events.Position(ctx, q, c.user, nil)
				return err
			}
			bounded := tok.Upto != "" // this read ends at an older snapshot than the transaction's
			p, err := events.Read(ctx, q, c.user, tok, replayPageSize)
			if err != nil {
				return err
			}
			if page, err = serialize(ctx, c.g.chat, q, p.Events); err != nil {
				return err
			}
			// The live position must be taken in the snapshot the last read went up to: only a
			// read that was not bounded by an older batch snapshot qualifies.
			tok, hasMore = p.Next, p.HasMore || bounded
			if !hasMore {
				pos, err = events.Position(ctx, q, c.user, p.Next.Seen)
			}
			return err
		})
		if err != nil {
			return err
		}
		c.g.metrics.replayEvents.Add(float64(len(page)))
		// Each replayed event's token is the page's starting token plus what was written
		// of the page; after the page, its Next.
		for i := range page {
			if err := c.writeWithToken(&page[i]); err != nil {
				return err
			}
		}
		c.token = tok
		if !hasMore {
			c.token = pos.Token
			c.lastSeq = pos.LastSeq
			c.mu.Lock()
			c.rooms = make(map[uuid.UUID]bool, len(pos.LastSeq))
			for r := range pos.LastSeq {
				c.rooms[r] = true
			}
			c.mu.Unlock()
			return nil
		}
	}
}

// compact replaces the token's seen entries with a newer snapshot once everything visible
// in it has been delivered, so tokens stay short on long-lived connections.
func (c *conn) compact(ctx context.Context) {
	if len(c.token.Seen) < compactSeenAfter || time.Since(c.lastCompact) < compactMinInterval {
		return
	}
	c.lastCompact = time.Now()
	_ = postgres.WithSnapshot(ctx, c.g.pool, func(q *db.Queries) error {
		p, err := events.Read(ctx, q, c.user, c.token, 1)
		if err != nil || len(p.Events) > 0 {
			return err // something is still in flight to us: try later
		}
		pos, err := events.Position(ctx, q, c.user, c.token.Seen)
		if err != nil {
			return err
		}
		c.token = pos.Token
		return nil
	})
}

// writeLoop owns every data frame: hello, replay, then live frames and pings, until the
// connection ends.
func (c *conn) writeLoop(ctx context.Context, since *events.Token) error {
	hello := api.HelloFrame{
		Type: api.Hello, ConnectionId: c.id,
		HeartbeatIntervalMs: int(c.g.cfg.WSPingInterval / time.Millisecond),
		Limits: api.RealtimeLimits{
			MaxFrameBytes: int(c.g.cfg.WSMaxFrameBytes), MaxFramesPerSecond: c.g.cfg.WSFramesPerSecond,
			MaxConnectionsPerUser: c.g.cfg.WSMaxConnsPerUser, TypingTimeoutMs: int(typingTTL / time.Millisecond),
		},
	}
	if since != nil {
		hello.Token = c.g.tokens.Encode(*since)
	} else {
		// The position is taken in replay; hello carries it, so replay it first.
		if err := c.replay(ctx, nil); err != nil {
			return err
		}
		hello.Token = c.g.tokens.Encode(c.token)
	}
	if err := c.write(mustFrame(hello)); err != nil {
		return err
	}
	if since != nil {
		if err := c.replay(ctx, since); err != nil {
			return err
		}
	}
	ticker := time.NewTicker(c.g.cfg.WSPingInterval)
	defer ticker.Stop()
	for {
		select {
		case it := <-c.kill:
			c.closeNow(it.closeCode, it.reason)
			return nil
		default:
		}
		select {
		case it := <-c.kill:
			c.closeNow(it.closeCode, it.reason)
			return nil
		case <-c.done:
			return nil
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.g.cfg.WSWriteTimeout)); err != nil {
				return err
			}
			_ = c.g.presence.Refresh(ctx, c.user, c.id, c.g.presenceTTL())
		case <-c.queue.ready:
			for _, it := range c.queue.take() {
				if c.dying.Load() {
					break // the kill order takes over at the top of the loop
				}
				switch {
				case it.closeCode != 0:
					c.closeNow(it.closeCode, it.reason)
					return nil
				case it.event != nil:
					if err := c.deliver(ctx, it.event); err != nil {
						return err
					}
				default:
					if err := c.write(it.frame); err != nil {
						return err
					}
				}
			}
			c.compact(ctx)
		}
	}
}

// outbox is a connection's bounded queue. It holds no memory while empty (an idle socket
// costs nothing here), and the writer takes everything queued at once.
type outbox struct {
	mu    sync.Mutex
	items []item
	max   int
	ready chan struct{} // signalled when items arrive
}

func newOutbox(max int) outbox { return outbox{max: max, ready: make(chan struct{}, 1)} }

// push queues it, or reports false when the queue is full.
func (o *outbox) push(it item) bool {
	o.mu.Lock()
	if len(o.items) >= o.max {
		o.mu.Unlock()
		return false
	}
	o.items = append(o.items, it)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns everything queued.
func (o *outbox) take() []item {
	o.mu.Lock()
	defer o.mu.Unlock()
	items := o.items
	o.items = nil
	return items
}

// clientFrame is any frame a client sends; the type picks which fields matter.
type clientFrame struct {
	Type   string     `json:"type"`
	ID     *string    `json:"id,omitempty"`
	RoomID *uuid.UUID `json:"room_id,omitempty"`
}

// readLoop reads client frames until the connection ends, enforcing the heartbeat, the
// frame size (gorilla closes with 1009) and the frame rate.
func (c *conn) readLoop(ctx context.Context) error {
	deadline := c.g.cfg.WSPingInterval + c.g.cfg.WSPongTimeout
	_ = c.ws.SetReadDeadline(time.Now().Add(deadline))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(deadline))
	})
	limiter := rate.NewLimiter(rate.Limit(c.g.cfg.WSFramesPerSecond), 2*c.g.cfg.WSFramesPerSecond)
	lastTyping := map[uuid.UUID]time.Time{}
	for {
		kind, data, err := c.ws.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.g.metrics.closes.WithLabelValues("heartbeat").Inc()
				c.closeNow(CloseHeartbeat, "heartbeat missed")
			}
			return err
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(deadline))
		if !limiter.Allow() {
			c.g.metrics.closes.WithLabelValues("rate_limited").Inc()
			c.closeNow(CloseRateLimited, "too many frames")
			return nil
		}
		var f clientFrame
		if kind != websocket.TextMessage || json.Unmarshal(data, &f) != nil {
			c.g.metrics.closes.WithLabelValues("policy").Inc()
			c.closeNow(ClosePolicy, "frames are JSON text: ClientFrame in the contract")
			return nil
		}
		switch f.Type {
		case "ping":
			if f.ID != nil && len(*f.ID) > maxPingID {
				c.g.metrics.closes.WithLabelValues("policy").Inc()
				c.closeNow(ClosePolicy, "a ping id is at most 64 characters")
				return nil
			}
			c.enqueueDroppable("pong", mustFrame(api.PongFrame{Type: api.Pong, Id: f.ID}))
		case "typing.start", "typing.stop":
			if f.RoomID == nil {
				c.closeNow(ClosePolicy, "typing frames need room_id")
				return nil
			}
			if !c.inRoom(*f.RoomID) {
				c.enqueueDroppable("error", mustFrame(api.ErrorFrame{Type: api.Error, Code: "not_found", Message: "you are not a member of that room"}))
				continue
			}
			typing := f.Type == "typing.start"
			if typing && time.Since(lastTyping[*f.RoomID]) < typingMinInterval {
				continue // renewals faster than this add nothing
			}
			if typing {
				if len(lastTyping) >= maxTypingRooms {
					clear(lastTyping)
				}
				lastTyping[*f.RoomID] = time.Now()
			} else {
				delete(lastTyping, *f.RoomID)
			}
			c.g.publish(ctx, events.Notice{Kind: events.KindTyping, RoomID: *f.RoomID, UserID: &c.user, Typing: typing})
		default:
			c.g.metrics.closes.WithLabelValues("policy").Inc()
			c.closeNow(ClosePolicy, fmt.Sprintf("unknown frame type %q", truncate(f.Type, 32)))
			return nil
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
