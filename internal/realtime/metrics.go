package realtime

import "github.com/prometheus/client_golang/prometheus"

// metrics of the gateway, registered once per process.
type metrics struct {
	open         prometheus.Gauge
	deliveries   prometheus.Counter
	replays      prometheus.Counter
	replayEvents prometheus.Counter
	dropped      *prometheus.CounterVec
	closes       *prometheus.CounterVec
	batches      prometheus.Counter
}

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
	}
	reg.MustRegister(m.open, m.deliveries, m.replays, m.replayEvents, m.dropped, m.closes, m.batches)
	return m
}
