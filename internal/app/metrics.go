package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// redisPoolCollector exports the Redis client's pool statistics (go-redis keeps them; its
// own Prometheus package is not served here), as postgres.PoolCollector does for pgx.
type redisPoolCollector struct{ client redis.UniversalClient }

func redisDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("parlor_redis_pool_"+name, help, nil, nil)
}

var (
	redisConns    = redisDesc("conns", "Connections open in the Redis pool.")
	redisIdle     = redisDesc("idle_conns", "Idle connections in the Redis pool.")
	redisHits     = redisDesc("hits_total", "Commands that found a free connection in the pool.")
	redisMisses   = redisDesc("misses_total", "Commands that found no free connection and dialed or waited.")
	redisTimeouts = redisDesc("timeouts_total", "Commands that gave up waiting for a connection (pool exhausted).")
	redisWaits    = redisDesc("wait_seconds_total", "Time spent waiting for a connection.")
	redisStale    = redisDesc("stale_conns_total", "Connections removed from the pool as stale.")
)

func (redisPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{redisConns, redisIdle, redisHits, redisMisses, redisTimeouts, redisWaits, redisStale} {
		ch <- d
	}
}

func (c redisPoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.client.PoolStats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(redisConns, float64(s.TotalConns))
	gauge(redisIdle, float64(s.IdleConns))
	counter(redisHits, float64(s.Hits))
	counter(redisMisses, float64(s.Misses))
	counter(redisTimeouts, float64(s.Timeouts))
	counter(redisWaits, float64(s.WaitDurationNs)/1e9)
	counter(redisStale, float64(s.StaleConns))
}
