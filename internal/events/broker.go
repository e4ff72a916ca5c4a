package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Kinds of notice.
const (
	// KindEvent: an event was committed (RoomID, Seq, and UserID when it concerns a user
	// beyond the room's members: invited, kicked, banned). It carries no content: readers
	// fetch events from PostgreSQL, the source of truth.
	KindEvent = ""
	// KindTyping: UserID started (Typing) or stopped typing in RoomID. Not durable.
	KindTyping = "typing"
	// KindPresence: UserID came online (Online) or went offline; Rooms are theirs. Not durable.
	KindPresence = "presence"
	// KindSession: SessionID was revoked (logout, refresh-token reuse); its sockets close.
	KindSession = "session"
)

// Notice is what instances tell each other through the broker.
type Notice struct {
	Kind      string      `json:"k,omitempty"`
	RoomID    uuid.UUID   `json:"r,omitempty"`
	Seq       int64       `json:"s,omitempty"`
	UserID    *uuid.UUID  `json:"u,omitempty"`
	Typing    bool        `json:"t,omitempty"`
	Online    bool        `json:"o,omitempty"`
	Rooms     []uuid.UUID `json:"rs,omitempty"`
	SessionID *uuid.UUID  `json:"x,omitempty"`
}

// Broker carries notices from the instance that committed an event to every instance.
// Delivery is best effort: a lost notice delays a waiter, it never loses an event.
type Broker interface {
	Publish(ctx context.Context, n Notice) error
	// Subscribe calls fn for every notice until ctx ends.
	Subscribe(ctx context.Context, fn func(Notice))
}

// LocalBroker is a Broker within one process, for a single instance without Redis.
type LocalBroker struct {
	mu   sync.RWMutex
	subs map[int]func(Notice)
	next int
}

// NewLocalBroker returns an in-process broker.
func NewLocalBroker() *LocalBroker { return &LocalBroker{subs: map[int]func(Notice){}} }

// Publish implements Broker.
func (b *LocalBroker) Publish(_ context.Context, n Notice) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, fn := range b.subs {
		fn(n)
	}
	return nil
}

// Subscribe implements Broker.
func (b *LocalBroker) Subscribe(ctx context.Context, fn func(Notice)) {
	b.mu.Lock()
	id := b.next
	b.next++
	b.subs[id] = fn
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}()
}

// RedisBroker is a Broker shared by every instance through Redis pub/sub. Publishing is
// asynchronous: notices queue and a background sender writes whatever has queued as one
// pipeline, so under load many commits share one round trip to Redis.
type RedisBroker struct {
	client  redis.UniversalClient
	channel string
	logger  *slog.Logger
	queue   chan []byte
}

// publishQueue bounds notices waiting for Redis; beyond it Publish reports an error and the
// notice is lost (readers repair the gap from PostgreSQL).
const publishQueue = 4096

// maxPipeline bounds the notices sent in one round trip.
const maxPipeline = 256

// NewRedisBroker returns a broker publishing on prefix+"events", sending until ctx ends.
func NewRedisBroker(ctx context.Context, client redis.UniversalClient, prefix string, logger *slog.Logger) *RedisBroker {
	b := &RedisBroker{client: client, channel: prefix + "events", logger: logger, queue: make(chan []byte, publishQueue)}
	go b.send(ctx)
	return b
}

var errPublishQueueFull = errors.New("broker: publish queue full")

// Publish implements Broker.
func (b *RedisBroker) Publish(_ context.Context, n Notice) error {
	msg, err := json.Marshal(n)
	if err != nil {
		return err
	}
	select {
	case b.queue <- msg:
		return nil
	default:
		return errPublishQueueFull
	}
}

func (b *RedisBroker) send(ctx context.Context) {
	batch := make([][]byte, 0, maxPipeline)
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-b.queue:
			batch = append(batch[:0], msg)
		}
	collect:
		for len(batch) < maxPipeline {
			select {
			case msg := <-b.queue:
				batch = append(batch, msg)
			default:
				break collect
			}
		}
		pipe := b.client.Pipeline()
		for _, msg := range batch {
			pipe.Publish(ctx, b.channel, msg)
		}
		if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
			b.logger.Warn("publish notices to Redis", "notices", len(batch), "error", err.Error())
		}
	}
}

// Subscribe implements Broker.
func (b *RedisBroker) Subscribe(ctx context.Context, fn func(Notice)) {
	sub := b.client.Subscribe(ctx, b.channel)
	go func() {
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				var n Notice
				if err := json.Unmarshal([]byte(m.Payload), &n); err != nil {
					b.logger.Warn("ignoring a malformed event notice", "error", err.Error())
					continue
				}
				fn(n)
			}
		}
	}()
}

// CountingBroker counts what passes through a broker, by notice kind, for /metrics.
type CountingBroker struct {
	Broker
	published, failed, received *prometheus.CounterVec
}

// NewCountingBroker wraps b and registers its counters with reg.
func NewCountingBroker(b Broker, reg prometheus.Registerer) *CountingBroker {
	c := &CountingBroker{
		Broker: b,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parlor_broker_published_total",
			Help: "Notices handed to the broker, by kind."}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parlor_broker_publish_failures_total",
			Help: "Notices the broker refused (their readers repair from PostgreSQL), by kind."}, []string{"kind"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parlor_broker_received_total",
			Help: "Notices received from the broker, by kind."}, []string{"kind"}),
	}
	reg.MustRegister(c.published, c.failed, c.received)
	return c
}

// Publish implements Broker.
func (c *CountingBroker) Publish(ctx context.Context, n Notice) error {
	err := c.Broker.Publish(ctx, n)
	if err != nil {
		c.failed.WithLabelValues(KindLabel(n.Kind)).Inc()
	} else {
		c.published.WithLabelValues(KindLabel(n.Kind)).Inc()
	}
	return err
}

// Subscribe implements Broker.
func (c *CountingBroker) Subscribe(ctx context.Context, fn func(Notice)) {
	c.Broker.Subscribe(ctx, func(n Notice) {
		c.received.WithLabelValues(KindLabel(n.Kind)).Inc()
		fn(n)
	})
}

// KindLabel names a notice kind for metrics and logs.
func KindLabel(k string) string {
	if k == KindEvent {
		return "event"
	}
	return k
}
