package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parlor-dev/parlor/gen/apiclient"
)

// runMemory opens o.idleConns idle WebSockets to a `parlor serve` subprocess and reports
// what they cost in the server's resident memory: VmRSS before and after, per socket.
//
// The users are registered through a first server, which is then replaced by a fresh one:
// argon2id's 19 MiB hashing buffers would otherwise sit in the RSS we start from and be
// handed back while the sockets open, hiding part of their cost.
func runMemory(ctx context.Context, o options, rep *report) error {
	const bench = "memory"
	lim, err := raiseFileLimit(uint64(o.idleConns + 1024))
	if err != nil {
		return err
	}
	progress(bench, "RLIMIT_NOFILE %d (the server inherits it; a Go server raises its soft limit to the hard one itself)", lim.Cur)
	dir, err := os.MkdirTemp("", "parlor-bench-memory-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := buildParlor(ctx, bench, dir)
	if err != nil {
		return err
	}
	d, err := newDatabase(ctx, bench)
	if err != nil {
		return err
	}
	defer d.drop()
	progress(bench, "database %s ready", d.name)

	perUser := (o.idleConns + o.idleUsers - 1) / o.idleUsers
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env, err := parlorEnv(addr, d.url, "APP_WS_MAX_CONNS_PER_USER="+strconv.Itoa(perUser))
	if err != nil {
		return err
	}
	start := func(name string) (*process, error) {
		p, err := startProcess("parlor serve", bin, []string{"serve"}, env, filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		if err := p.waitReady(ctx, "http://"+addr+"/readyz", 20*time.Millisecond, 30*time.Second); err != nil {
			_ = p.stop(10 * time.Second)
			return nil, err
		}
		return p, nil
	}

	setup, err := start("setup")
	if err != nil {
		return err
	}
	ep := newEndpoint("http://" + addr)
	users, err := ep.registerMany(ctx, bench, "idle", o.idleUsers)
	if err == nil {
		// Each user in a room of their own, as idle members of a room are.
		err = parallel(ctx, len(users), 8, func(i int) error {
			res, err := users[i].Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "idle room " + strconv.Itoa(i)})
			if err == nil && res.JSON201 == nil {
				err = fmt.Errorf("create room: status %d: %s", res.StatusCode(), res.Body)
			}
			return err
		})
	}
	_ = setup.stop(15 * time.Second)
	ep.http.CloseIdleConnections()
	if err != nil {
		return err
	}
	progress(bench, "%d users registered, each in a room of their own; starting a fresh server", len(users))

	srv, err := start("server")
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.stop(30 * time.Second); err != nil {
			progress(bench, "parlor serve: %v", err)
		}
	}()
	pid := srv.pid()
	progress(bench, "parlor serve ready (pid %d), RSS %s", pid, mib(rssOf(pid)))

	pool := &idlePool{ep: ep, users: users, dialer: &websocket.Dialer{
		HandshakeTimeout: 15 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512,
	}}
	defer pool.closeAll()

	// Warm-up: open and close a batch the way the measured ones open, so the HTTP
	// connections the tickets come over, the database pool and one-time allocations exist
	// before the "before" figure.
	progress(bench, "warm-up: opening and closing %d sockets", min(o.idleBatch, o.idleConns))
	if err := pool.open(ctx, min(o.idleBatch, o.idleConns)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	pool.closeAll()
	settle := 5 * time.Second
	time.Sleep(settle)
	before, err := rssKiB(pid)
	if err != nil {
		return err
	}
	mBefore := scrapeMetrics(ctx, ep)
	progress(bench, "before: RSS %s, Go heap in use %s, %s goroutines", mib(before), mib(int64(mBefore["go_memstats_heap_inuse_bytes"]/1024)), thousands(int64(mBefore["go_goroutines"])))

	started := time.Now()
	for opened := 0; opened < o.idleConns; {
		n := min(o.idleBatch, o.idleConns-opened)
		if err := pool.open(ctx, n); err != nil {
			return fmt.Errorf("after %d sockets: %w", opened, err)
		}
		opened += n
		rss, _ := rssKiB(pid)
		progress(bench, "%s/%s sockets open (%.0f/s), server RSS %s", thousands(int64(opened)), thousands(int64(o.idleConns)),
			float64(opened)/time.Since(started).Seconds(), mib(rss))
	}
	progress(bench, "all open; letting the server settle for %s", settle)
	time.Sleep(settle)
	after, err := rssKiB(pid)
	if err != nil {
		return err
	}
	mAfter := scrapeMetrics(ctx, ep)
	if closed := pool.closedCount(); closed > 0 {
		return fmt.Errorf("%d of %d sockets were closed by the server while idle (first: %v)", closed, o.idleConns, pool.firstClose())
	}
	if open := int(mAfter["parlor_ws_open_connections"]); mAfter != nil && open != o.idleConns {
		return fmt.Errorf("the server counts %d open sockets, want %d", open, o.idleConns)
	}

	n := float64(o.idleConns)
	per := float64(after-before) / n
	rep.add(bench, fmt.Sprintf("server RSS (VmRSS): before / after %s idle sockets", thousands(int64(o.idleConns))),
		mib(before)+" / "+mib(after), "", "")
	rep.add(bench, "  (after − before) / sockets", fmt.Sprintf("%.1f KiB", per), "≤ 16 KiB", verdict(per <= 16))
	if mBefore != nil && mAfter != nil {
		delta := func(k string) float64 { return (mAfter[k] - mBefore[k]) / n }
		rep.add(bench, "  of which Go heap in use / goroutine stacks, per socket",
			fmt.Sprintf("%.1f / %.1f KiB", delta("go_memstats_heap_inuse_bytes")/1024, delta("go_memstats_stack_inuse_bytes")/1024), "", "")
		rep.add(bench, "  goroutines per socket", fmt.Sprintf("%.2f", delta("go_goroutines")), "", "")
	}
	rep.note("memory: `parlor serve` as a subprocess, RSS from /proc/<pid>/status (the server's alone); %s sockets of %d users (%d each: APP_WS_MAX_CONNS_PER_USER=%d, "+
		"each user a member of one room of their own), opened in batches of %d: a batch's tickets (POST /v1/realtime/tickets, single-use, 30 s) fetched just before it connects, %d at a time; "+
		"Parlor has no ticket or handshake rate limit to configure (sign-up and login throttles are raised for the setup). Ping interval and the rest at their defaults; "+
		"\"before\" is after a warm-up batch opened and closed and %s of quiet, \"after\" %s after the last socket opened. "+
		"RLIMIT_NOFILE %d here (raised to the hard limit; the server inherits it): for more sockets raise the hard limit in the shell first (as root: ulimit -Hn 65536; ulimit -n 65536).",
		thousands(int64(o.idleConns)), o.idleUsers, perUser, perUser, o.idleBatch, idleDialers, settle, settle, lim.Cur)
	return nil
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func rssOf(pid int) int64 {
	v, _ := rssKiB(pid)
	return v
}

// scrapeMetrics reads the unlabelled samples of the server's /metrics (nil if it can't).
func scrapeMetrics(ctx context.Context, ep *endpoint) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.URL+"/metrics", nil)
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
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		if k, v, ok := strings.Cut(line, " "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				out[k] = f
			}
		}
	}
	return out
}

// idleDialers is how many tickets are fetched, and how many sockets dialled, at once.
const idleDialers = 32

// idlePool holds idle sockets, reading each (so pings are answered) without sending.
type idlePool struct {
	ep     *endpoint
	users  []*user
	dialer *websocket.Dialer

	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	next   int // socket counter, to spread sockets over the users
	closed atomic.Int64
	first  error
}

// open opens n more sockets: their tickets first, then the handshakes.
func (p *idlePool) open(ctx context.Context, n int) error {
	p.mu.Lock()
	base := p.next
	p.next += n
	p.mu.Unlock()
	tickets := make([]string, n)
	err := parallel(ctx, n, idleDialers, func(i int) error {
		u := p.users[(base+i)%len(p.users)]
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
	if err != nil {
		return err
	}
	wsBase := "ws" + strings.TrimPrefix(p.ep.URL, "http") + "/v1/realtime?"
	return parallel(ctx, n, idleDialers, func(i int) error {
		conn, res, err := p.dialer.DialContext(ctx, wsBase+url.Values{"ticket": {tickets[i]}}.Encode(), nil)
		if err != nil {
			if res != nil {
				return fmt.Errorf("dial: %w (status %d)", err, res.StatusCode)
			}
			return fmt.Errorf("dial: %w", err)
		}
		// hello arrives once the socket is subscribed to its user's room.
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, data, err := conn.ReadMessage(); err != nil || !strings.Contains(string(data), `"type":"hello"`) {
			_ = conn.Close()
			return fmt.Errorf("no hello: %v %.100s", err, data)
		}
		_ = conn.SetReadDeadline(time.Time{})
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

func (p *idlePool) read(conn *websocket.Conn) {
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
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
}
