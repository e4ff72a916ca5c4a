package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apiconv"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
)

const (
	// tailEvery is how often the fan-out reads the log without being told to: a notice the
	// broker lost (a Redis restart, a full inbox) delays an event by at most this much, and
	// nothing depends on a later event to repair it.
	tailEvery = time.Second
	// revokedEvery is how often the fan-out looks for sessions revoked in the database, in
	// case the broker lost the notice; revokedWindow is how far back it looks.
	revokedEvery  = 2 * time.Second
	revokedWindow = 30 * time.Second
	// retryAfterError paces the fan-out while PostgreSQL fails.
	retryAfterError = 200 * time.Millisecond
)

// node fans the event log out to this instance's sockets. One goroutine reads the log in
// batches, on a connection pool of its own (it never waits behind the senders): each batch
// is every room's events committed since the previous batch's snapshot and visible in its
// own, read at once in (room, seq) order. A notice from the broker only says "read now"; a
// timer reads anyway, so a lost notice costs a second at most. Each event is serialized,
// given its resume token and framed once, and the same bytes are queued to every socket it
// goes to.
//
// Sockets join the stream between batches. A new socket waits for the next batch, whose
// transaction also reads its user's rooms and checks its session; from then on it receives
// every batch after that snapshot, and replays what came before it from PostgreSQL. A
// user's own membership events move their sockets' subscriptions in stream order.
type node struct {
	pool    *pgxpool.Pool
	chat    *chat.Service
	tokens  events.Tokens
	logger  *slog.Logger
	metrics *metrics
	wake    chan struct{}
	// interval is the least time between two reads while events keep coming.
	interval time.Duration
	// onEpochChange closes every socket when the database's epoch changes (a failover).
	onEpochChange func()

	mu       sync.Mutex
	rooms    map[uuid.UUID]map[*conn]struct{} // live subscribers by room
	users    map[uuid.UUID]map[*conn]struct{} // sockets by user, live or waiting
	sessions map[uuid.UUID]map[*conn]struct{}
	waiting  []*conn // sockets that join the stream at the next batch

	// Owned by the run goroutine.
	pos         events.Token // the end of the last batch fanned out
	started     bool
	batchNo     uint64
	lastRevoked time.Time
}

func newNode(pool *pgxpool.Pool, chatSvc *chat.Service, tokens events.Tokens, logger *slog.Logger, m *metrics, interval time.Duration) *node {
	return &node{
		pool: pool, chat: chatSvc, tokens: tokens, logger: logger, metrics: m, wake: make(chan struct{}, 1), interval: interval,
		rooms: map[uuid.UUID]map[*conn]struct{}{}, users: map[uuid.UUID]map[*conn]struct{}{}, sessions: map[uuid.UUID]map[*conn]struct{}{},
	}
}

// kick asks for a batch now.
func (n *node) kick() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// receive is the broker's callback; it must not block.
func (n *node) receive(no events.Notice) {
	switch no.Kind {
	case events.KindEvent:
		n.kick()
	case events.KindTyping:
		n.typing(no)
	case events.KindPresence:
		n.presence(no)
	case events.KindSession:
		if no.SessionID != nil {
			n.closeSession(*no.SessionID)
		}
	}
}

func (n *node) run(ctx context.Context) {
	tick := time.NewTicker(tailEvery)
	defer tick.Stop()
	for {
		if err := n.batch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			n.logger.Error("realtime: read the event log", "error", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryAfterError):
			}
			continue
		}
		read := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-tick.C:
		}
		// Under sustained load, gather what commits meanwhile into the next batch; sockets
		// waiting to join the stream do not wait for that.
		if wait := n.interval - time.Since(read); wait > 0 && !n.hasWaiting() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// register adds a socket that joins the stream at the next batch; c.joined is closed then.
func (n *node) register(c *conn) {
	n.mu.Lock()
	addConn(n.users, c.user, c)
	addConn(n.sessions, c.session, c)
	n.waiting = append(n.waiting, c)
	n.mu.Unlock()
	n.kick()
}

func (n *node) hasWaiting() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiting) > 0
}

// unregister removes c everywhere.
func (n *node) unregister(c *conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	removeConn(n.users, c.user, c)
	removeConn(n.sessions, c.session, c)
	for _, r := range c.rooms {
		removeConn(n.rooms, r, c)
	}
	c.rooms, c.live, c.gone = nil, false, true
}

// subscribed reports whether c receives room's live stream.
func (n *node) subscribed(c *conn, room uuid.UUID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.rooms[room][c]
	return ok
}

// roomsOf returns a copy of the rooms c follows.
func (n *node) roomsOf(c *conn) []uuid.UUID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]uuid.UUID(nil), c.rooms...)
}

func (n *node) subscribeLocked(c *conn, room uuid.UUID) {
	if _, ok := n.rooms[room][c]; ok {
		return
	}
	addConn(n.rooms, room, c)
	c.rooms = append(c.rooms, room)
}

func (n *node) unsubscribeLocked(c *conn, room uuid.UUID) {
	removeConn(n.rooms, room, c)
	for i, r := range c.rooms {
		if r == room {
			c.rooms[i] = c.rooms[len(c.rooms)-1]
			c.rooms = c.rooms[:len(c.rooms)-1]
			break
		}
	}
}

// joining is what one batch learns about the sockets that join the stream with it.
type joining struct {
	conns    []*conn
	rooms    map[uuid.UUID][]uuid.UUID // by user
	sessions map[uuid.UUID]bool        // live ones
}

// batch reads the next batch of the log and fans it out, and lets the waiting sockets join.
func (n *node) batch(ctx context.Context) error {
	n.mu.Lock()
	j := joining{conns: n.waiting}
	n.waiting = nil
	n.mu.Unlock()
	checkRevoked := time.Since(n.lastRevoked) >= revokedEvery

	var (
		b       events.Batch
		frames  []*frame
		revoked []uuid.UUID
	)
	err := postgres.WithSnapshot(ctx, n.pool, func(q *db.Queries) error {
		var err error
		if n.started {
			b, err = events.Tail(ctx, q, n.pos)
		} else {
			var now events.Token
			now, err = events.Current(ctx, q)
			b = events.Batch{Start: now, End: now}
		}
		if err != nil {
			return err
		}
		n.batchNo++
		if frames, err = n.render(ctx, q, &b, n.batchNo); err != nil {
			return err
		}
		if len(j.conns) > 0 {
			if err := j.load(ctx, q); err != nil {
				return err
			}
		}
		if checkRevoked {
			revoked, err = q.RecentlyRevokedSessions(ctx, revokedWindow.Seconds())
		}
		return err
	})
	if err != nil {
		n.mu.Lock()
		n.waiting = append(j.conns, n.waiting...)
		n.mu.Unlock()
		return err
	}
	if checkRevoked {
		n.lastRevoked = time.Now()
	}
	epochChanged := n.started && b.End.Epoch != n.pos.Epoch
	n.pos, n.started = b.End, true
	n.metrics.batches.Inc()

	n.mu.Lock()
	var touched []*conn
	for _, f := range frames {
		touched = n.fanOutLocked(f, touched)
	}
	for _, c := range j.conns {
		if c.gone {
			continue
		}
		if !j.sessions[c.session] {
			c.refused = CloseSessionEnded
			continue
		}
		for _, r := range j.rooms[c.user] {
			n.subscribeLocked(c, r)
		}
		c.live, c.from = true, b.End
	}
	n.mu.Unlock()
	// Each socket's writer wakes once for the whole batch and writes it in one go.
	for _, c := range touched {
		c.wake()
	}
	for _, c := range j.conns {
		close(c.joined)
	}
	for _, s := range revoked {
		n.closeSession(s)
	}
	if epochChanged && n.onEpochChange != nil {
		n.logger.Warn("realtime: the database's epoch changed (a failover or a restore): closing every socket with 4400")
		n.onEpochChange()
	}
	return nil
}

func (j *joining) load(ctx context.Context, q *db.Queries) error {
	users := make([]uuid.UUID, 0, len(j.conns))
	sessions := make([]uuid.UUID, 0, len(j.conns))
	for _, c := range j.conns {
		users = append(users, c.user)
		sessions = append(sessions, c.session)
	}
	rows, err := q.MembershipsOf(ctx, users)
	if err != nil {
		return err
	}
	j.rooms = make(map[uuid.UUID][]uuid.UUID, len(users))
	for _, r := range rows {
		j.rooms[r.UserID] = append(j.rooms[r.UserID], r.RoomID)
	}
	live, err := q.LiveSessions(ctx, sessions)
	if err != nil {
		return err
	}
	j.sessions = make(map[uuid.UUID]bool, len(live))
	for _, s := range live {
		j.sessions[s] = true
	}
	return nil
}

// fanOutLocked queues one event to its room's subscribers and to the sockets of the user it
// concerns (an invitation, a kick: they may not follow the room), then moves that user's
// subscriptions when the event is about their own membership. It adds the sockets it queued
// to for the first time in this batch to touched.
func (n *node) fanOutLocked(f *frame, touched []*conn) []*conn {
	e := f.event
	queue := func(c *conn) {
		if c.enqueue(f) && c.touched != f.batch {
			c.touched = f.batch
			touched = append(touched, c)
		}
	}
	subs := n.rooms[e.RoomID]
	for c := range subs {
		queue(c)
	}
	if e.Type == events.RoomDeleted {
		// The room's last event: nobody is a member any more.
		for c := range subs {
			n.unsubscribeLocked(c, e.RoomID)
		}
	}
	if e.UserID == nil {
		return touched
	}
	for c := range n.users[*e.UserID] {
		if !c.live {
			continue
		}
		if _, sub := subs[c]; !sub {
			queue(c)
		}
		switch e.Type {
		case events.MemberJoined:
			n.subscribeLocked(c, e.RoomID)
		case events.MemberLeft, events.MemberKicked, events.MemberBanned:
			n.unsubscribeLocked(c, e.RoomID)
		}
	}
	return touched
}

// render serializes the batch's events that go to a socket here, each once as everyone sees
// it, with the token that resumes after it, framed for the wire. An event followed in the
// batch by someone's removal from its room shows the room as of that removal: the removed
// user gets it, and must not see in it what came after (the others get what came after).
func (n *node) render(ctx context.Context, q *db.Queries, b *events.Batch, batchNo uint64) ([]*frame, error) {
	wanted := n.wanted(b.Events)
	if len(wanted) == 0 {
		return nil, nil
	}
	hydrated, err := n.chat.HydrateAsOf(ctx, q, uuid.Nil, wanted, events.RemovalBounds(wanted))
	if err != nil {
		return nil, err
	}
	out := make([]*frame, 0, len(hydrated))
	for _, e := range hydrated {
		ev, err := jsonEvent(e)
		if err != nil {
			return nil, err
		}
		f := eventFrame(e.Event, ev, n.tokens.Encode(b.TokenAfter(e.Event)))
		f.batch = batchNo
		out = append(out, f)
	}
	return out, nil
}

// wanted keeps the events some socket here receives: those of rooms with subscribers, those
// about a user with sockets here, and a room's events after such a user joins it.
func (n *node) wanted(evs []events.Event) []events.Event {
	if len(evs) == 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var joined map[uuid.UUID]bool
	out := evs[:0:0]
	for _, e := range evs {
		keep := len(n.rooms[e.RoomID]) > 0 || joined[e.RoomID]
		if e.UserID != nil && len(n.users[*e.UserID]) > 0 {
			keep = true
			if e.Type == events.MemberJoined {
				if joined == nil {
					joined = map[uuid.UUID]bool{}
				}
				joined[e.RoomID] = true
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// jsonEvent serializes an event as the contract's RoomEvent, as everyone sees it.
func jsonEvent(e chat.Event) ([]byte, error) { return json.Marshal(apiconv.Event(e)) }

func (n *node) typing(no events.Notice) {
	if no.UserID == nil {
		return
	}
	f := droppable("typing", api.TypingFrame{Type: api.Typing, RoomId: no.RoomID, UserId: *no.UserID, Typing: no.Typing, ExpiresInMs: typingTTLms(no.Typing)})
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.rooms[no.RoomID] {
		if c.user != *no.UserID {
			c.push(f)
		}
	}
}

func (n *node) presence(no events.Notice) {
	if no.UserID == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range no.Rooms {
		subs := n.rooms[r]
		if len(subs) == 0 {
			continue
		}
		f := droppable("presence", api.PresenceFrame{Type: api.PresenceFrameTypePresence, RoomId: r, UserId: *no.UserID, Online: no.Online})
		for c := range subs {
			if c.user != *no.UserID {
				c.push(f)
			}
		}
	}
}

// closeSession closes a session's sockets here. It never waits for a socket: a client that
// stopped reading must not hold up anyone else.
func (n *node) closeSession(session uuid.UUID) {
	n.mu.Lock()
	conns := make([]*conn, 0, len(n.sessions[session]))
	for c := range n.sessions[session] {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		n.metrics.closes.WithLabelValues("session_ended").Inc()
		c.closeNow(CloseSessionEnded, "session ended")
	}
}

// all returns every socket here, live or waiting.
func (n *node) all() []*conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*conn
	for _, set := range n.users {
		for c := range set {
			out = append(out, c)
		}
	}
	return out
}

func addConn(index map[uuid.UUID]map[*conn]struct{}, key uuid.UUID, c *conn) {
	set, ok := index[key]
	if !ok {
		set = map[*conn]struct{}{}
		index[key] = set
	}
	set[c] = struct{}{}
}

func removeConn(index map[uuid.UUID]map[*conn]struct{}, key uuid.UUID, c *conn) {
	if set, ok := index[key]; ok {
		delete(set, c)
		if len(set) == 0 {
			delete(index, key)
		}
	}
}
