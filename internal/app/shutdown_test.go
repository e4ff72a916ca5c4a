package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/httpapi"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// TestShutdownDrainsBeforeTheListenerCloses: after the shutdown signal, /readyz answers
// 503 not_ready for APP_SHUTDOWN_DRAIN while the listener still accepts new connections and
// serves them, so a load balancer takes the instance out before connections are refused;
// then the server stops.
func TestShutdownDrainsBeforeTheListenerCloses(t *testing.T) {
	t.Parallel()
	const drain = 3 * time.Second
	cfg := parlortest.Config(t)
	d := drain
	cfg.ShutdownDrainSetting = &d
	logs := &parlortest.SyncBuffer{}
	logger := slog.New(httpapi.LogHandler{Handler: slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	a, err := app.New(context.Background(), cfg, logger)
	require.NoError(t, err)
	t.Cleanup(a.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	ctx, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	// Every request on a connection of its own: each one proves the listener accepts.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, map[string]any) {
		res, err := client.Get(base + path)
		require.NoError(t, err, "GET %s: the listener must still accept", path)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		var doc map[string]any
		_ = json.Unmarshal(body, &doc)
		return res.StatusCode, doc
	}
	status, _ := get("/readyz")
	require.Equal(t, http.StatusOK, status, "ready before the shutdown")

	shutdown()
	signalled := time.Now()
	draining := func() bool {
		res, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusServiceUnavailable
	}
	require.Eventually(t, draining,
		drain/2, 10*time.Millisecond, "/readyz turns 503 as soon as the drain starts")
	status, doc := get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "not_ready", doc["code"])
	status, _ = get("/healthz")
	require.Equal(t, http.StatusOK, status, "the instance is alive and serving while it drains")
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v during the drain", err)
	default:
	}

	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(drain + 10*time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	require.GreaterOrEqual(t, time.Since(signalled), drain, "the listener stays open for the whole drain")
	_, err = client.Get(base + "/healthz")
	require.Error(t, err, "the listener is closed once the drain and shutdown are over")
	require.Contains(t, logs.String(), "draining")
}
