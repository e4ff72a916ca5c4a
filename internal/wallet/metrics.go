package wallet

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the wallet's ledger postings and webhook processing.
type Metrics struct {
	postings   *prometheus.CounterVec
	processed  *prometheus.CounterVec
	mismatches prometheus.Counter
}

// NewMetrics registers the wallet's metrics with reg, including gauges read from the
// database at scrape time: top-ups by state and the job queue's depth.
func NewMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *Metrics {
	m := &Metrics{
		postings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parlor_ledger_postings_total",
			Help: "Ledger transactions posted by this process, by kind (repeats of an existing key are not counted).",
		}, []string{"kind"}),
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parlor_webhook_events_processed_total",
			Help: "Payment webhook events processed by this process's workers, by outcome (ok, failed).",
		}, []string{"outcome"}),
		mismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parlor_topup_price_mismatches_total",
			Help: "Paid checkouts whose amount or currency differed from the package's price at purchase: nothing was credited and the top-up awaits review.",
		}),
	}
	reg.MustRegister(m.postings, m.processed, m.mismatches, &dbCollector{pool: pool})
	return m
}

func (m *Metrics) posted(kind string) {
	if m != nil {
		m.postings.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) priceMismatched() {
	if m != nil {
		m.mismatches.Inc()
	}
}

func (m *Metrics) eventProcessed(err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.processed.WithLabelValues(outcome).Inc()
}

var (
	topupsDesc = prometheus.NewDesc("parlor_topups", "Top-ups by state.", []string{"status"}, nil)
	queueDesc  = prometheus.NewDesc("parlor_job_queue_depth", "River jobs waiting to run (available, retryable or scheduled), by queue.", []string{"queue"}, nil)
	ageDesc    = prometheus.NewDesc("parlor_job_queue_oldest_seconds", "How long the oldest River job that is due (available or retryable, its time come) has waited, by queue; 0 when none waits.", []string{"queue"}, nil)
)

// dbCollector reads its gauges from PostgreSQL when scraped.
type dbCollector struct{ pool *pgxpool.Pool }

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- topupsDesc
	ch <- queueDesc
	ch <- ageDesc
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	collect := func(desc *prometheus.Desc, query string) {
		rows, err := c.pool.Query(ctx, query)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(desc, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var label string
			var n float64
			if err := rows.Scan(&label, &n); err != nil {
				ch <- prometheus.NewInvalidMetric(desc, err)
				return
			}
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, n, label)
		}
	}
	collect(topupsDesc, "SELECT status, count(*)::float8 FROM topups GROUP BY status")
	collect(queueDesc, `SELECT q.name, count(j.id)::float8 FROM river_queue q
		LEFT JOIN river_job j ON j.queue = q.name AND j.state IN ('available', 'retryable', 'scheduled')
		GROUP BY q.name`)
	collect(ageDesc, `SELECT q.name, COALESCE(extract(epoch FROM now() - min(j.scheduled_at)), 0)::float8 FROM river_queue q
		LEFT JOIN river_job j ON j.queue = q.name AND j.state IN ('available', 'retryable') AND j.scheduled_at <= now()
		GROUP BY q.name`)
}
