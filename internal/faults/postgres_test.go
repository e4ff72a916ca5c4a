package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

var ctx = context.Background()

// outcomes tallies what clients saw: statuses, and the problems of every 5xx.
type outcomes struct {
	mu       sync.Mutex
	statuses map[int]int
	bad      []string // 5xx answers that are not a 503 unavailable problem with Retry-After
	acked    []uuid.UUID
}

func (o *outcomes) record(what string, res *http.Response, body []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.statuses[res.StatusCode]++
	if res.StatusCode < 500 {
		return
	}
	var p apiclient.Problem
	_ = json.Unmarshal(body, &p)
	if res.StatusCode != http.StatusServiceUnavailable || p.Code != "unavailable" || res.Header.Get("Retry-After") == "" ||
		res.Header.Get("Content-Type") != "application/problem+json" {
		o.bad = append(o.bad, fmt.Sprintf("%s: %d %q Retry-After=%q %s", what, res.StatusCode, p.Code, res.Header.Get("Retry-After"), body))
	}
}

// startOnOwnCluster runs Parlor on a PostgreSQL of the test's own, which the test may stop
// and restart.
func startOnOwnCluster(t *testing.T) (*pgtest.Cluster, *parlortest.Server) {
	t.Helper()
	db := pgtest.StartCluster(t)
	db.CreateDatabase(t, "parlor")
	cfg := parlortest.Config(t)
	migrate := true
	cfg.DBURL, cfg.DBMigrateOnStart = db.URL("parlor"), &migrate
	return db, parlortest.Start(t, cfg)
}

// Issue 12, hole 6: with PostgreSQL down, every request that needs it is a 503 `unavailable`
// problem with Retry-After (it was a 500 `internal`), Parlor recovers by itself when the
// database comes back, and every message it acknowledged is stored.
func TestAPostgreSQLOutageIsA503AndLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	db, s := startOnOwnCluster(t)
	ann := s.Register(t, "ann")
	room := parlortest.CreateRoom(t, ann, "outage", apiclient.VisibilityPublic).Id

	o := &outcomes{statuses: map[int]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	paced := func(work func()) {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				work()
			}
		}
	}
	for range 4 { // four steady senders
		wg.Add(1)
		go paced(func() {
			res, err := ann.Client.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "steady"})
			if err != nil {
				return // the client gave up on its own (none of our doing); nothing was acknowledged
			}
			o.record("POST …/messages", res.HTTPResponse, res.Body)
			if res.StatusCode() == http.StatusCreated {
				o.mu.Lock()
				o.acked = append(o.acked, res.JSON201.Id)
				o.mu.Unlock()
			}
		})
	}
	wg.Add(1)
	go paced(func() { // and a reader
		res, err := ann.Client.ListMessagesWithResponse(ctx, room, nil)
		if err == nil {
			o.record("GET …/messages", res.HTTPResponse, res.Body)
		}
	})

	time.Sleep(time.Second)
	db.Stop(t)
	time.Sleep(4 * time.Second)
	ready, err := s.Client.GetReadyWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, ready.StatusCode(), "/readyz says the database is down")
	o.mu.Lock()
	during := o.statuses[http.StatusServiceUnavailable]
	o.mu.Unlock()
	db.Restart(t)

	// Parlor recovers without a restart: sends succeed again within seconds.
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := ann.Client.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "back"})
		require.NoError(t, err)
		if res.StatusCode() == http.StatusCreated {
			break
		}
		require.True(t, time.Now().Before(deadline), "sends still fail 20 s after PostgreSQL came back: %d %s", res.StatusCode(), res.Body)
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("answers by status: %v; %d messages acknowledged", o.statuses, len(o.acked))
	require.Positive(t, during, "the outage was seen as 503s")
	require.Empty(t, o.bad, "every 5xx is a 503 unavailable problem with Retry-After")
	var stored int
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM messages WHERE id = ANY($1)", o.acked).Scan(&stored))
	require.Equal(t, len(o.acked), stored, "every acknowledged message is stored")
}
