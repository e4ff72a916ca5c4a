package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/parlor-dev/parlor/gen/apiclient"
)

// soak runs a `parlor serve` subprocess under mixed load for a long time (sends, long-poll
// syncs, sockets that come and go and resume, top-ups paid or cancelled through the
// sandbox checkout) and checks that what the process holds returns to where it was before:
// a leak of goroutines, memory, descriptors or database connections shows as a level that
// stays up after the load ends. The baseline is taken after a warm-up under the same load
// (pools, caches and the runtime then hold what a running server holds), with the clients
// stopped, exactly as the level after the soak is.

// soakLevel is what the server holds at one moment.
type soakLevel struct {
	goroutines float64
	heapMiB    float64 // Go heap allocated (read after a collection: what is live)
	rssMiB     float64
	fds        float64 // open descriptors: sockets, database and Redis connections, files
	poolConns  float64 // the request pool's open connections
	poolBusy   float64 // and those in use
	poolMax    float64
	dbConns    int // backends connected to the benchmark's database (both pools, the job queue)
}

// combine is l and o figure by figure through pick (min: the lowest reading, max: the peak).
func (l soakLevel) combine(o soakLevel, pick func(a, b float64) float64) soakLevel {
	return soakLevel{
		goroutines: pick(l.goroutines, o.goroutines), heapMiB: pick(l.heapMiB, o.heapMiB), rssMiB: pick(l.rssMiB, o.rssMiB),
		fds: pick(l.fds, o.fds), poolConns: pick(l.poolConns, o.poolConns), poolBusy: pick(l.poolBusy, o.poolBusy),
		poolMax: o.poolMax, dbConns: int(pick(float64(l.dbConns), float64(o.dbConns))),
	}
}

func (l soakLevel) String() string {
	return fmt.Sprintf("%.0f goroutines, heap %.1f MiB, RSS %.1f MiB, %.0f fds, pool %.0f open / %.0f busy, %d backends",
		l.goroutines, l.heapMiB, l.rssMiB, l.fds, l.poolConns, l.poolBusy, l.dbConns)
}

// soakCounts are what the clients did and saw.
type soakCounts struct {
	sends, syncs, syncEvents, sockets, resumes, socketEvents, topups, paid atomic.Int64
	fails                                                                  atomic.Int64 // answers other than the expected ones, and transport errors
	server5xx                                                              atomic.Int64
	firstFail                                                              atomic.Value // string
}

func (c *soakCounts) fail(format string, args ...any) {
	c.fails.Add(1)
	c.firstFail.CompareAndSwap(nil, fmt.Sprintf(format, args...))
}

// status counts a reply: a 5xx is the server's fault, anything but want a failure.
func (c *soakCounts) status(what string, got, want int, body []byte) bool {
	if got >= 500 {
		c.server5xx.Add(1)
	}
	if got != want {
		c.fail("%s: status %d, want %d: %.200s", what, got, want, body)
		return false
	}
	return true
}

type soakRun struct {
	o          options
	ep         *endpoint
	metricsURL string
	pid        int
	dbName     string
	users      []*user
	rooms      [][]uuid.UUID // the rooms of users[i]
	n          *soakCounts
}

func runSoak(ctx context.Context, o options, rep *report) error {
	const bench = "soak"
	setup, err := newServeSetup(ctx, bench)
	if err != nil {
		return err
	}
	defer setup.close()
	dir, bin, d := setup.dir, setup.bin, setup.db
	port, err := freePort()
	if err != nil {
		return err
	}
	mport, err := freePort()
	if err != nil {
		return err
	}
	addr, maddr := "127.0.0.1:"+strconv.Itoa(port), "127.0.0.1:"+strconv.Itoa(mport)
	env, err := parlorEnv(addr, d.url, "APP_METRICS_ADDR="+maddr, "APP_WS_MAX_CONNS_PER_USER=100")
	if err != nil {
		return err
	}
	proc, err := startProcess("parlor serve", bin, []string{"serve"}, env, filepath.Join(dir, "parlor-soak.log"))
	if err != nil {
		return err
	}
	defer func() { _ = proc.stop(30 * time.Second) }()
	if err := proc.waitReady(ctx, "http://"+addr+"/readyz", 20*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	s := &soakRun{o: o, ep: newEndpoint("http://" + addr), metricsURL: "http://" + maddr, pid: proc.pid(), dbName: d.name, n: &soakCounts{}}
	if err := s.setup(ctx, bench); err != nil {
		return err
	}
	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))

	progress(bench, "warm-up: %s of the same load", o.soakWarmup)
	if err := s.load(ctx, bench, o.soakWarmup); err != nil {
		return err
	}
	base, err := s.settle(ctx, admin)
	if err != nil {
		return err
	}
	progress(bench, "baseline: %s", base)
	s.n = &soakCounts{}
	progress(bench, "soak: %s of %g sends/s, %d long-polling syncers, %d sockets coming and going, %d top-up clients",
		o.soakDuration, o.soakRate, o.soakSyncers, o.soakSockets, o.soakTopups)
	var peak soakLevel
	stopWatch := s.watch(ctx, bench, admin, &peak)
	loadErr := s.load(ctx, bench, o.soakDuration)
	stopWatch()
	if loadErr != nil {
		return loadErr
	}
	after, err := s.settle(ctx, admin)
	if err != nil {
		return err
	}
	progress(bench, "after: %s", after)

	failText := "none"
	if f := s.n.fails.Load(); f > 0 {
		failText = fmt.Sprintf("%d (first: %s)", f, s.n.firstFail.Load())
	}
	rep.add(bench, fmt.Sprintf("mixed load for %s: sends / syncs (events) / socket sessions (resumed; events) / top-ups (paid)", o.soakDuration),
		fmt.Sprintf("%s / %s (%s) / %s (%s; %s) / %s (%s)", thousands(s.n.sends.Load()), thousands(s.n.syncs.Load()), thousands(s.n.syncEvents.Load()),
			thousands(s.n.sockets.Load()), thousands(s.n.resumes.Load()), thousands(s.n.socketEvents.Load()), thousands(s.n.topups.Load()), thousands(s.n.paid.Load())), "", "")
	rep.add(bench, "  5xx answers; other failures", fmt.Sprintf("%d; %s", s.n.server5xx.Load(), failText), "0; none",
		verdict(s.n.server5xx.Load() == 0 && s.n.fails.Load() == 0))
	if peak.goroutines > 0 {
		rep.add(bench, "  peak during the soak (read every 15 s)", peak.String(), "", "")
	}
	back := func(name string, b, a, slack float64, unit string) {
		rep.add(bench, fmt.Sprintf("  %s: baseline → after the soak", name), fmt.Sprintf("%.1f → %.1f %s", b, a, unit),
			fmt.Sprintf("≤ baseline + %g", slack), verdict(a <= b+slack))
	}
	back("goroutines", base.goroutines, after.goroutines, 10, "")
	back("Go heap live (after a collection)", base.heapMiB, after.heapMiB, max(4, base.heapMiB/4), "MiB")
	back("open descriptors", base.fds, after.fds, 5, "")
	rep.add(bench, "  request pool connections open: baseline → after the soak (the pool keeps idle ones up to its size for 30 min)",
		fmt.Sprintf("%.0f → %.0f of %.0f", base.poolConns, after.poolConns, after.poolMax), "≤ the pool's size", verdict(after.poolConns <= after.poolMax))
	back("request pool connections in use", base.poolBusy, after.poolBusy, 0, "")
	back("database backends", float64(base.dbConns), float64(after.dbConns), 2, "")
	rep.add(bench, "  RSS: baseline → after the soak", fmt.Sprintf("%.1f → %.1f MiB", base.rssMiB, after.rssMiB), "", "")
	rep.note("soak: `parlor serve` as a subprocess (Redis %s), %d users in %d rooms (each user in %d); the load: sends at %g/s from 8 workers into a random room of a random user; "+
		"%d users long-polling GET /v1/sync (timeout_ms 2000) from their last token; %d socket clients that each open a socket (resuming from their last token after the first), "+
		"read it for 1–15 s, and close it (every third without a close frame); %d clients that create a top-up every 2 s and pay or cancel it in the sandbox checkout, then poll it until it settles. "+
		"The baseline follows a %s warm-up under the same load; each level is read once the clients have stopped, the lowest of 5 readings 1 s apart, taken after %s of quiet and the server's next garbage collection (so the heap read is what is live).",
		onOff(redisURL() != ""), o.soakUsers, o.soakRooms, soakRoomsPerUser, o.soakRate, o.soakSyncers, o.soakSockets, o.soakTopups, o.soakWarmup, soakSettle)
	return nil
}

const (
	soakRoomsPerUser = 3
	soakSettle       = 10 * time.Second
)

// setup registers the users, has the first ones create the rooms and everyone join theirs.
func (s *soakRun) setup(ctx context.Context, bench string) error {
	var err error
	if s.users, err = s.ep.registerMany(ctx, bench, "soak", s.o.soakUsers); err != nil {
		return err
	}
	rooms := make([]uuid.UUID, s.o.soakRooms)
	for i := range rooms {
		res, err := s.users[i%len(s.users)].Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: fmt.Sprintf("soak %d", i)})
		if err != nil {
			return err
		}
		if res.JSON201 == nil {
			return fmt.Errorf("create room: status %d: %s", res.StatusCode(), res.Body)
		}
		rooms[i] = res.JSON201.Id
	}
	s.rooms = make([][]uuid.UUID, len(s.users))
	return parallel(ctx, len(s.users), 8, func(i int) error {
		for k := range soakRoomsPerUser {
			idx := (i + k*7) % len(rooms)
			if slices.Contains(s.rooms[i], rooms[idx]) {
				continue
			}
			s.rooms[i] = append(s.rooms[i], rooms[idx])
			if idx%len(s.users) == i {
				continue // its creator is in it
			}
			r := rooms[idx]
			res, err := s.users[i].Client.JoinRoomWithResponse(ctx, r, nil)
			if err != nil {
				return err
			}
			if res.JSON200 == nil {
				return fmt.Errorf("join: status %d: %s", res.StatusCode(), res.Body)
			}
		}
		return nil
	})
}

// load runs every client for d, then stops them and waits until each has.
func (s *soakRun) load(ctx context.Context, bench string, d time.Duration) error {
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	spawn := func(n int, fn func(ctx context.Context, i int)) {
		for i := range n {
			wg.Go(func() { fn(lctx, i) })
		}
	}
	sends := make(chan int)
	spawn(1, func(ctx context.Context, _ int) {
		defer close(sends)
		tick := time.NewTicker(time.Duration(float64(time.Second) / s.o.soakRate))
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sends <- k:
			default: // every worker busy: the send is skipped, the pace kept
			}
		}
	})
	spawn(8, func(ctx context.Context, _ int) {
		for k := range sends {
			s.send(ctx, k)
		}
	})
	spawn(s.o.soakSyncers, s.syncer)
	spawn(s.o.soakSockets, s.socketClient)
	spawn(s.o.soakTopups, s.topupClient)
	wg.Wait()
	s.ep.http.CloseIdleConnections()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// gone reports whether err is only the end of the load (a call cut short by it).
func gone(ctx context.Context, err error) bool { return err != nil && ctx.Err() != nil }

func (s *soakRun) send(ctx context.Context, k int) {
	i := rand.IntN(len(s.users))
	rooms := s.rooms[i]
	res, err := s.users[i].Client.SendMessageWithResponse(ctx, rooms[k%len(rooms)],
		apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "soak " + strconv.Itoa(k)})
	switch {
	case gone(ctx, err):
	case err != nil:
		s.n.fail("send: %v", err)
	case s.n.status("send", res.StatusCode(), http.StatusCreated, res.Body):
		s.n.sends.Add(1)
	}
}

// syncer long-polls GET /v1/sync as user i from its last token.
func (s *soakRun) syncer(ctx context.Context, i int) {
	u := s.users[i%len(s.users)]
	var since *string
	timeout := 2000
	for ctx.Err() == nil {
		res, err := u.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: since, TimeoutMs: &timeout})
		switch {
		case gone(ctx, err):
			return
		case err != nil:
			s.n.fail("sync: %v", err)
			sleepCtx(ctx, time.Second)
		case s.n.status("sync", res.StatusCode(), http.StatusOK, res.Body):
			s.n.syncs.Add(1)
			s.n.syncEvents.Add(int64(len(res.JSON200.Events)))
			since = &res.JSON200.NextToken
		default:
			sleepCtx(ctx, time.Second)
		}
	}
}

// socketClient opens a socket as user i, reads it for a while, closes it, and again,
// resuming from the last token it got.
func (s *soakRun) socketClient(ctx context.Context, i int) {
	u := s.users[i%len(s.users)]
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	var token string
	for round := 0; ctx.Err() == nil; round++ {
		res, err := u.Client.CreateRealtimeTicketWithResponse(ctx)
		if gone(ctx, err) {
			return
		}
		if err != nil {
			s.n.fail("ticket: %v", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		if !s.n.status("ticket", res.StatusCode(), http.StatusCreated, res.Body) {
			sleepCtx(ctx, time.Second)
			continue
		}
		q := url.Values{"ticket": {res.JSON201.Ticket}}
		if token != "" {
			q.Set("since", token)
			s.n.resumes.Add(1)
		}
		conn, hres, err := dialer.DialContext(ctx, "ws"+strings.TrimPrefix(s.ep.URL, "http")+"/v1/realtime?"+q.Encode(), nil)
		if gone(ctx, err) {
			return
		}
		if err != nil {
			status := 0
			if hres != nil {
				status = hres.StatusCode
			}
			s.n.fail("dial: %v (status %d)", err, status)
			sleepCtx(ctx, time.Second)
			continue
		}
		s.n.sockets.Add(1)
		token = s.readFor(ctx, conn, time.Second+time.Duration(rand.Int64N(int64(14*time.Second))), token)
		if round%3 == 2 {
			_ = conn.UnderlyingConn().Close() // gone without a close frame
		} else {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_ = conn.Close()
		}
	}
}

// readFor reads conn for d (or until the load ends) and returns the last token it saw.
func (s *soakRun) readFor(ctx context.Context, conn *websocket.Conn, d time.Duration, token string) string {
	end := time.Now().Add(d)
	for {
		deadline := end
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = conn.SetReadDeadline(deadline)
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ne interface{ Timeout() bool }
			if !errors.As(err, &ne) || !ne.Timeout() {
				s.n.fail("socket closed: %v", err)
			}
			return token
		}
		var f struct {
			Type  string `json:"type"`
			Token string `json:"token"`
		}
		if json.Unmarshal(data, &f) != nil {
			s.n.fail("socket frame: %.100s", data)
			continue
		}
		if f.Type == "event" {
			s.n.socketEvents.Add(1)
		}
		if f.Token != "" {
			token = f.Token
		}
	}
}

// topupClient buys credit as user i every 2 s: creates a top-up, pays or cancels it in the
// sandbox checkout, and polls it until it settles.
func (s *soakRun) topupClient(ctx context.Context, i int) {
	u := s.users[(len(s.users)-1-i)%len(s.users)]
	for round := 0; ctx.Err() == nil; round++ {
		sleepCtx(ctx, 2*time.Second)
		res, err := u.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: uuid.NewString()},
			apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
		if gone(ctx, err) {
			return
		}
		if err != nil {
			s.n.fail("top-up: %v", err)
			continue
		}
		if !s.n.status("top-up", res.StatusCode(), http.StatusCreated, res.Body) {
			continue
		}
		s.n.topups.Add(1)
		checkout, err := url.Parse(res.JSON201.CheckoutUrl)
		if err != nil {
			s.n.fail("checkout URL %q: %v", res.JSON201.CheckoutUrl, err)
			continue
		}
		action, want := "/pay", apiclient.TopupStatusSucceeded
		if round%2 == 1 {
			action, want = "/cancel", apiclient.TopupStatusExpired
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.ep.URL+checkout.Path+action, nil)
		hres, err := s.ep.http.Do(req)
		if gone(ctx, err) {
			return
		}
		if err != nil {
			s.n.fail("checkout %s: %v", action, err)
			continue
		}
		_ = hres.Body.Close()
		if !s.n.status("checkout "+action, hres.StatusCode, http.StatusOK, nil) {
			continue
		}
		for poll := 0; ; poll++ {
			g, err := u.Client.GetTopupWithResponse(ctx, res.JSON201.Id)
			if gone(ctx, err) {
				return
			}
			if err != nil || !s.n.status("get top-up", g.StatusCode(), http.StatusOK, g.Body) {
				break
			}
			if g.JSON200.Status == want {
				if want == apiclient.TopupStatusSucceeded {
					s.n.paid.Add(1)
				}
				break
			}
			if poll == 50 {
				s.n.fail("top-up %s still %s 10 s after %s", res.JSON201.Id, g.JSON200.Status, action)
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// level reads what the server holds now.
func (s *soakRun) level(ctx context.Context, admin *pgx.Conn) (soakLevel, error) {
	m := scrapeMetrics(ctx, s.ep, s.metricsURL)
	if m == nil {
		return soakLevel{}, errors.New("soak: could not read the server's /metrics")
	}
	l := soakLevel{
		goroutines: m["go_goroutines"], heapMiB: m["go_memstats_heap_alloc_bytes"] / (1 << 20), rssMiB: float64(rssOf(s.pid)) / 1024,
		fds: m["process_open_fds"], poolConns: m[`parlor_db_pool_conns{pool="main"}`],
		poolBusy: m[`parlor_db_pool_acquired_conns{pool="main"}`], poolMax: m[`parlor_db_pool_max_conns{pool="main"}`],
	}
	err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", s.dbName).Scan(&l.dbConns)
	return l, err
}

// settle waits soakSettle with the clients stopped and then for the server's next garbage
// collection (the runtime forces one within 2 minutes), so the heap read is what is live,
// not garbage the load left; then it takes the lowest of 5 readings 1 s apart, figure by
// figure.
func (s *soakRun) settle(ctx context.Context, admin *pgx.Conn) (soakLevel, error) {
	stopped := float64(time.Now().UnixNano()) / 1e9
	if err := sleep(ctx, soakSettle); err != nil {
		return soakLevel{}, err
	}
	for waited := 0; ; waited++ {
		m := scrapeMetrics(ctx, s.ep, s.metricsURL)
		if m["go_memstats_last_gc_time_seconds"] > stopped+soakSettle.Seconds() {
			break
		}
		if waited == 180 {
			return soakLevel{}, errors.New("soak: the server ran no garbage collection within 3 minutes of quiet")
		}
		if err := sleep(ctx, time.Second); err != nil {
			return soakLevel{}, err
		}
	}
	var low soakLevel
	for k := range 5 {
		l, err := s.level(ctx, admin)
		if err != nil {
			return soakLevel{}, err
		}
		if k == 0 {
			low = l
		} else {
			low = low.combine(l, math.Min)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return soakLevel{}, err
		}
	}
	return low, nil
}

// watch reads the level every 15 s, keeping the peak, and prints it with the counts every
// minute, until stopped.
func (s *soakRun) watch(ctx context.Context, bench string, admin *pgx.Conn, peak *soakLevel) (stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	started := time.Now()
	go func() {
		defer close(done)
		ticker := time.NewTicker(15 * time.Second)
		defer ticker.Stop()
		for tick := 0; ; {
			select {
			case <-wctx.Done():
				return
			case <-ticker.C:
			}
			l, err := s.level(wctx, admin)
			if err != nil {
				continue
			}
			*peak = peak.combine(l, math.Max)
			if tick++; tick%4 != 0 {
				continue
			}
			progress(bench, "%s: %s sends, %s syncs, %s sockets, %s top-ups, %d 5xx, %d failures; %s",
				time.Since(started).Round(time.Second), thousands(s.n.sends.Load()), thousands(s.n.syncs.Load()), thousands(s.n.sockets.Load()),
				thousands(s.n.topups.Load()), s.n.server5xx.Load(), s.n.fails.Load(), l)
		}
	}()
	return func() { cancel(); <-done }
}
