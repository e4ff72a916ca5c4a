package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apiconv"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// node fans notices out to this instance's sockets. It processes notices one at a time, so
// each room's events go out in order; for every event it reads the event from PostgreSQL
// once and serializes it once, whatever the number of subscribers. A room's stream knows the
// last seq it delivered: a notice further ahead (an earlier notice lost or late) makes the
// node fetch the whole missing range first, so subscribers see no gap.
type node struct {
	pool    *pgxpool.Pool
	chat    *chat.Service
	logger  *slog.Logger
	metrics *metrics
	inbox   chan events.Notice

	mu       sync.Mutex
	rooms    map[uuid.UUID]*roomStream
	users    map[uuid.UUID]map[*conn]struct{}
	sessions map[uuid.UUID]map[*conn]struct{}
}

type roomStream struct {
	subs    map[*conn]struct{}
	lastSeq int64 // 0: nothing delivered through this node yet
}

// inboxSize bounds notices waiting for the node; beyond it notices are dropped, which the
// seq-gap repair absorbs (a dropped notice is like a lost pub/sub message).
const inboxSize = 4096

func newNode(pool *pgxpool.Pool, chatSvc *chat.Service, logger *slog.Logger, m *metrics) *node {
	return &node{
		pool: pool, chat: chatSvc, logger: logger, metrics: m, inbox: make(chan events.Notice, inboxSize),
		rooms: map[uuid.UUID]*roomStream{}, users: map[uuid.UUID]map[*conn]struct{}{}, sessions: map[uuid.UUID]map[*conn]struct{}{},
	}
}

// receive is the broker's callback: it must not block.
func (n *node) receive(no events.Notice) {
	select {
	case n.inbox <- no:
	default:
		n.logger.Warn("realtime inbox full: dropping a notice; seq gaps will be repaired", "kind", events.KindLabel(no.Kind))
	}
}

func (n *node) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case no := <-n.inbox:
			switch no.Kind {
			case events.KindEvent:
				n.event(ctx, no)
			case events.KindTyping:
				n.typing(no)
			case events.KindPresence:
				n.presence(no)
			case events.KindSession:
				n.session(no)
			}
		}
	}
}

// admit counts c as one of its user's sockets (and its session's), unless the user already
// has max here: the check and the count are one step, so concurrent handshakes can't
// overshoot the cap.
func (n *node) admit(c *conn, max int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.users[c.user]) >= max {
		return false
	}
	addConn(n.users, c.user, c)
	addConn(n.sessions, c.session, c)
	return true
}

// subscribeAll subscribes c to its rooms.
func (n *node) subscribeAll(c *conn, rooms []uuid.UUID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range rooms {
		n.subscribeLocked(c, r)
	}
}

// unregister removes c everywhere.
func (n *node) unregister(c *conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	removeConn(n.users, c.user, c)
	removeConn(n.sessions, c.session, c)
	for r, rs := range n.rooms {
		delete(rs.subs, c)
		if len(rs.subs) == 0 {
			delete(n.rooms, r)
		}
	}
}

func (n *node) subscribe(c *conn, room uuid.UUID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.subscribeLocked(c, room)
}

func (n *node) subscribeLocked(c *conn, room uuid.UUID) {
	rs, ok := n.rooms[room]
	if !ok {
		rs = &roomStream{subs: map[*conn]struct{}{}}
		n.rooms[room] = rs
	}
	rs.subs[c] = struct{}{}
}

func (n *node) unsubscribe(c *conn, room uuid.UUID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if rs, ok := n.rooms[room]; ok {
		delete(rs.subs, c)
		if len(rs.subs) == 0 {
			delete(n.rooms, room)
		}
	}
}

// event delivers the events of a room up to the notice's seq that this node has not
// delivered yet, to the room's subscribers and to the sockets of the user it concerns.
func (n *node) event(ctx context.Context, no events.Notice) {
	n.mu.Lock()
	rs := n.rooms[no.RoomID]
	concerned := no.UserID != nil && len(n.users[*no.UserID]) > 0
	from := no.Seq
	if rs != nil && rs.lastSeq > 0 {
		if no.Seq <= rs.lastSeq {
			n.mu.Unlock()
			return // delivered already (a late notice, or a range we repaired)
		}
		from = rs.lastSeq + 1
	}
	n.mu.Unlock()
	if rs == nil && !concerned {
		return
	}
	frames, err := n.render(ctx, no.RoomID, from, no.Seq)
	if err != nil {
		n.logger.Error("realtime: read events", "room_id", no.RoomID, "error", err.Error())
		return
	}
	if len(frames) > 1 {
		n.metrics.gapRepairs.Inc()
		n.metrics.gapRepairRows.Add(float64(len(frames) - 1))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rs = n.rooms[no.RoomID]
	for i := range frames {
		if seq := frames[i].event.Seq; rs != nil && seq > rs.lastSeq {
			rs.lastSeq = seq
		}
		// One shared frame for every socket: the room's subscribers, then the sockets of the
		// user the event is about that are not subscribed (yet, or any more).
		f := &frames[i]
		if rs != nil {
			for c := range rs.subs {
				c.enqueueEvent(f)
			}
		}
		if u := f.event.UserID; u != nil {
			for c := range n.users[*u] {
				if rs == nil {
					c.enqueueEvent(f)
				} else if _, sub := rs.subs[c]; !sub {
					c.enqueueEvent(f)
				}
			}
		}
	}
}

// eventFrame is one event, serialized once for every subscriber.
type eventFrame struct {
	event events.Event
	json  []byte // the api.RoomEvent
}

// render reads a room's events from..to and serializes each once, as everyone sees it.
func (n *node) render(ctx context.Context, room uuid.UUID, from, to int64) ([]eventFrame, error) {
	var out []eventFrame
	err := postgres.WithSnapshot(ctx, n.pool, func(q *db.Queries) error {
		evs, err := events.Range(ctx, q, room, from, to)
		if err != nil {
			return err
		}
		out, err = serialize(ctx, n.chat, q, evs)
		return err
	})
	return out, err
}

// serialize hydrates events as everyone sees them and serializes each once.
func serialize(ctx context.Context, chatSvc *chat.Service, q *db.Queries, evs []events.Event) ([]eventFrame, error) {
	hydrated, err := chatSvc.Hydrate(ctx, q, uuid.Nil, evs)
	if err != nil {
		return nil, err
	}
	out := make([]eventFrame, 0, len(hydrated))
	for _, e := range hydrated {
		b, err := json.Marshal(apiconv.Event(e))
		if err != nil {
			return nil, err
		}
		out = append(out, eventFrame{event: e.Event, json: b})
	}
	return out, nil
}

func (n *node) typing(no events.Notice) {
	if no.UserID == nil {
		return
	}
	frame := mustFrame(api.TypingFrame{Type: api.Typing, RoomId: no.RoomID, UserId: *no.UserID, Typing: no.Typing, ExpiresInMs: typingTTLms(no.Typing)})
	n.mu.Lock()
	defer n.mu.Unlock()
	if rs, ok := n.rooms[no.RoomID]; ok {
		for c := range rs.subs {
			if c.user != *no.UserID {
				c.enqueueDroppable("typing", frame)
			}
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
		rs, ok := n.rooms[r]
		if !ok {
			continue
		}
		frame := mustFrame(api.PresenceFrame{Type: api.PresenceFrameTypePresence, RoomId: r, UserId: *no.UserID, Online: no.Online})
		for c := range rs.subs {
			if c.user != *no.UserID {
				c.enqueueDroppable("presence", frame)
			}
		}
	}
}

func (n *node) session(no events.Notice) {
	if no.SessionID == nil {
		return
	}
	n.mu.Lock()
	conns := make([]*conn, 0, len(n.sessions[*no.SessionID]))
	for c := range n.sessions[*no.SessionID] {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		c.closeNow(CloseSessionEnded, "session ended")
	}
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

func mustFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own frame types always encode
	}
	return b
}
