package realtime

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the gateway, registered once per process.
type metrics struct {
	open         prometheus.Gauge
	deliveries   prometheus.Counter
	replays      prometheus.Counter
	replayEvents prometheus.Counter
	dropped      *prometheus.CounterVec
	closes       *prometheus.CounterVec
	batches      prometheus.Counter
	lag          prometheus.Histogram
	lifetime     prometheus.Histogram
}

// lagBuckets span a healthy fan-out (milliseconds) to one that has fallen behind (a minute).
var lagBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parlor_ws_open_connections", Help: "Open WebSocket connections on this instance."}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "parlor_ws_event_deliveries_total",
			Help: "Durable event frames written to sockets."}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "parlor_ws_replays_total",
			Help: "Connections that resumed from a token (replayed from PostgreSQL)."}),
		replayEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: "parlor_ws_replayed_events_total",
			Help: "Events replayed from PostgreSQL on resume."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parlor_ws_dropped_frames_total",
			Help: "Droppable frames (typing, presence, pong, ping) dropped because a connection's queue was full."}, []string{"type"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parlor_ws_closes_total",
			Help: "Connections closed by the server, by reason."}, []string{"reason"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "parlor_ws_fanout_batches_total",
			Help: "Reads of the event log by the fan-out (each delivers every event committed since the one before)."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parlor_ws_delivery_lag_seconds",
			Help: "From an event's creation in its transaction to the end of the socket write that carried it, " +
				"for the oldest event of each write of live events (replays are not counted).",
			Buckets: lagBuckets}),
		lifetime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parlor_ws_connection_duration_seconds",
			Help:    "How long WebSocket connections stayed open, from the upgrade to the close.",
			Buckets: []float64{1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600}}),
	}
	reg.MustRegister(m.open, m.deliveries, m.replays, m.replayEvents, m.dropped, m.closes, m.batches, m.lag, m.lifetime)
	return m
}

// queueCollector reports, when scraped, what the instance's sockets hold queued: the
// frames in all of them and in the deepest one (a socket near APP_WS_QUEUE_SIZE is about
// to be closed as a slow consumer).
type queueCollector struct{ g *Gateway }

var (
	queuedDesc = prometheus.NewDesc("parlor_ws_queued_frames", "Frames queued for writing, in all of this instance's sockets.", nil, nil)
	deepDesc   = prometheus.NewDesc("parlor_ws_queue_max_frames", "Frames queued for writing in this instance's deepest socket queue.", nil, nil)
)

func (q queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuedDesc
	ch <- deepDesc
}

func (q queueCollector) Collect(ch chan<- prometheus.Metric) {
	total, deepest := 0, 0
	for _, c := range q.g.node.all() {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		total += n
		deepest = max(deepest, n)
	}
	ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(deepDesc, prometheus.GaugeValue, float64(deepest))
}

// observeLag records the lag of the oldest event in a write that ended at now (a replay is
// written apart, not through the queue).
func (m *metrics) observeLag(q []*frame, now time.Time) {
	for _, f := range q {
		if f.durable && !f.event.CreatedAt.IsZero() {
			m.lag.Observe(now.Sub(f.event.CreatedAt).Seconds())
			return
		}
	}
}
