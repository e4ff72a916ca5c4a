// Package realtime is the WebSocket gateway: ticket-authenticated sockets that carry every
// event of a user's rooms live and in order, resume from a token without gap or duplicate,
// and carry typing and presence. PostgreSQL stays the source of truth: the broker only says
// "something was committed"; each instance reads the log in batches and fans it out.
package realtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// heartbeatTicks spreads the server's pings over the ping interval: each tick pings the
// sockets of one bucket (and refreshes their presence in one round trip).
const heartbeatTicks = 16

// joinTimeout bounds how long a new socket waits to join the stream (one batch, normally
// milliseconds).
const joinTimeout = 10 * time.Second

// Gateway serves GET /v1/realtime and owns this instance's sockets.
type Gateway struct {
	cfg      config.Config
	pool     *pgxpool.Pool
	chat     *chat.Service
	rooms    *rooms.Service
	tickets  *Tickets
	presence Presence
	broker   events.Broker
	tokens   events.Tokens
	log      events.Log
	logger   *slog.Logger
	metrics  *metrics
	node     *node
	writers  *writerPool
	upgrader websocket.Upgrader
	origins  map[string]bool

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

// Deps is what the gateway needs.
type Deps struct {
	Config config.Config
	// Pool serves the replays of resuming sockets; TailPool, a small pool of the fan-out's
	// own, its batch reads, so the fan-out never waits behind the senders for a connection.
	Pool     *pgxpool.Pool
	TailPool *pgxpool.Pool
	Chat     *chat.Service
	Rooms    *rooms.Service
	Tickets  *Tickets
	Presence Presence
	Broker   events.Broker
	Tokens   events.Tokens
	Log      events.Log // what a replay reads from a since token
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// New builds the gateway and starts its fan-out and heartbeat; they run until ctx ends.
func New(ctx context.Context, d Deps) *Gateway {
	m := newMetrics(d.Registry)
	g := &Gateway{
		cfg: d.Config, pool: d.Pool, chat: d.Chat, rooms: d.Rooms, tickets: d.Tickets, presence: d.Presence,
		broker: d.Broker, tokens: d.Tokens, log: d.Log, logger: d.Logger, metrics: m,
		node:    newNode(d.TailPool, d.Chat, d.Tokens, d.Logger, m, d.Config.WSBatchInterval),
		conns:   map[*conn]struct{}{},
		writers: newWriterPool(ctx, d.Config.WSWriterNice, d.Logger),
		origins: map[string]bool{},
	}
	d.Registry.MustRegister(queueCollector{g})
	g.node.onEpochChange = func() {
		for _, c := range g.node.all() {
			c.closeNow(CloseFullSync, "the database changed (restore or failover): start over from GET /v1/sync")
		}
	}
	for _, o := range d.Config.AllowedOrigins {
		g.origins[strings.TrimRight(strings.ToLower(o), "/")] = true
	}
	g.upgrader = websocket.Upgrader{
		// Client frames are small (pings, typing); a larger one is read in several calls.
		ReadBufferSize: 512, WriteBufferSize: 512, HandshakeTimeout: 10 * time.Second,
		// gorilla writes only its own rare control frames (1009, protocol errors): its write
		// buffer comes from the pool for those and goes back.
		WriteBufferPool: &sync.Pool{},
		// Checked before the upgrade, in Handle, to answer with a problem.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	d.Broker.Subscribe(ctx, g.node.receive)
	go g.node.run(ctx)
	go g.heartbeat(ctx)
	return g
}

func (g *Gateway) presenceTTL() time.Duration { return 2*g.cfg.WSPingInterval + g.cfg.WSPongTimeout }

func (g *Gateway) publish(n events.Notice) {
	if err := g.broker.Publish(context.Background(), n); err != nil {
		g.logger.Warn("publish notice", "kind", events.KindLabel(n.Kind), "error", err.Error())
	}
}

// allowedOrigin accepts requests without an Origin (native apps), the server's own origin,
// and the configured ones.
func (g *Gateway) allowedOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return g.origins[strings.TrimRight(strings.ToLower(origin), "/")]
}

// Handle is the echo handler of GET /v1/realtime. A bad origin, a bad ticket and a server
// shutting down are refused before the upgrade, as problems; after it only close codes
// remain, among them 4400 for a since token the server cannot use (a browser cannot read a
// refused upgrade's status, only a close code). The handler returns once the socket is live:
// net/http then frees what it held for the request, and the socket's reader goroutine is all
// that stays.
func (g *Gateway) Handle(c echo.Context) error {
	r := c.Request()
	if !g.allowedOrigin(r) {
		return apperr.New(apperr.Forbidden, "this origin may not open a WebSocket (see APP_ALLOWED_ORIGINS)")
	}
	g.mu.Lock()
	down := g.shutdown
	g.mu.Unlock()
	if down {
		return &apperr.Error{Code: apperr.Unavailable, Message: "the server is restarting; reconnect", RetryAfter: time.Second}
	}
	q := r.URL.Query()
	batch, err := batchParam(q)
	if err != nil {
		return err // before the ticket is spent: the client fixes the URL and uses it
	}
	user, session, ticket, err := g.tickets.Verify(q.Get("ticket"))
	if err != nil {
		return err
	}
	var since *events.Token
	if s := q.Get("since"); s != "" {
		tok, err := g.tokens.Decode(s)
		if err != nil {
			// Refused after the upgrade (see above), leaving the ticket unspent.
			if ws, err := g.upgrader.Upgrade(c.Response(), r, nil); err == nil {
				g.refuse(ws.NetConn(), CloseFullSync, "the since token cannot be used here: start over from GET /v1/sync")
			}
			return nil
		}
		since = &tok
	}
	// Spending the ticket and taking a place under the cap are one round trip, before the
	// upgrade: a used ticket is answered as a problem, like a forged one.
	connID := g.presence.NewConnID()
	ctx := context.WithoutCancel(r.Context())
	admitted, first, err := g.presence.Admit(ctx, user, connID, g.presenceTTL(), g.cfg.WSMaxConnsPerUser, ticket)
	switch {
	case errors.Is(err, ErrTicketUsed):
		return errBadTicket
	case err != nil:
		return fmt.Errorf("admit a socket: %w", err)
	}
	ws, err := g.upgrader.Upgrade(c.Response(), r, nil)
	if err != nil {
		if admitted {
			g.forget(user, connID)
		}
		return nil // the upgrader has answered the client
	}
	ws.SetReadLimit(g.cfg.WSMaxFrameBytes)
	nc := ws.NetConn()
	if !admitted {
		g.metrics.closes.WithLabelValues("too_many_connections").Inc()
		g.refuse(nc, CloseTooManyConns, "too many connections for this user")
		return nil
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(socketSendBuffer)
	}
	conn := &conn{g: g, ws: ws, nc: nc, raw: rawConnOf(nc), id: connID, user: user, session: session, bucket: randomBucket(), joined: make(chan struct{}), closeSent: make(chan struct{})}
	conn.batch = batch
	if !g.track(conn) {
		g.refuse(nc, CloseGoingAway, "restart: reconnect with your last token")
		g.wentAway(conn)
		return nil
	}
	go func() {
		conn.readLoop()
		g.finish(conn)
	}()
	g.node.register(conn)
	select {
	case <-conn.joined:
	case <-time.After(joinTimeout):
		g.logger.Error("realtime: the fan-out did not take a new socket in time")
		conn.closeNow(CloseServerError, "server error")
		return nil
	}
	if conn.refused != 0 {
		g.metrics.closes.WithLabelValues("session_ended").Inc()
		conn.closeNow(conn.refused, "session ended")
		return nil
	}
	if first {
		g.announce(user, g.node.roomsOf(conn), true)
	}
	if err := g.open(ctx, conn, since); err != nil {
		var ae *apperr.Error
		switch {
		case errors.As(err, &ae) && ae.Code == apperr.FullSyncRequired:
			g.metrics.closes.WithLabelValues("full_sync_required").Inc()
			conn.closeNow(CloseFullSync, "the since token cannot be used here: start over from GET /v1/sync")
		case conn.isClosing():
		default:
			g.logger.Warn("realtime: open a socket", "conn", conn.id, "error", err.Error())
			conn.closeNow(CloseServerError, "server error")
		}
		return nil
	}
	conn.start()
	return nil
}

// batchParam reads the batch query parameter: absent is false, and only the contract's
// booleans are taken.
func batchParam(q url.Values) (bool, error) {
	switch q.Get("batch") {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, &apperr.Error{Code: apperr.Invalid, Message: "batch must be true or false",
		Fields: []apperr.FieldError{{Field: "query.batch", Message: "must be true or false"}}}
}

// forget undoes the admission of a socket that never opened.
func (g *Gateway) forget(user uuid.UUID, connID string) {
	if _, err := g.presence.Disconnect(context.Background(), user, connID, 0); err != nil {
		g.logger.Warn("realtime: forget a socket that did not open", "conn", connID, "error", err.Error())
	}
}

// refuse closes a socket that never went live.
func (g *Gateway) refuse(nc net.Conn, code int, reason string) {
	_ = nc.SetWriteDeadline(time.Now().Add(closeMessageTimeout))
	_, _ = nc.Write(closeFrame(code, reason))
	_ = nc.Close()
}

func randomBucket() int {
	n, _ := rand.Int(rand.Reader, big.NewInt(heartbeatTicks))
	return int(n.Int64())
}

// track counts a socket as this instance's, unless the instance is shutting down.
func (g *Gateway) track(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutdown {
		return false
	}
	g.conns[c] = struct{}{}
	c.opened = time.Now()
	g.wg.Add(1)
	g.metrics.open.Inc()
	return true
}

// finish forgets a socket whose reader has ended: it stops counting at once (streams, the
// per-user cap, presence), while its close handshake may take a second more.
func (g *Gateway) finish(c *conn) {
	c.closeNow(CloseNormal, "")
	g.node.unregister(c)
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	g.metrics.open.Dec()
	g.metrics.lifetime.Observe(time.Since(c.opened).Seconds())
	g.wentAway(c)
	c.release()
	g.wg.Done()
}

// open writes hello, then (resuming) every event between the since token and the batch
// the socket joined the stream at, from PostgreSQL. Live frames queue meanwhile and go
// out after it (start). Resuming, hello waits for the first page of the replay: a token
// the server cannot read from closes the socket before any frame.
func (g *Gateway) open(ctx context.Context, c *conn, since *events.Token) error {
	hello := api.HelloFrame{
		Type: api.Hello, ConnectionId: c.id,
		HeartbeatIntervalMs: int(g.cfg.WSPingInterval / time.Millisecond),
		Limits: api.RealtimeLimits{
			MaxFrameBytes: int(g.cfg.WSMaxFrameBytes), MaxFramesPerSecond: g.cfg.WSFramesPerSecond,
			MaxConnectionsPerUser: g.cfg.WSMaxConnsPerUser, TypingTimeoutMs: int(typingTTL / time.Millisecond),
		},
		Token: g.tokens.Encode(c.from),
	}
	if since != nil {
		if since.Epoch != c.from.Epoch {
			return events.ErrFullSyncRequired
		}
		hello.Token = g.tokens.Encode(*since)
	}
	helloWire := wsFrame(opText, mustFrame(hello))
	if since == nil {
		return c.write(helloWire)
	}
	g.metrics.replays.Inc()
	return g.replay(ctx, c, *since, helloWire)
}

// replay writes first, then the events after tok up to the snapshot c joined the stream at,
// page by page, each frame with the token that resumes right after it.
func (g *Gateway) replay(ctx context.Context, c *conn, tok events.Token, first []byte) error {
	for {
		var frames []*frame
		var page events.Page
		err := postgres.WithSnapshot(ctx, g.pool, func(q *db.Queries) error {
			var err error
			if page, err = g.log.ReadUntil(ctx, q, c.user, tok, c.from.Since, replayPageSize); err != nil {
				return err
			}
			hydrated, err := g.chat.HydrateFor(ctx, q, c.user, uuid.Nil, page)
			if err != nil {
				return err
			}
			frames = make([]*frame, 0, len(hydrated))
			for i, e := range hydrated {
				b, err := jsonEvent(e)
				if err != nil {
					return err
				}
				frames = append(frames, eventFrame(e.Event, b, g.tokens.Encode(page.TokenAfter(i))))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if out := wires(frames, c.batch); first != nil || len(out) > 0 {
			if first != nil {
				out, first = append([][]byte{first}, out...), nil
			}
			if err := c.write(out...); err != nil {
				return err
			}
			// The server does not ping before the socket is live: a client that keeps taking
			// a long replay in is alive.
			c.extendReadDeadline()
			g.metrics.replayEvents.Add(float64(len(frames)))
			g.metrics.deliveries.Add(float64(len(frames)))
		}
		if !page.HasMore || c.isClosing() {
			return nil
		}
		tok = page.Next
	}
}

// heartbeat pings every socket once per ping interval, a bucket per tick, and refreshes the
// bucket's presence entries in one round trip; the readers' deadlines close the sockets
// that stop answering.
func (g *Gateway) heartbeat(ctx context.Context) {
	tick := time.NewTicker(max(g.cfg.WSPingInterval/heartbeatTicks, time.Millisecond))
	defer tick.Stop()
	for bucket := 0; ; bucket = (bucket + 1) % heartbeatTicks {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var socks []Socket
		g.mu.Lock()
		for c := range g.conns {
			if c.bucket == bucket {
				c.push(pingFrame)
				socks = append(socks, Socket{User: c.user, Conn: c.id})
			}
		}
		g.mu.Unlock()
		if len(socks) > 0 {
			go func() {
				rctx, cancel := context.WithTimeout(ctx, g.cfg.WSPingInterval)
				defer cancel()
				if err := g.presence.Refresh(rctx, g.presenceTTL(), socks...); err != nil {
					g.logger.Warn("presence refresh", "sockets", len(socks), "error", err.Error())
				}
			}()
		}
	}
}

// wentAway records a closed socket; after the grace period, if the user has no socket left
// anywhere, they are announced offline (a quick reconnect announces nothing).
func (g *Gateway) wentAway(c *conn) {
	ctx := context.Background()
	last, err := g.presence.Disconnect(ctx, c.user, c.id, g.cfg.WSPresenceGrace)
	if err != nil || !last {
		return
	}
	time.AfterFunc(g.cfg.WSPresenceGrace, func() {
		online, err := g.presence.Online(ctx, []uuid.UUID{c.user})
		if err != nil || online[c.user] {
			return
		}
		roomIDs, err := db.New(g.pool).MemberRoomIDs(ctx, c.user)
		if err == nil {
			g.announce(c.user, roomIDs, false)
		}
	})
}

func (g *Gateway) announce(user uuid.UUID, roomIDs []uuid.UUID, online bool) {
	if len(roomIDs) > 0 {
		g.publish(events.Notice{Kind: events.KindPresence, UserID: &user, Online: online, Rooms: roomIDs})
	}
}

// Online returns the members of a room who are online (members only).
func (g *Gateway) Online(ctx context.Context, roomID, caller uuid.UUID) ([]uuid.UUID, error) {
	q := db.New(g.pool)
	if _, err := g.rooms.RequireMember(ctx, q, roomID, caller); err != nil {
		return nil, err
	}
	members, err := q.RoomMemberIDs(ctx, roomID)
	if err != nil {
		return nil, err
	}
	online, err := g.presence.Online(ctx, members)
	if err != nil {
		return nil, err
	}
	out := []uuid.UUID{}
	for _, m := range members {
		if online[m] {
			out = append(out, m)
		}
	}
	return out, nil
}

// Shutdown closes every socket with 1001 after the frames already queued for it, and waits
// (up to ctx) for them to finish. New upgrades are refused meanwhile.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.mu.Lock()
	g.shutdown = true
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.closeAfterQueue(CloseGoingAway, "restart: reconnect with your last token")
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			c.closeNow(CloseGoingAway, "restart: reconnect with your last token")
		}
	}
}

// SessionRevoked tells every instance to close a session's sockets.
func (g *Gateway) SessionRevoked(_ context.Context, session uuid.UUID) {
	g.publish(events.Notice{Kind: events.KindSession, SessionID: &session})
}
