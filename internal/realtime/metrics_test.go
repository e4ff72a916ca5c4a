package realtime_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// Issue 16 (item 1): the metrics listener answers an operator's questions about the
// gateway. During a fan-out the delivery-lag histogram fills and the socket queues are
// reported; a socket's life and a long-poll's wait get histograms of their own, out of the
// HTTP latency histogram, which keeps only the time it took to answer.
func TestMetricsShowDeliveryLagQueuesAndLifetimesApartFromHTTPLatency(t *testing.T) {
	t.Parallel()
	s := parlortest.Start(t, parlortest.Config(t))
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	room := createRoom(t, ann, "metrics")
	join(t, bob, room)

	before := gwMetrics(t, s)
	require.Equal(t, float64(0), gwMetric(t, before, "parlor_ws_delivery_lag_seconds_count"))
	require.Equal(t, float64(0), gwMetric(t, before, "parlor_ws_queued_frames"), "no socket, nothing queued")

	c := gwConnect(t, s, bob, "")
	c.hello()
	opened := time.Now()
	const n = 5
	for i := range n {
		send(t, ann.Client, room, "hello "+string(rune('a'+i)))
	}
	c.events(n, 10*time.Second)

	// An answer that does not wait, then a long-poll that waits 300 ms for nothing.
	res, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
	wait := 300
	res, err = bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &res.JSON200.NextToken, TimeoutMs: &wait})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))

	page := gwMetrics(t, s)
	lagCount := gwMetric(t, page, "parlor_ws_delivery_lag_seconds_count")
	require.GreaterOrEqual(t, lagCount, float64(1), "each write of live events records its oldest event's lag")
	require.LessOrEqual(t, lagCount, float64(n))
	require.Positive(t, gwMetric(t, page, "parlor_ws_delivery_lag_seconds_sum"))
	require.Equal(t, lagCount, gwMetric(t, page, `parlor_ws_delivery_lag_seconds_bucket{le="+Inf"}`))
	require.GreaterOrEqual(t, gwMetric(t, page, "parlor_ws_queued_frames"), float64(0))
	require.GreaterOrEqual(t, gwMetric(t, page, "parlor_ws_queue_max_frames"), float64(0))

	require.Equal(t, float64(1), gwMetric(t, page, "parlor_sync_long_poll_duration_seconds_count"))
	require.GreaterOrEqual(t, gwMetric(t, page, "parlor_sync_long_poll_duration_seconds_sum"), 0.3)
	require.Equal(t, float64(1), gwMetric(t, page, `parlor_http_request_duration_seconds_count{method="GET",route="/v1/sync"}`),
		"the HTTP latency histogram has the answer that did not wait, not the long-poll")
	require.Less(t, gwMetric(t, page, `parlor_http_request_duration_seconds_sum{method="GET",route="/v1/sync"}`), 0.3)

	// The socket's life is the gateway's to record; the HTTP histogram holds its handshake.
	require.Equal(t, float64(0), gwMetric(t, page, "parlor_ws_connection_duration_seconds_count"), "the socket is still open")
	openFor := time.Since(opened)
	require.NoError(t, c.Conn.Close())
	require.Eventually(t, func() bool {
		return gwMetric(t, gwMetrics(t, s), "parlor_ws_connection_duration_seconds_count") == 1
	}, 5*time.Second, 10*time.Millisecond, "the closed socket's life is recorded")
	page = gwMetrics(t, s)
	life := gwMetric(t, page, "parlor_ws_connection_duration_seconds_sum")
	require.GreaterOrEqual(t, life, openFor.Seconds(), "from the upgrade (before hello) to the close (after the client's)")
	handshake := gwMetric(t, page, `parlor_http_request_duration_seconds_sum{method="GET",route="/v1/realtime"}`)
	require.Positive(t, handshake)
	require.Less(t, handshake, life, "the HTTP histogram holds the handshake, not the socket's life")

	// The stores' pools and the job queue.
	require.Positive(t, gwMetric(t, page, "parlor_redis_pool_conns"))
	require.GreaterOrEqual(t, gwMetric(t, page, "parlor_redis_pool_hits_total"), float64(1))
	require.GreaterOrEqual(t, gwMetric(t, page, `parlor_job_queue_oldest_seconds{queue="default"}`), float64(0))
	require.Positive(t, gwMetric(t, page, `parlor_db_pool_max_conns{pool="main"}`))
	require.Positive(t, gwMetric(t, page, `parlor_db_pool_max_conns{pool="fanout"}`), "the fan-out's own pool")
}
