// Package realtime is the WebSocket gateway: ticket-authenticated sockets that carry every
// event of a user's rooms live and in order, resume from a token without gap or duplicate,
// and carry typing and presence. PostgreSQL stays the source of truth: the broker only says
// "room R has seq S"; each instance reads the event once and fans it out.
package realtime

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
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

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/rooms"
)

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
	logger   *slog.Logger
	metrics  *metrics
	node     *node
	upgrader websocket.Upgrader
	origins  map[string]bool

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

// Deps is what the gateway needs.
type Deps struct {
	Config   config.Config
	Pool     *pgxpool.Pool
	Chat     *chat.Service
	Rooms    *rooms.Service
	Tickets  *Tickets
	Presence Presence
	Broker   events.Broker
	Tokens   events.Tokens
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// New builds the gateway and starts its fan-out; it runs until ctx ends.
func New(ctx context.Context, d Deps) *Gateway {
	m := newMetrics(d.Registry)
	g := &Gateway{
		cfg: d.Config, pool: d.Pool, chat: d.Chat, rooms: d.Rooms, tickets: d.Tickets, presence: d.Presence,
		broker: d.Broker, tokens: d.Tokens, logger: d.Logger, metrics: m,
		node:    newNode(d.Pool, d.Chat, d.Logger, m),
		conns:   map[*conn]struct{}{},
		origins: map[string]bool{},
	}
	for _, o := range d.Config.AllowedOrigins {
		g.origins[strings.TrimRight(strings.ToLower(o), "/")] = true
	}
	g.upgrader = websocket.Upgrader{
		ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: 10 * time.Second,
		// Write buffers go back to the pool between writes: idle sockets hold none.
		WriteBufferPool: &sync.Pool{},
		// Checked before the upgrade, in ServeHTTP, to answer with a problem.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	d.Broker.Subscribe(ctx, g.node.receive)
	go g.node.run(ctx)
	return g
}

func (g *Gateway) presenceTTL() time.Duration { return 2*g.cfg.WSPingInterval + g.cfg.WSPongTimeout }

func (g *Gateway) publish(ctx context.Context, n events.Notice) {
	if err := g.broker.Publish(context.WithoutCancel(ctx), n); err != nil {
		g.logger.WarnContext(ctx, "publish notice", "kind", events.KindLabel(n.Kind), "error", err.Error())
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

// Handle is the echo handler of GET /v1/realtime. Refusals happen before the upgrade, as
// problems; afterwards only close codes remain.
func (g *Gateway) Handle(c echo.Context) error {
	r := c.Request()
	if !g.allowedOrigin(r) {
		return apperr.New(apperr.Forbidden, "this origin may not open a WebSocket (see APP_ALLOWED_ORIGINS)")
	}
	q := r.URL.Query()
	var since *events.Token
	if s := q.Get("since"); s != "" {
		if len(s) > 8192 {
			return apperr.New(apperr.Invalid, "since is too long")
		}
		tok, err := g.tokens.Decode(s)
		if err != nil {
			return err
		}
		since = &tok
	}
	// Refuse before using the ticket up, so the client can use it elsewhere.
	g.mu.Lock()
	down := g.shutdown
	g.mu.Unlock()
	if down {
		return &apperr.Error{Code: apperr.Unavailable, Message: "the server is restarting; reconnect", RetryAfter: time.Second}
	}
	user, session, err := g.tickets.Redeem(r.Context(), q.Get("ticket"))
	if err != nil {
		return err
	}
	ws, err := g.upgrader.Upgrade(c.Response(), r, nil)
	if err != nil {
		return nil // the upgrader has answered the client
	}
	ws.SetReadLimit(g.cfg.WSMaxFrameBytes)
	if tc, ok := ws.UnderlyingConn().(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(socketSendBuffer)
	}
	conn := &conn{
		g: g, ws: ws, id: newConnID(), user: user, session: session,
		queue: newOutbox(g.cfg.WSQueueSize), lastSeq: map[uuid.UUID]int64{},
		rooms: map[uuid.UUID]bool{}, done: make(chan struct{}), kill: make(chan item, 1),
	}
	if !g.node.admit(conn, g.cfg.WSMaxConnsPerUser) {
		g.metrics.closes.WithLabelValues("too_many_connections").Inc()
		conn.closeNow(CloseTooManyConns, "too many connections for this user")
		return nil
	}
	g.serve(conn, since)
	return nil
}

func newConnID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "c_" + base64.RawURLEncoding.EncodeToString(b)
}

// serve runs a connection to its end. It returns when the socket closes.
func (g *Gateway) serve(c *conn, since *events.Token) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.mu.Unlock()
	g.metrics.open.Inc()
	defer func() {
		g.node.unregister(c)
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
		g.metrics.open.Dec()
		g.wentAway(c)
		g.wg.Done()
	}()

	// Subscribe before reading anything, so live events that commit during the replay are
	// queued (and de-duplicated by seq afterwards) rather than missed.
	roomIDs, err := db.New(g.pool).MemberRoomIDs(ctx, c.user)
	if err != nil {
		g.logger.Error("realtime: load rooms", "error", err.Error())
		c.closeNow(CloseServerError, "server error")
		return
	}
	g.node.subscribeAll(c, roomIDs)
	g.cameOnline(ctx, c)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_ = c.readLoop(ctx)
		c.closeNow(websocket.CloseNormalClosure, "")
	}()
	if err := c.writeLoop(ctx, since); err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			g.logger.Warn("realtime: connection failed", "conn", c.id, "error", err.Error())
			c.closeNow(CloseServerError, "server error")
		}
	}
	c.closeNow(websocket.CloseNormalClosure, "")
	<-readDone
}

func (g *Gateway) cameOnline(ctx context.Context, c *conn) {
	first, err := g.presence.Connect(ctx, c.user, c.id, g.presenceTTL())
	if err != nil {
		g.logger.Warn("presence connect", "error", err.Error())
		return
	}
	if first {
		g.announce(ctx, c.user, true)
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
		if err == nil && !online[c.user] {
			g.announce(ctx, c.user, false)
		}
	})
}

func (g *Gateway) announce(ctx context.Context, user uuid.UUID, online bool) {
	roomIDs, err := db.New(g.pool).MemberRoomIDs(ctx, user)
	if err != nil || len(roomIDs) == 0 {
		return
	}
	g.publish(ctx, events.Notice{Kind: events.KindPresence, UserID: &user, Online: online, Rooms: roomIDs})
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
func (g *Gateway) SessionRevoked(ctx context.Context, session uuid.UUID) {
	g.publish(ctx, events.Notice{Kind: events.KindSession, SessionID: &session})
}
