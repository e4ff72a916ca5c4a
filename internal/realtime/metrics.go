package realtime

import "github.com/prometheus/client_golang/prometheus"

// metrics of the gateway, registered once per process.
type metrics struct {
	open          prometheus.Gauge
	deliveries    prometheus.Counter
	replays       prometheus.Counter
	replayEvents  prometheus.Counter
	dropped       *prometheus.CounterVec
	closes        *prometheus.CounterVec
	gapRepairs    prometheus.Counter
	gapRepairRows prometheus.Counter
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
			Help: "Droppable frames (typing, presence, pong) dropped because a connection's queue was full."}, []string{"type"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parlor_ws_closes_total",
			Help: "Connections closed by the server, by reason."}, []string{"reason"}),
		gapRepairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "parlor_ws_gap_repairs_total",
			Help: "Times a seq gap in a room (a lost or late notice) was filled from PostgreSQL."}),
		gapRepairRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "parlor_ws_gap_repaired_events_total",
			Help: "Events fetched from PostgreSQL to fill seq gaps."}),
	}
	reg.MustRegister(m.open, m.deliveries, m.replays, m.replayEvents, m.dropped, m.closes, m.gapRepairs, m.gapRepairRows)
	return m
}
