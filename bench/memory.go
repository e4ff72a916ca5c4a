package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/parlor-dev/parlor/gen/apiclient"
)

// runMemory opens idle WebSockets, o.idleConns[k] of them for each k, to a fresh
// `parlor serve` subprocess and then to a fresh Centrifugo, and reports what they cost in
// the server's resident memory (VmRSS before and after, per socket; and again once every
// socket has carried a few messages) and how long opening them took.
//
// The users are registered through a setup server, which is then replaced by a fresh one:
// argon2id's 19 MiB hashing buffers would otherwise sit in the RSS we start from and be
// handed back while the sockets open, hiding part of their cost.
func runMemory(ctx context.Context, o options, rep *report) error {
	const bench = "memory"
	most := slices.Max(o.idleConns)
	lim, limNote, limErr := raiseFileLimit(uint64(most + idleFileMargin))
	if limNote != "" {
		progress(bench, "%s", limNote)
	}
	if limErr != nil {
		if lim.Cur < uint64(slices.Min(o.idleConns)+idleFileMargin) {
			return limErr
		}
		progress(bench, "%v; measuring only the counts that fit", limErr)
	}
	progress(bench, "RLIMIT_NOFILE %d (the servers inherit it; a Go server raises its soft limit to the hard one itself)", lim.Cur)
	setup, err := newServeSetup(ctx, bench)
	if err != nil {
		return err
	}
	defer setup.close()
	dir, bin, d := setup.dir, setup.bin, setup.db

	// Every Parlor of the run listens on one address: the users' clients call it.
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	m := &memoryRun{bench: bench, o: o, bin: bin, dir: dir, dbURL: d.url, addr: addr, ep: newEndpoint("http://" + addr),
		metricsAddr: "127.0.0.1:" + strconv.Itoa(metricsPort)}
	defer m.ep.http.CloseIdleConnections()
	var cfVersion string
	var cfErr error
	measured := 0 // the most sockets measured
	for _, n := range o.idleConns {
		if err := ctx.Err(); err != nil {
			return err
		}
		if uint64(n+idleFileMargin) > lim.Cur {
			why := fmt.Sprintf("NOT MEASURED: RLIMIT_NOFILE is %s, %s sockets need about %s (%s): raise the hard limit first (as root: ulimit -Hn 200000; ulimit -n 200000)",
				thousands(int64(lim.Cur)), thousands(int64(n)), thousands(int64(n+idleFileMargin)), limNote)
			progress(bench, "%s", why)
			rep.add(bench, fmt.Sprintf("Parlor: per idle socket, %s sockets", thousands(int64(n))), why, "≤ 16 KiB", "n/a")
			continue
		}
		p, err := m.parlor(ctx, n)
		if err != nil {
			return fmt.Errorf("%s sockets: %w", thousands(int64(n)), err)
		}
		m.reportParlor(rep, n, p)

		var c *idleResult
		if cfErr == nil {
			var version string
			c, version, cfErr = m.centrifugo(ctx, n)
			if errors.Is(cfErr, context.Canceled) {
				return cfErr
			}
			if cfErr != nil {
				progress(bench, "Centrifugo NOT measured: %v", cfErr)
			} else {
				cfVersion = version
			}
		}
		m.reportCentrifugo(rep, n, p, c, cfVersion, cfErr)
		measured = max(measured, n)
	}

	sources := (measured + o.idleSources - 1) / o.idleSources
	rep.note("memory: `parlor serve` as a subprocess, RSS from /proc/<pid>/status (the server's alone), a fresh server for each count (%s); "+
		"at most %d sockets per user (APP_WS_MAX_CONNS_PER_USER set to what each user gets; each user a member of one room of their own); "+
		"opened in batches of %d: a batch's tickets (POST /v1/realtime/tickets, single-use, 30 s) fetched just before it connects, %d at a time, the socket open once hello arrives; "+
		"Parlor has no ticket or handshake rate limit to configure (sign-up and login throttles are raised for the setup). Ping interval and the rest at their defaults; "+
		"\"before\" is after a warm-up batch opened and closed and %s of quiet, \"after\" %s after the last socket opened; "+
		"\"after traffic\": %d messages sent into each user's room (POST …/messages, as the user) once the idle figure is taken, every socket has read every one, then %s of quiet.",
		countsText(o.idleConns), o.idlePerUser, o.idleBatch, idleDialers, o.idleSettle, o.idleSettle, o.idleTraffic, o.idleSettle)
	rep.note("memory: the sockets are dialled from %d loopback source address(es) (127.0.0.2…, at most %s sockets each, IP_BIND_ADDRESS_NO_PORT so the port is picked per destination at connect); "+
		"RLIMIT_NOFILE %d (soft raised to the hard limit, the servers inherit it%s).",
		sources, thousands(int64(o.idleSources)), lim.Cur, prefixed("; ", limNote))
	if cfVersion != "" {
		rep.note("memory: Centrifugo %s as a subprocess (the fanout benchmark's config: memory broker, HS256 connection tokens, its defaults otherwise), a fresh one for each count, "+
			"right after Parlor's sockets are closed and its server stopped: the same users, batches, dialers and source addresses; each socket connects with a token signed here "+
			"(sub bench-<user>, one per socket, signed just before its batch) and subscribes to its user's channel (idle-<user>) before it counts as open, and answers the server's "+
			"{} pings; its traffic is published through /api/publish into each user's channel.", cfVersion)
	} else if cfErr != nil {
		rep.note("memory: Centrifugo was not measured: %v", cfErr)
	}
	return nil
}

func countsText(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = thousands(int64(n))
	}
	return strings.Join(parts, ", ")
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// memoryRun is the memory benchmark's state across the socket counts: the users (registered
// once, more as a larger count needs them) and their rooms.
type memoryRun struct {
	bench, bin, dir, dbURL string
	o                      options
	addr                   string // where each Parlor of the run listens
	metricsAddr            string // and serves /metrics
	ep                     *endpoint
	users                  []*user
	rooms                  []uuid.UUID // users[i]'s room
}

// usersFor is how many users n sockets are spread over (at most o.idlePerUser each) and
// how many sockets the busiest of them gets.
func (m *memoryRun) usersFor(n int) (users, perUser int) {
	users = (n + m.o.idlePerUser - 1) / m.o.idlePerUser
	return users, (n + users - 1) / users
}

// parlor measures n idle sockets on a fresh `parlor serve`.
func (m *memoryRun) parlor(ctx context.Context, n int) (*idleResult, error) {
	nUsers, perUser := m.usersFor(n)
	addr := m.addr
	env, err := parlorEnv(addr, m.dbURL, "APP_WS_MAX_CONNS_PER_USER="+strconv.Itoa(perUser), "APP_METRICS_ADDR="+m.metricsAddr)
	if err != nil {
		return nil, err
	}
	start := func(name string) (*process, error) {
		p, err := startProcess("parlor serve", m.bin, []string{"serve"}, env, filepath.Join(m.dir, name+".log"))
		if err != nil {
			return nil, err
		}
		if err := p.waitReady(ctx, "http://"+addr+"/readyz", 20*time.Millisecond, 30*time.Second); err != nil {
			_ = p.stop(10 * time.Second)
			return nil, err
		}
		return p, nil
	}
	defer m.ep.http.CloseIdleConnections()

	if more := nUsers - len(m.users); more > 0 {
		setup, err := start("setup-" + strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		err = m.register(ctx, more)
		_ = setup.stop(15 * time.Second)
		m.ep.http.CloseIdleConnections()
		if err != nil {
			return nil, err
		}
	}
	progress(m.bench, "%s sockets: %d users (up to %d sockets each), each in a room of their own; starting a fresh server", thousands(int64(n)), nUsers, perUser)

	srv, err := start("server-" + strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := srv.stop(30 * time.Second); err != nil {
			progress(m.bench, "parlor serve: %v", err)
		}
	}()
	progress(m.bench, "parlor serve ready (pid %d), RSS %s", srv.pid(), mib(rssOf(srv.pid())))
	t := &parlorIdle{ep: m.ep, metricsURL: "http://" + m.metricsAddr, users: m.users[:nUsers], rooms: m.rooms[:nUsers]}
	return measureIdle(ctx, m.bench, "parlor", t, srv.pid(), n, m.o)
}

// register signs up more users (through the setup server at m.ep), each creating a room.
func (m *memoryRun) register(ctx context.Context, more int) error {
	users, err := m.ep.registerMany(ctx, m.bench, fmt.Sprintf("idle%d-", len(m.users)), more)
	if err != nil {
		return err
	}
	rooms := make([]uuid.UUID, len(users))
	err = parallel(ctx, len(users), 8, func(i int) error {
		res, err := users[i].Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "idle room " + strconv.Itoa(len(m.users)+i)})
		if err == nil && res.JSON201 == nil {
			err = fmt.Errorf("status %d: %s", res.StatusCode(), res.Body)
		}
		if err != nil {
			return fmt.Errorf("create room: %w", err)
		}
		rooms[i] = res.JSON201.Id
		return nil
	})
	if err != nil {
		return err
	}
	m.users = append(m.users, users...)
	m.rooms = append(m.rooms, rooms...)
	return nil
}

// centrifugo measures n idle sockets on a fresh Centrifugo.
func (m *memoryRun) centrifugo(ctx context.Context, n int) (*idleResult, string, error) {
	nUsers, _ := m.usersFor(n)
	cf, version, err := startCentrifugoFan(ctx, m.bench, m.dir)
	if err != nil {
		return nil, "", err
	}
	defer cf.close()
	progress(m.bench, "centrifugo ready (pid %d), RSS %s", cf.pid(), mib(rssOf(cf.pid())))
	r, err := measureIdle(ctx, m.bench, "centrifugo", &centrifugoIdle{c: cf, users: nUsers}, cf.pid(), n, m.o)
	return r, version, err
}

func (m *memoryRun) reportParlor(rep *report, n int, r *idleResult) {
	const bench = "memory"
	nf := float64(n)
	per := r.perSocket(r.after)
	rep.add(bench, fmt.Sprintf("Parlor: server RSS (VmRSS) before / after %s idle sockets", thousands(int64(n))),
		mib(r.before)+" / "+mib(r.after), "", "")
	rep.add(bench, "  (after − before) / sockets", fmt.Sprintf("%.1f KiB", per), "≤ 16 KiB", verdict(per <= 16))
	if r.mBefore != nil && r.mAfter != nil {
		delta := func(m map[string]float64, k string) float64 { return (m[k] - r.mBefore[k]) / nf }
		rep.add(bench, "  of which Go heap in use / goroutine stacks, per socket",
			fmt.Sprintf("%.1f / %.1f KiB", delta(r.mAfter, "go_memstats_heap_inuse_bytes")/1024, delta(r.mAfter, "go_memstats_stack_inuse_bytes")/1024), "", "")
		rep.add(bench, "  goroutines per socket", fmt.Sprintf("%.2f", delta(r.mAfter, "go_goroutines")), "", "")
	}
	if r.trafficSent > 0 {
		per := r.perSocket(r.afterTraffic)
		v := fmt.Sprintf("%.1f KiB (RSS %s", per, mib(r.afterTraffic))
		if r.mBefore != nil && r.mTraffic != nil {
			delta := func(k string) float64 { return (r.mTraffic[k] - r.mBefore[k]) / nf / 1024 }
			v += fmt.Sprintf("; Go heap %.1f / stacks %.1f KiB per socket", delta("go_memstats_heap_inuse_bytes"), delta("go_memstats_stack_inuse_bytes"))
		}
		v += ")"
		ok := r.trafficErr == nil
		if !ok {
			v += "; " + r.trafficErr.Error()
		}
		rep.add(bench, fmt.Sprintf("  per socket after traffic (%d messages into each user's room, read by every socket)", r.trafficPerUser), v, "≤ 16 KiB", verdict(ok && per <= 16))
	}
}

func (m *memoryRun) reportCentrifugo(rep *report, n int, p, c *idleResult, version string, cfErr error) {
	const bench = "memory"
	count := thousands(int64(n))
	if c == nil {
		rep.add(bench, fmt.Sprintf("Centrifugo v6: RSS per idle socket, %s sockets", count), "NOT MEASURED: "+firstLine(errString(cfErr)), "reference", "")
		rep.add(bench, fmt.Sprintf("%s sockets opened (Parlor: tickets included): Parlor / Centrifugo", count),
			fmt.Sprintf("%.1f s (%s/s) / not measured", p.open.Seconds(), thousands(int64(p.openRate()))), "≤ Centrifugo", "n/a")
		return
	}
	v := fmt.Sprintf("%.1f KiB (RSS %s / %s", c.perSocket(c.after), mib(c.before), mib(c.after))
	if c.trafficSent > 0 {
		v += fmt.Sprintf("); after traffic %.1f KiB (RSS %s", c.perSocket(c.afterTraffic), mib(c.afterTraffic))
		if c.trafficErr != nil {
			v += "; " + c.trafficErr.Error()
		}
	}
	v += ")"
	rep.add(bench, fmt.Sprintf("Centrifugo %s: RSS per idle socket, %s sockets (before / after)", version, count), v, "reference", "")
	rep.add(bench, fmt.Sprintf("%s sockets opened (Parlor: tickets included): Parlor / Centrifugo", count),
		fmt.Sprintf("%.1f / %.1f s (%s / %s per s)", p.open.Seconds(), c.open.Seconds(), thousands(int64(p.openRate())), thousands(int64(c.openRate()))),
		"≤ Centrifugo", verdict(p.open <= c.open))
}

func errString(err error) string {
	if err == nil {
		return "skipped after an earlier failure"
	}
	return err.Error()
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func rssOf(pid int) int64 {
	v, _ := rssKiB(pid)
	return v
}

// scrapeMetrics reads the unlabelled samples of /metrics at base, the server's metrics
// listener, with ep's client (nil if it can't).
func scrapeMetrics(ctx context.Context, ep *endpoint, base string) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil
	}
	res, err := ep.http.Do(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		// A series, with its labels if it has any, then its value.
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = f
			}
		}
	}
	return out
}

// idleFileMargin is how many descriptors beyond one per socket the load generator and each
// server may need (HTTP and database connections, logs, Centrifugo's listeners).
const idleFileMargin = 1024

// idleDialers is how many tickets (tokens) are fetched, and how many sockets dialled, at
// once.
const idleDialers = 32

// idleTarget is a server the memory benchmark opens idle sockets to. Socket i belongs to
// user i % users().
type idleTarget interface {
	// credentials returns what sockets first…first+n-1 connect with (tickets, tokens).
	credentials(ctx context.Context, first, n int) ([]string, error)
	// dial opens socket i with d and returns it once it is subscribed to its user's room.
	dial(ctx context.Context, d *websocket.Dialer, i int, cred string) (*websocket.Conn, error)
	// send sends body into user's room (channel) through the server's API.
	send(ctx context.Context, user int, body string) error
	userCount() int
	// answersPings: see fanTarget.
	answersPings() bool
	// metrics are the server's /metrics samples, or nil.
	metrics(ctx context.Context) map[string]float64
}

// idleResult is what one server measured for one socket count.
type idleResult struct {
	n                           int
	before, after, afterTraffic int64 // VmRSS, KiB
	mBefore, mAfter, mTraffic   map[string]float64
	open                        time.Duration // opening the n sockets, in batches
	trafficPerUser, trafficSent int
	trafficWait                 time.Duration // from the first send until every socket had every message
	trafficErr                  error         // what went wrong with the traffic, if anything did
}

func (r *idleResult) perSocket(rss int64) float64 { return float64(rss-r.before) / float64(r.n) }
func (r *idleResult) openRate() float64           { return float64(r.n) / r.open.Seconds() }

// measureIdle opens n idle sockets to t (server process pid) in batches after a warm-up
// batch, reads the RSS before and after, then (o.idleTraffic > 0) sends that many messages
// into every user's room, waits for every socket to have read them all and reads it again.
func measureIdle(ctx context.Context, bench, name string, t idleTarget, pid, n int, o options) (*idleResult, error) {
	dialer, sources := spreadDialer(n, o.idleSources)
	pool := &idlePool{t: t, dialer: dialer, want: uint64(1)<<o.idleTraffic - 1}
	defer pool.closeAll()
	r := &idleResult{n: n}

	// Warm-up: open and close a batch the way the measured ones open, so the HTTP
	// connections the tickets come over, the database pool and one-time allocations exist
	// before the "before" figure.
	progress(bench, "%s: warm-up: opening and closing %d sockets (dialling from %s)", name, min(o.idleBatch, n), strings.Join(sources, ", "))
	if err := pool.open(ctx, min(o.idleBatch, n)); err != nil {
		return nil, fmt.Errorf("%s: warm-up: %w", name, err)
	}
	pool.closeAll()
	if err := sleep(ctx, o.idleSettle); err != nil {
		return nil, err
	}
	var err error
	if r.before, err = rssKiB(pid); err != nil {
		return nil, err
	}
	r.mBefore = t.metrics(ctx)
	progress(bench, "%s: before: RSS %s%s", name, mib(r.before), goFigures(r.mBefore))

	started := time.Now()
	lastProgress := started
	for opened := 0; opened < n; {
		k := min(o.idleBatch, n-opened)
		if err := pool.open(ctx, k); err != nil {
			return nil, fmt.Errorf("%s: after %d sockets: %w", name, opened, err)
		}
		opened += k
		if time.Since(lastProgress) >= 2*time.Second || opened == n {
			lastProgress = time.Now()
			progress(bench, "%s: %s/%s sockets open (%.0f/s), server RSS %s", name, thousands(int64(opened)), thousands(int64(n)),
				float64(opened)/time.Since(started).Seconds(), mib(rssOf(pid)))
		}
	}
	r.open = time.Since(started)
	progress(bench, "%s: %s sockets opened in %.1f s; letting the server settle for %s", name, thousands(int64(n)), r.open.Seconds(), o.idleSettle)
	if err := sleep(ctx, o.idleSettle); err != nil {
		return nil, err
	}
	if r.after, err = rssKiB(pid); err != nil {
		return nil, err
	}
	r.mAfter = t.metrics(ctx)
	progress(bench, "%s: after: RSS %s (%.1f KiB per socket)%s", name, mib(r.after), r.perSocket(r.after), goFigures(r.mAfter))
	if closed := pool.closedCount(); closed > 0 {
		return nil, fmt.Errorf("%s: %d of %d sockets were closed by the server while idle (first: %v)", name, closed, n, pool.firstClose())
	}
	if open, ok := r.mAfter["parlor_ws_open_connections"]; ok && int(open) != n {
		return nil, fmt.Errorf("%s: the server counts %d open sockets, want %d", name, int(open), n)
	}
	if o.idleTraffic == 0 {
		return r, nil
	}

	// Traffic: o.idleTraffic messages into every user's room, message k to every user before
	// message k+1 to any (so the sends in flight at once are in different rooms).
	users := t.userCount()
	r.trafficPerUser = o.idleTraffic
	progress(bench, "%s: traffic: %d messages into each of %d users' rooms, waiting until every socket has read them all", name, o.idleTraffic, users)
	trafficStart := time.Now()
	err = parallel(ctx, users*o.idleTraffic, 16, func(j int) error {
		return t.send(ctx, j%users, "tr:"+strconv.Itoa(j/users))
	})
	if err != nil {
		return nil, fmt.Errorf("%s: traffic: %w", name, err)
	}
	r.trafficSent = users * o.idleTraffic
	last, lastChange := pool.complete.Load(), time.Now()
	lastProgress = time.Now()
	for {
		got := pool.complete.Load()
		live := int64(n) - pool.closedCount()
		if got >= live {
			if live < int64(n) {
				r.trafficErr = fmt.Errorf("%d sockets closed (first: %v)", int64(n)-live, pool.firstClose())
			}
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if time.Since(lastChange) > 15*time.Second || time.Since(trafficStart) > 3*time.Minute {
			r.trafficErr = fmt.Errorf("only %s of %s sockets read every message", thousands(got), thousands(live))
			break
		}
		if time.Since(lastProgress) >= 2*time.Second {
			lastProgress = time.Now()
			progress(bench, "%s: traffic: %s/%s sockets have read all %d messages", name, thousands(got), thousands(live), o.idleTraffic)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	r.trafficWait = time.Since(trafficStart)
	progress(bench, "%s: traffic: %s messages sent, every socket had them %.1f s after the first send%s; settling for %s", name,
		thousands(int64(r.trafficSent)), r.trafficWait.Seconds(), prefixed(" — ", errText(r.trafficErr)), o.idleSettle)
	if err := sleep(ctx, o.idleSettle); err != nil {
		return nil, err
	}
	if r.afterTraffic, err = rssKiB(pid); err != nil {
		return nil, err
	}
	r.mTraffic = t.metrics(ctx)
	progress(bench, "%s: after traffic: RSS %s (%.1f KiB per socket)%s", name, mib(r.afterTraffic), r.perSocket(r.afterTraffic), goFigures(r.mTraffic))
	return r, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// goFigures renders the Go heap, stacks and goroutines of a /metrics scrape, if there is one.
func goFigures(m map[string]float64) string {
	if m == nil {
		return ""
	}
	return fmt.Sprintf(", Go heap in use %s, stacks %s, %s goroutines", mib(int64(m["go_memstats_heap_inuse_bytes"]/1024)),
		mib(int64(m["go_memstats_stack_inuse_bytes"]/1024)), thousands(int64(m["go_goroutines"])))
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (linux/in.h): a socket bound to an
// address with port 0 gets its port at connect, unique per destination, not at bind, unique
// per source address.
const ipBindAddressNoPort = 24

// spreadDialer is a WebSocket dialer that spreads n sockets over loopback source addresses
// 127.0.0.2, 127.0.0.3, … (all of 127.0.0.0/8 is local), at most perSource each: one address
// reaches ~28k connections to one destination (the ephemeral port range).
func spreadDialer(n, perSource int) (*websocket.Dialer, []string) {
	k := max(1, (n+perSource-1)/perSource)
	addrs := make([]*net.TCPAddr, k)
	names := make([]string, k)
	for i := range addrs {
		ip := net.IPv4(127, 0, byte((2+i)>>8), byte(2+i))
		addrs[i] = &net.TCPAddr{IP: ip}
		names[i] = ip.String()
	}
	var next atomic.Uint64
	control := func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
		}); err != nil {
			return err
		}
		return serr
	}
	return &websocket.Dialer{
		HandshakeTimeout: 15 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: addrs[next.Add(1)%uint64(k)], Control: control}
			return d.DialContext(ctx, network, addr)
		},
	}, names
}

// idlePool holds idle sockets, reading each (so pings are answered) without sending, and
// counts the sockets that have read every traffic message.
type idlePool struct {
	t      idleTarget
	dialer *websocket.Dialer
	want   uint64 // bit k: traffic message k

	mu       sync.Mutex
	conns    map[*websocket.Conn]struct{}
	next     int // socket counter, to spread sockets over the users
	closed   atomic.Int64
	first    error
	complete atomic.Int64 // sockets that have read every traffic message
}

// open opens n more sockets: their credentials first, then the handshakes.
func (p *idlePool) open(ctx context.Context, n int) error {
	p.mu.Lock()
	base := p.next
	p.next += n
	p.mu.Unlock()
	creds, err := p.t.credentials(ctx, base, n)
	if err != nil {
		return err
	}
	return parallel(ctx, n, idleDialers, func(i int) error {
		conn, err := p.t.dial(ctx, p.dialer, base+i, creds[i])
		if err != nil {
			return err
		}
		p.mu.Lock()
		if p.conns == nil {
			p.conns = map[*websocket.Conn]struct{}{}
		}
		p.conns[conn] = struct{}{}
		p.mu.Unlock()
		go p.read(conn)
		return nil
	})
}

var trafficMarker = []byte(`"tr:`)

func (p *idlePool) read(conn *websocket.Conn) {
	var seen uint64
	pings := p.t.answersPings()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			p.mu.Lock()
			_, open := p.conns[conn]
			if open && p.first == nil {
				p.first = err
			}
			p.mu.Unlock()
			if open {
				p.closed.Add(1)
			}
			return
		}
		if pings && bytes.Contains(data, []byte("{}")) {
			for _, line := range bytes.Split(data, []byte("\n")) {
				if string(bytes.TrimSpace(line)) == "{}" {
					_ = conn.WriteMessage(websocket.TextMessage, []byte("{}"))
				}
			}
		}
		if p.want == 0 || seen == p.want {
			continue
		}
		for rest := data; ; {
			j := bytes.Index(rest, trafficMarker)
			if j < 0 {
				break
			}
			rest = rest[j+len(trafficMarker):]
			k, digits := 0, 0
			for digits < len(rest) && digits < 3 && rest[digits] >= '0' && rest[digits] <= '9' {
				k = k*10 + int(rest[digits]-'0')
				digits++
			}
			if digits > 0 && k < 64 {
				seen |= 1 << k
			}
		}
		if seen&p.want == p.want {
			seen = p.want
			p.complete.Add(1)
		}
	}
}

func (p *idlePool) closedCount() int64 { return p.closed.Load() }

func (p *idlePool) firstClose() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

// closeAll closes every socket the pool holds (their closing is not counted as a failure).
func (p *idlePool) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	p.complete.Store(0)
}

// parlorIdle is Parlor under the memory benchmark: sockets of users each in a room of their
// own, opened with tickets.
type parlorIdle struct {
	ep         *endpoint
	metricsURL string // the metrics listener
	users      []*user
	rooms      []uuid.UUID
}

func (p *parlorIdle) userCount() int { return len(p.users) }

func (p *parlorIdle) credentials(ctx context.Context, first, n int) ([]string, error) {
	tickets := make([]string, n)
	err := parallel(ctx, n, idleDialers, func(i int) error {
		u := p.users[(first+i)%len(p.users)]
		res, err := u.Client.CreateRealtimeTicketWithResponse(ctx)
		if err != nil {
			return fmt.Errorf("ticket: %w", err)
		}
		if res.JSON201 == nil {
			return fmt.Errorf("ticket: status %d: %s", res.StatusCode(), res.Body)
		}
		tickets[i] = res.JSON201.Ticket
		return nil
	})
	return tickets, err
}

func (p *parlorIdle) dial(ctx context.Context, d *websocket.Dialer, _ int, ticket string) (*websocket.Conn, error) {
	wsURL := "ws" + strings.TrimPrefix(p.ep.URL, "http") + "/v1/realtime?" + url.Values{"ticket": {ticket}, "batch": {"true"}}.Encode()
	conn, res, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("dial: %w (status %d)", err, res.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	// hello arrives once the socket is subscribed to its user's room.
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, data, err := conn.ReadMessage(); err != nil || !strings.Contains(string(data), `"type":"hello"`) {
		_ = conn.Close()
		return nil, fmt.Errorf("no hello: %v %.100s", err, data)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

func (p *parlorIdle) send(ctx context.Context, user int, body string) error {
	res, err := p.users[user].Client.SendMessageWithResponse(ctx, p.rooms[user], apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: body})
	if err != nil {
		return err
	}
	if res.JSON201 == nil {
		return fmt.Errorf("send: status %d: %.200s", res.StatusCode(), res.Body)
	}
	return nil
}

func (p *parlorIdle) answersPings() bool { return false }

func (p *parlorIdle) metrics(ctx context.Context) map[string]float64 {
	return scrapeMetrics(ctx, p.ep, p.metricsURL)
}

// centrifugoIdle is Centrifugo under the memory benchmark: sockets of users bench-<u>, each
// subscribed to its user's channel idle-<u>.
type centrifugoIdle struct {
	c     *centrifugoFan
	users int
}

func (c *centrifugoIdle) credentials(_ context.Context, first, n int) ([]string, error) {
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = c.c.token("bench-" + strconv.Itoa((first+i)%c.users))
	}
	return tokens, nil
}

func (c *centrifugoIdle) dial(ctx context.Context, d *websocket.Dialer, i int, token string) (*websocket.Conn, error) {
	return c.c.connect(ctx, d, token, "idle-"+strconv.Itoa(i%c.users))
}

func (c *centrifugoIdle) send(ctx context.Context, user int, body string) error {
	return c.c.call(ctx, "publish", map[string]any{"channel": "idle-" + strconv.Itoa(user), "data": map[string]string{"m": body}})
}

func (c *centrifugoIdle) userCount() int                             { return c.users }
func (c *centrifugoIdle) answersPings() bool                         { return true }
func (c *centrifugoIdle) metrics(context.Context) map[string]float64 { return nil }
