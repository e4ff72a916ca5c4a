package postgres

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports a pgx pool's statistics to Prometheus.
type PoolCollector struct {
	pool  *pgxpool.Pool
	descs map[string]*prometheus.Desc
}

// NewPoolCollector returns a collector for pool, its series labelled pool=name (the
// requests' pool is "main", the fan-out's own is "fanout").
func NewPoolCollector(pool *pgxpool.Pool, name string) *PoolCollector {
	d := func(metric, help string) *prometheus.Desc {
		return prometheus.NewDesc("parlor_db_pool_"+metric, help, nil, prometheus.Labels{"pool": name})
	}
	return &PoolCollector{pool: pool, descs: map[string]*prometheus.Desc{
		"max":          d("max_conns", "Maximum connections in the pool."),
		"total":        d("conns", "Connections open in the pool."),
		"acquired":     d("acquired_conns", "Connections currently in use."),
		"idle":         d("idle_conns", "Idle connections."),
		"acquires":     d("acquires_total", "Successful acquires from the pool."),
		"empty":        d("empty_acquires_total", "Acquires that had to wait for a connection."),
		"wait_seconds": d("acquire_wait_seconds_total", "Time spent waiting for a connection."),
		"canceled":     d("canceled_acquires_total", "Acquires canceled by their context."),
	}}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(k string, v float64) { ch <- prometheus.MustNewConstMetric(c.descs[k], prometheus.GaugeValue, v) }
	counter := func(k string, v float64) { ch <- prometheus.MustNewConstMetric(c.descs[k], prometheus.CounterValue, v) }
	gauge("max", float64(s.MaxConns()))
	gauge("total", float64(s.TotalConns()))
	gauge("acquired", float64(s.AcquiredConns()))
	gauge("idle", float64(s.IdleConns()))
	counter("acquires", float64(s.AcquireCount()))
	counter("empty", float64(s.EmptyAcquireCount()))
	counter("wait_seconds", s.AcquireDuration().Seconds())
	counter("canceled", float64(s.CanceledAcquireCount()))
}
