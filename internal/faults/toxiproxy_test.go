package faults_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// requestDeadline is how long the test's Parlor lets a request wait on the stores before it
// answers 503 `unavailable` (APP_REQUEST_TIMEOUT, 10 s by default: shorter here to keep
// the test short); answerSlack what the answer may take beyond it (cancelling the store's
// work, writing the problem).
const (
	requestDeadline = 4 * time.Second
	answerSlack     = 2 * time.Second
)

// toxics is an in-process toxiproxy with one proxy per store.
type toxics struct {
	server  *toxiproxy.ApiServer
	proxies []*toxiproxy.Proxy
}

func startToxiproxy(t *testing.T, upstreams map[string]string) (*toxics, map[string]string) {
	t.Helper()
	tx := &toxics{server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
	listen := map[string]string{}
	for name, upstream := range upstreams {
		p := toxiproxy.NewProxy(tx.server, name, "127.0.0.1:0", upstream)
		require.NoError(t, tx.server.Collection.Add(p, true))
		tx.proxies = append(tx.proxies, p)
		listen[name] = p.Listen
	}
	return tx, listen
}

// add puts a toxic on every proxy, e.g. `{"type":"latency","attributes":{"latency":200}}`.
func (tx *toxics) add(t *testing.T, name, toxic string) {
	t.Helper()
	for _, p := range tx.proxies {
		_, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"` + name + `",` + toxic[1:]))
		require.NoError(t, err, "toxic %s on %s", name, p.Name)
	}
}

// remove takes a toxic off every proxy.
func (tx *toxics) remove(t *testing.T, name string) {
	t.Helper()
	for _, p := range tx.proxies {
		require.NoError(t, p.Toxics.RemoveToxic(ctx, name))
	}
}

// disable stops every proxy (existing connections closed, new ones refused); enable starts
// them again on the same ports.
func (tx *toxics) disable() {
	for _, p := range tx.proxies {
		p.Stop()
	}
}

func (tx *toxics) enable(t *testing.T) {
	t.Helper()
	for _, p := range tx.proxies {
		require.NoError(t, p.Start())
	}
}

// answers tallies every request of the load: statuses, time to answer, and what went wrong.
type answers struct {
	*outcomes
	total   int
	slowest time.Duration
	late    []string // no answer within the deadline (and slack)
}

func (a *answers) took(what string, d time.Duration, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total++
	a.slowest = max(a.slowest, d)
	if err != nil || d > requestDeadline+answerSlack {
		a.late = append(a.late, fmt.Sprintf("%s: %s (%v)", what, d.Round(time.Millisecond), err))
	}
}

// Issue 12: slow and cut connections to PostgreSQL and Redis, through toxiproxy. Under a
// steady load of sends, syncs, sign-ins, tickets and a socket, every request is answered
// within its deadline — a success or a 503 `unavailable` problem with Retry-After, never a
// 500, never a hang — Parlor recovers without a restart, and no acknowledged message is
// lost: it is stored, and the socket receives it once, in order.
func TestSlowAndCutStoresAreAnsweredWithinTheDeadline(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	direct, err := url.Parse(dbURL)
	require.NoError(t, err)
	rds, err := url.Parse(parlortest.RedisURL())
	require.NoError(t, err)
	tx, listen := startToxiproxy(t, map[string]string{"postgres": direct.Host, "redis": rds.Host})

	cfg := parlortest.Config(t)
	cfg.RequestTimeout = requestDeadline
	proxied := *direct
	proxied.Host = listen["postgres"]
	cfg.DBURL = proxied.String()
	viaProxy := *rds
	viaProxy.Host = listen["redis"]
	cfg.RedisURL = viaProxy.String()
	s := parlortest.Start(t, cfg)
	// Cleanups run last-first: the proxies close every connection before the server stops,
	// so a handler stuck on a store cannot hold the test's end.
	t.Cleanup(tx.disable)

	ann := s.Register(t, "ann")
	room := parlortest.CreateRoom(t, ann, "toxic", apiclient.VisibilityPublic).Id
	var lastSeq int64
	check, err := pgx.Connect(ctx, dbURL) // straight to PostgreSQL, around the proxy
	require.NoError(t, err)
	defer check.Close(ctx)
	require.NoError(t, check.QueryRow(ctx, "SELECT last_seq FROM rooms WHERE id = $1", room).Scan(&lastSeq))

	// A socket that resumes from its last token whenever it drops.
	plain := newClient(t, s.URL, ann.AccessToken)
	sockUser := &killUser{id: ann.ID, access: ann.AccessToken, clients: []*apiclient.ClientWithResponses{plain, plain}}
	sock := &stormSocket{user: sockUser, room: room, lastSeq: lastSeq, seen: map[uuid.UUID]int{}, closes: map[string]int{}}
	self := &instance{name: "in-process", url: s.URL}
	runCtx, stopSocket := context.WithCancel(ctx)
	defer stopSocket()
	var up, sockDone sync.WaitGroup
	up.Add(1)
	sockDone.Add(1)
	go func() {
		defer sockDone.Done()
		sock.run(runCtx, []*instance{self, self}, nil, 0, &up)
	}()
	up.Wait()

	a := &answers{outcomes: &outcomes{statuses: map[int]int{}}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	paced := func(every time.Duration, work func(reqCtx context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				// The client waits past the deadline, to see whether an answer comes at all.
				reqCtx, cancel := context.WithTimeout(ctx, requestDeadline+answerSlack+time.Second)
				work(reqCtx)
				cancel()
			}
		}()
	}
	timed := func(what string, do func() (*http.Response, []byte, error)) (*http.Response, bool) {
		began := time.Now()
		res, body, err := do()
		a.took(what, time.Since(began), err)
		if err != nil {
			return nil, false
		}
		a.record(what, res, body)
		return res, true
	}
	for range 2 { // two steady senders
		paced(50*time.Millisecond, func(reqCtx context.Context) {
			var sent *apiclient.SendMessageResponse
			res, ok := timed("POST …/messages", func() (*http.Response, []byte, error) {
				var err error
				sent, err = ann.Client.SendMessageWithResponse(reqCtx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "toxic"})
				if err != nil {
					return nil, nil, err
				}
				return sent.HTTPResponse, sent.Body, nil
			})
			if ok && res.StatusCode == http.StatusCreated {
				a.mu.Lock()
				a.acked = append(a.acked, sent.JSON201.Id)
				a.mu.Unlock()
			}
		})
	}
	var since string
	paced(100*time.Millisecond, func(reqCtx context.Context) { // a reader following the sync token
		params := &apiclient.SyncParams{}
		if since != "" {
			params.Since = &since
		}
		var page *apiclient.SyncResponse
		res, ok := timed("GET /v1/sync", func() (*http.Response, []byte, error) {
			var err error
			if page, err = ann.Client.SyncWithResponse(reqCtx, params); err != nil {
				return nil, nil, err
			}
			return page.HTTPResponse, page.Body, nil
		})
		if ok && res.StatusCode == http.StatusOK {
			since = page.JSON200.NextToken
		}
	})
	paced(200*time.Millisecond, func(reqCtx context.Context) { // tickets
		timed("POST /v1/realtime/tickets", func() (*http.Response, []byte, error) {
			r, err := ann.Client.CreateRealtimeTicketWithResponse(reqCtx)
			if err != nil {
				return nil, nil, err
			}
			return r.HTTPResponse, r.Body, nil
		})
	})
	paced(time.Second, func(reqCtx context.Context) { // sign-ins (Redis counts them)
		timed("POST /v1/auth/login", func() (*http.Response, []byte, error) {
			r, err := s.Client.LoginWithResponse(reqCtx, apiclient.LoginJSONRequestBody{Email: ann.Email, Password: ann.Password})
			if err != nil {
				return nil, nil, err
			}
			return r.HTTPResponse, r.Body, nil
		})
	})

	phase := func(what string, d time.Duration) {
		t.Logf("%s for %s", what, d)
		time.Sleep(d)
	}
	phase("healthy", time.Second)
	tx.add(t, "slow", `{"type":"latency","attributes":{"latency":200}}`)
	phase("200 ms latency on PostgreSQL and Redis", 3*time.Second)
	tx.remove(t, "slow")
	tx.add(t, "slower", `{"type":"latency","attributes":{"latency":2000}}`)
	phase("2 s latency on PostgreSQL and Redis", 5*time.Second)
	tx.remove(t, "slower")
	phase("healed", time.Second)
	tx.add(t, "reset", `{"type":"reset_peer","attributes":{"timeout":0}}`)
	phase("connections to PostgreSQL and Redis reset", 2*time.Second)
	tx.remove(t, "reset")
	phase("healed", time.Second)
	tx.disable()
	phase("PostgreSQL and Redis unreachable (proxies down)", 3*time.Second)
	tx.enable(t)
	phase("healed", time.Second)
	// Last, so no later fault closes a connection this one left hanging.
	tx.add(t, "blackhole", `{"type":"timeout","attributes":{"timeout":0}}`)
	// Longer than the deadline: what waits on a store that says nothing must give up.
	phase("PostgreSQL and Redis drop every byte, connections left open", requestDeadline+answerSlack+time.Second)
	tx.remove(t, "blackhole")
	healed := time.Now()

	// Parlor recovers without a restart: a send succeeds again.
	for {
		res, err := ann.Client.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "back"})
		require.NoError(t, err)
		if res.StatusCode() == http.StatusCreated {
			a.mu.Lock()
			a.acked = append(a.acked, res.JSON201.Id)
			a.mu.Unlock()
			break
		}
		require.Less(t, time.Since(healed), 15*time.Second, "sends still fail 15 s after the stores came back: %d %s", res.StatusCode(), res.Body)
		time.Sleep(100 * time.Millisecond)
	}
	recovered := time.Since(healed)
	phase("healed, load goes on", 2*time.Second)
	close(stop)
	wg.Wait()

	a.mu.Lock()
	want := append([]uuid.UUID(nil), a.acked...)
	a.mu.Unlock()
	// The socket receives every acknowledged message.
	socketMissing := 0
	for {
		sock.mu.Lock()
		socketMissing = 0
		for _, id := range want {
			if sock.seen[id] == 0 {
				socketMissing++
			}
		}
		sock.mu.Unlock()
		if socketMissing == 0 || time.Since(healed) > 30*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	socketComplete := time.Since(healed)
	stopSocket()
	sockDone.Wait()

	t.Logf("%d requests answered, by status %v; %d of them 503; slowest answer %s (deadline %s + %s slack); "+
		"%d messages acknowledged; sends recovered %s after the stores came back, the socket complete after %s "+
		"(%d reconnects, closes %v)",
		a.total, a.statuses, a.statuses[http.StatusServiceUnavailable], a.slowest.Round(time.Millisecond), requestDeadline, answerSlack,
		len(want), recovered.Round(time.Millisecond), socketComplete.Round(time.Millisecond), sock.reconnects, sock.closes)
	require.Empty(t, a.late, "every request is answered within its deadline")
	require.Empty(t, a.bad, "every 5xx is a 503 unavailable problem with Retry-After")
	require.Positive(t, a.statuses[http.StatusServiceUnavailable], "the faults were seen as 503s")
	require.Zero(t, socketMissing, "the socket still misses acknowledged messages 30 s after the stores came back")
	require.Empty(t, sock.faults, "the socket saw every event once, in order")
	for _, id := range want {
		require.Equal(t, 1, sock.seen[id], "the socket received acknowledged message %s once", id)
	}
	var stored int
	require.NoError(t, check.QueryRow(ctx, "SELECT count(*) FROM messages WHERE id = ANY($1)", want).Scan(&stored))
	require.Equal(t, len(want), stored, "every acknowledged message is stored (lost: %d)", len(want)-stored)
}
