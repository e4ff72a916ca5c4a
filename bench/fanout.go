package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/config"
)

// runFanout measures one room with o.subscribers WebSocket subscribers: send-to-receive
// latency at o.fanRate messages per second sent through POST /v1/rooms/{id}/messages, and
// the delivery ceiling (messages × subscribers per second that every subscriber keeps up
// with), then the same ceiling of Centrifugo v6 on the same machine in the same run.
//
// Both servers run as subprocesses; the subscribers and senders run here. Every message
// carries its number in its body ("fb:<n>"); a subscriber finds the numbers in the frames it
// reads and times each against the moment just before its POST.
func runFanout(ctx context.Context, o options, rep *report) error {
	const bench = "fanout"
	if _, note, err := raiseFileLimit(uint64(2*o.subscribers + 512)); err != nil {
		return err
	} else if note != "" {
		progress(bench, "%s", note)
	}
	setup, err := newServeSetup(ctx, bench)
	if err != nil {
		return err
	}
	defer setup.close()
	dir, bin, d := setup.dir, setup.bin, setup.db

	perUser := (o.subscribers + o.fanUsers - 1) / o.fanUsers
	pf, err := startParlorFan(ctx, bench, bin, d.url, dir, o.fanUsers, perUser, o.cpuProfile != "")
	if err != nil {
		return err
	}
	defer pf.close()
	parlor, err := measureFanout(ctx, bench, "parlor", pf, o)
	if err != nil {
		return err
	}
	pf.close()

	var centrifugo *fanMeasure
	cf, cfVersion, cfErr := startCentrifugoFan(ctx, bench, dir)
	if cfErr == nil {
		centrifugo, cfErr = measureFanout(ctx, bench, "centrifugo", cf, o)
		cf.close()
	}
	if errors.Is(cfErr, context.Canceled) {
		return cfErr
	}
	if cfErr != nil {
		progress(bench, "Centrifugo NOT measured: %v", cfErr)
	}

	base := parlor.base
	goal := 50 * time.Millisecond
	rep.add(bench, fmt.Sprintf("Parlor: 1 room, %s subscribers, %g msgs/s × %s via POST …/messages: send → receive p50 / p99 / max",
		thousands(int64(o.subscribers)), o.fanRate, o.fanDuration), latencyTriple(&base.hist), "p99 ≤ 50 ms",
		verdict(base.hist.percentile(99) <= goal && base.lost == 0))
	rep.add(bench, "  delivered / expected (closes; failed sends)",
		fmt.Sprintf("%s / %s (%s; %d closes; %d failed)", thousands(base.received), thousands(base.expected), base.missingText(), base.closeCount(), base.failed),
		"0 lost", verdict(base.lost == 0 && base.closeCount() == 0 && base.failed == 0))
	if base.achieved < 0.95*base.rate {
		rep.add(bench, "  achieved send rate (below the target: the senders could not keep up)", fmt.Sprintf("%.0f msgs/s", base.achieved), "", "")
	}
	if idle := parlor.idle; idle != nil {
		rep.add(bench, fmt.Sprintf("sends: POST …/messages p50 / p99 in an idle room (nobody subscribed; %g msgs/s × %s, same senders)", o.fanRate, o.fanIdle),
			histP50P99(&idle.hist)+failedText(idle.failed, idle.firstErr), "", "")
		ratio := ratioOf(base.sendHist.percentile(99), idle.hist.percentile(99))
		rep.add(bench, fmt.Sprintf("sends during fan-out: POST p50 / p99 at %s subscribers × %g msgs/s (p99 / idle room's p99)", thousands(int64(o.subscribers)), o.fanRate),
			fmt.Sprintf("%s (%.2f×)", histP50P99(&base.sendHist), ratio), "ratio ≤ 2", verdict(ratio <= 2))
	} else {
		rep.add(bench, fmt.Sprintf("sends during fan-out: POST p50 / p99 at %s subscribers × %g msgs/s", thousands(int64(o.subscribers)), o.fanRate),
			histP50P99(&base.sendHist), "ratio ≤ 2", "n/a (-fanout-idle-duration 0)")
	}
	rep.add(bench, fmt.Sprintf("Parlor delivery ceiling, %s subscribers (every subscriber keeps up: see below)", thousands(int64(o.subscribers))), parlor.ceilingText(), "", "")
	if centrifugo != nil {
		cb := centrifugo.base
		rep.add(bench, fmt.Sprintf("Centrifugo %s: same load, %g msgs/s: p50 / p99 / max", cfVersion, o.fanRate),
			fmt.Sprintf("%s (%s)", latencyTriple(&cb.hist), cb.missingText()), "reference", "")
		rep.add(bench, fmt.Sprintf("  server CPU per delivery at %g msgs/s, Parlor (without PostgreSQL and Redis) / Centrifugo", o.fanRate),
			fmt.Sprintf("%.1f / %.1f µs", base.cpuPerDelivery(), cb.cpuPerDelivery()), "Parlor ≤ Centrifugo",
			verdict(base.received > 0 && cb.received > 0 && base.cpuPerDelivery() <= cb.cpuPerDelivery()))
		rep.add(bench, fmt.Sprintf("Centrifugo %s delivery ceiling, same criteria", cfVersion), centrifugo.ceilingText(), "", "")
		if parlor.best != nil && centrifugo.best != nil {
			ratio := parlor.best.deliveryRate() / centrifugo.best.deliveryRate()
			rep.add(bench, "  ceiling Parlor / Centrifugo", fmt.Sprintf("%.2f", ratio), "≥ 1", verdict(ratio >= 1))
		} else {
			rep.add(bench, "  ceiling Parlor / Centrifugo", "n/a (a ceiling was not found)", "≥ 1", "MISS")
		}
	} else {
		rep.add(bench, "Centrifugo v6 delivery ceiling", "NOT MEASURED: "+firstLine(cfErr.Error()), "", "")
		rep.add(bench, fmt.Sprintf("  server CPU per delivery at %g msgs/s, Parlor (without PostgreSQL and Redis) / Centrifugo", o.fanRate),
			fmt.Sprintf("%.1f µs / not measured", base.cpuPerDelivery()), "Parlor ≤ Centrifugo", "n/a")
		rep.add(bench, "  ceiling Parlor / Centrifugo", "n/a", "≥ 1", "n/a")
	}
	if one, many := parlor.oneRoom, parlor.manyRooms; one != nil && many != nil {
		ratio := many.cpuPerDelivery() / one.cpuPerDelivery()
		rep.add(bench, fmt.Sprintf("Parlor server CPU per delivery, users in 1 room / in %d rooms (%g msgs/s × %s each, into the one room)", o.fanUserRooms, o.fanRate, o.fanRoomsRun),
			fmt.Sprintf("%.1f / %.1f µs (%.2f×)", one.cpuPerDelivery(), many.cpuPerDelivery(), ratio), "≤ 1.25×", verdict(one.received > 0 && ratio <= 1.25))
		rep.add(bench, fmt.Sprintf("  send → receive p50 / p99 / max, 1 room / %d rooms per user", o.fanUserRooms),
			fmt.Sprintf("%s (%s); %s (%s)", latencyTriple(&one.hist), one.missingText(), latencyTriple(&many.hist), many.missingText()), "", "")
	} else if o.fanUserRooms <= 1 {
		rep.add(bench, "Parlor server CPU per delivery, users in 1 room / in many", "skipped (-fanout-user-rooms ≤ 1)", "≤ 1.25×", "n/a")
	}

	how := "as a `parlor serve` subprocess"
	if o.cpuProfile != "" {
		how = "in-process, to profile it (its CPU figures include the load generator's)"
	}
	rep.note("fanout: Parlor %s (Redis %s, DB_MAX_CONNS and the rest at their defaults or as set in the environment, APP_WS_QUEUE_SIZE %s); "+
		"%s sockets of %d users (%d each: APP_WS_MAX_CONNS_PER_USER=%d), all members of one room; the sender is the room's owner, "+
		"%d concurrent POST /v1/rooms/{id}/messages on keep-alive connections, paced to the rate, from a sender process of their own (another device, as in production; "+
		"in the subscribers' process each reply waited behind the readers the fan-out had woken); latency from the send time stamped in the message body to the frame read by each subscriber "+
		"(the load generator shares the 2 cores: its scheduling delay is in the figure).",
		how, onOff(redisURL() != ""), envOr("APP_WS_QUEUE_SIZE", "1024 (default)"), thousands(int64(o.subscribers)), o.fanUsers, perUser, perUser, o.fanSenders)
	if idle := parlor.idle; idle != nil {
		rep.note("fanout: sends: each POST /v1/rooms/{id}/messages timed from the request to its 201, by the room's owner with the same %d senders and pacing; "+
			"the idle room is a second room of the owner's that nobody else is in, on the same server with the subscribers connected, run (after 1 s of warm-up) just before the latency run: "+
			"%d sends, %.0f acknowledged per second.", o.fanSenders, idle.acked+idle.failed, idle.achieved)
	}
	if parlor.manyRooms != nil {
		rep.note("fanout: rooms per user: after the ceiling search every subscriber is closed and reopened and %g msgs/s go into the one room for %s (users in that room only); "+
			"then, with the subscribers closed, each of the %d users creates %d rooms of their own through POST /v1/rooms (%s; nobody else in them, no traffic: "+
			"rooms shared by the subscribers would add presence frames), the subscribers reopen (each socket subscribed to %d rooms; what the reconnect brings drained first) "+
			"and the same run is repeated. Server CPU is the `parlor serve` process's from the first send until every subscriber has every message.",
			o.fanRate, o.fanRoomsRun, o.fanUsers, o.fanUserRooms-1, parlor.roomsSetup.Round(100*time.Millisecond), o.fanUserRooms)
	}
	rep.note("fanout: ceiling: %s steps from %g msgs/s (half the rate when the latency run failed), doubling until a step fails, then halving the gap twice; a step passes when %s; "+
		"a step that missed only the p99 bound is run once more. "+
		"Parlor's steps: %s.", o.ceilingStep, 2*o.fanRate, keepsUp(o), parlor.stepsText())
	if centrifugo != nil {
		rep.note("fanout: Centrifugo %s (%s, not part of the repository) as a subprocess with a generated config: memory broker, "+
			"HTTP server API /api/publish with an API key, connection tokens HS256-signed with an HMAC secret (client.token.hmac_secret_key; not client.insecure), "+
			"%s subscribers (user ids bench-0…) on one channel over its WebSocket JSON protocol (raw frames over gorilla/websocket), its defaults otherwise; "+
			"the same senders, rates and pass criteria. It writes no database: Parlor commits each message to PostgreSQL first. "+
			"Its publishes (/api/publish) at %g msgs/s: p50 / p99 %s. Centrifugo's steps: %s.",
			cfVersion, cf.origin, thousands(int64(o.subscribers)), o.fanRate, histP50P99(&centrifugo.base.sendHist), centrifugo.stepsText())
		if parlor.best != nil && centrifugo.best != nil {
			rep.note("fanout: server CPU per delivery at the highest passing step: Parlor %.1f µs (plus PostgreSQL and Redis), Centrifugo %.1f µs.",
				parlor.best.cpuPerDelivery(), centrifugo.best.cpuPerDelivery())
		}
	} else {
		rep.note("fanout: Centrifugo was not measured: %v", cfErr)
	}
	return nil
}

func keepsUp(o options) string {
	return fmt.Sprintf("p99 ≤ %s ms, every message at every subscriber within 10 s of the last send, no closes, no failed sends, ≥ 95 %% of the target send rate", ms(o.ceilingP99))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func histP50P99(h *histogram) string {
	return ms(h.percentile(50)) + " / " + ms(h.percentile(99)) + " ms"
}

// ratioOf is a / b, or +Inf when b is 0.
func ratioOf(a, b time.Duration) float64 {
	if b <= 0 {
		return math.Inf(1)
	}
	return float64(a) / float64(b)
}

func latencyTriple(h *histogram) string {
	return ms(h.percentile(50)) + " / " + ms(h.percentile(99)) + " / " + ms(h.max) + " ms"
}

// fanTarget is a server the fan-out benchmark drives.
type fanTarget interface {
	// subscribe opens subscriber i's socket and returns it once it receives the room's (or
	// channel's) messages.
	subscribe(ctx context.Context, i int) (*websocket.Conn, error)
	// sendTarget is where a sender process publishes into the room (channel).
	sendTarget(ctx context.Context) (sendTarget, error)
	// pid is the server process's.
	pid() int
	// answersPings reports whether a "{}" frame from the server is a ping to answer with
	// "{}" (Centrifugo's JSON protocol); Parlor pings with WebSocket control frames, which
	// gorilla/websocket answers.
	answersPings() bool
}

// fanMeasure is what one server measured: the run at the base rate and the ceiling steps.
type fanMeasure struct {
	name  string
	idle  *pacedSends // publishes into a room nobody subscribes to, before the base run (Parlor)
	base  *fanResult
	steps []*fanResult // the ceiling search, in order
	best  *fanResult   // the highest passing step (the base run counts)

	// The rooms-per-user variant (Parlor): the same subscribers with their users in the one
	// room, then in o.fanUserRooms rooms, and how long creating the extra rooms took.
	oneRoom, manyRooms *fanResult
	roomsSetup         time.Duration
}

// idleSender is a target that can publish into a room (channel) nobody subscribes to.
type idleSender interface {
	idleSendTarget(ctx context.Context) (sendTarget, error)
}

// roomAdder is a target whose subscribing users can be made members of more rooms.
type roomAdder interface {
	// addRooms makes every subscribing user a member of extra more rooms, with no traffic.
	addRooms(ctx context.Context, bench string, extra int) error
}

func (m *fanMeasure) ceilingText() string {
	if m.best == nil {
		return "none: even the lowest step failed"
	}
	return fmt.Sprintf("%s deliveries/s (%.0f msgs/s; p99 %s ms)", thousands(int64(m.best.deliveryRate())), m.best.achieved, ms(m.best.hist.percentile(99)))
}

func (m *fanMeasure) stepsText() string {
	var parts []string
	for _, r := range m.steps {
		parts = append(parts, r.summary())
	}
	return strings.Join(parts, "; ")
}

// measureFanout connects the subscribers to t, runs the base rate, then searches the ceiling.
func measureFanout(ctx context.Context, bench, name string, t fanTarget, o options) (*fanMeasure, error) {
	f := &fanout{bench: bench, name: name, t: t, o: o, subs: make([]*fanSub, o.subscribers)}
	defer f.closeAll()
	for i := range f.subs {
		f.subs[i] = &fanSub{i: i}
	}
	if err := f.connect(ctx); err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // let the connect phase's presence frames drain

	m := &fanMeasure{name: name}
	if is, ok := t.(idleSender); ok && o.fanIdle > 0 {
		idle, err := f.idleSends(ctx, is)
		if err != nil {
			return nil, err
		}
		m.idle = idle
	}
	progress(bench, "%s: %g msgs/s for %s to %s subscribers", name, o.fanRate, o.fanDuration, thousands(int64(o.subscribers)))
	profile := ""
	if name == "parlor" {
		profile = o.cpuProfile
	}
	stopProfile, err := startProfile(bench, "the latency run (Parlor in-process with the load generator)", profile, 0)
	if err != nil {
		return nil, err
	}
	base, err := f.step(ctx, o.fanRate, o.fanDuration, time.Minute)
	stopProfile()
	if err != nil {
		return nil, err
	}
	m.base = base
	progress(bench, "%s: %s", name, base.summary())
	if !base.drained {
		f.reset()
	}

	// The ceiling: double from twice the base rate until a step fails, then halve the gap
	// between the best pass and the lowest failure twice.
	var passed, failed float64
	if base.pass(o) {
		m.best, passed = base, o.fanRate
	} else {
		failed = o.fanRate
	}
	rate := 2 * o.fanRate
	if failed > 0 {
		rate = o.fanRate / 2
	}
	for refine := 0; refine < 2 && rate >= 1; {
		if err := f.quiesce(ctx); err != nil {
			return nil, err
		}
		if err := f.reconnect(ctx); err != nil {
			return nil, err
		}
		progress(bench, "%s: ceiling step %g msgs/s for %s", name, rate, o.ceilingStep)
		r, err := f.step(ctx, rate, o.ceilingStep, 10*time.Second)
		if err != nil {
			return nil, err
		}
		m.steps = append(m.steps, r)
		progress(bench, "%s: %s", name, r.summary())
		if !r.pass(o) && r.onlySlow(o) {
			// A latency spike on a shared machine is not a ceiling: one more try.
			progress(bench, "%s: only p99 missed: trying %g msgs/s once more", name, rate)
			if r, err = f.step(ctx, rate, o.ceilingStep, 10*time.Second); err != nil {
				return nil, err
			}
			r.retry = true
			m.steps = append(m.steps, r)
			progress(bench, "%s: %s", name, r.summary())
		}
		if !r.drained {
			f.reset()
		}
		if r.pass(o) {
			passed = rate
			if m.best == nil || r.deliveryRate() > m.best.deliveryRate() {
				m.best = r
			}
		} else {
			failed = rate
		}
		switch {
		case failed == 0:
			rate *= 2
		case passed == 0:
			rate /= 2
		default:
			refine++
			rate = math.Round((passed + failed) / 2)
		}
	}
	if ra, ok := t.(roomAdder); ok && o.fanUserRooms > 1 {
		if err := f.roomsVariant(ctx, ra, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// idleSends times the POSTs of the latency run's rate and senders into a room nobody is
// subscribed to, for o.fanIdle after a 1 s warm-up: what a send costs without a fan-out.
func (f *fanout) idleSends(ctx context.Context, is idleSender) (*pacedSends, error) {
	o := f.o
	progress(f.bench, "%s: idle room: %g msgs/s for %s into a room nobody is subscribed to (after 1 s of warm-up)", f.name, o.fanRate, o.fanIdle)
	target, err := is.idleSendTarget(ctx)
	if err != nil {
		return nil, err
	}
	warm := max(1, int(o.fanRate))
	job := sendJob{Target: target, Rate: o.fanRate, N: warm, Senders: o.fanSenders, Prefix: "idle warm-up "}
	if _, err := paceRemote(ctx, job, nil, nil); err != nil {
		return nil, err
	}
	n := max(1, int(o.fanRate*o.fanIdle.Seconds()))
	job.N, job.Prefix = n, "idle "
	r, err := paceRemote(ctx, job, nil, func(elapsed time.Duration) {
		progress(f.bench, "%s: idle room: %.0fs", f.name, elapsed.Seconds())
	})
	if err != nil {
		return nil, err
	}
	if r.failed > n/2 {
		return nil, fmt.Errorf("%s: idle room: %d of %d sends failed: %w", f.name, r.failed, n, r.firstErr)
	}
	progress(f.bench, "%s: idle room: %.0f sent/s, POST p50 / p99 / max %s%s", f.name, r.achieved, latencyTriple(&r.hist), failedText(r.failed, r.firstErr))
	return r, nil
}

func failedText(n int, err error) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed: %v)", n, err)
}

// roomsVariant runs the base rate for o.fanRoomsRun twice on freshly opened subscribers:
// with their users in the one room, then in o.fanUserRooms rooms (the others created
// through the API while the subscribers are closed, so their sockets subscribe to them all).
func (f *fanout) roomsVariant(ctx context.Context, ra roomAdder, m *fanMeasure) error {
	o := f.o
	run := func(label string) (*fanResult, error) {
		if err := f.reconnect(ctx); err != nil {
			return nil, err
		}
		if err := f.settle(ctx); err != nil {
			return nil, err
		}
		progress(f.bench, "%s: %s: %g msgs/s for %s", f.name, label, o.fanRate, o.fanRoomsRun)
		r, err := f.step(ctx, o.fanRate, o.fanRoomsRun, time.Minute)
		if err != nil {
			return nil, err
		}
		progress(f.bench, "%s: %s: %s", f.name, label, r.summary())
		return r, nil
	}
	if err := f.quiesce(ctx); err != nil {
		return err
	}
	f.disconnect("rooms per user: reopening every subscriber for a run with their users in 1 room")
	var err error
	if m.oneRoom, err = run("1 room per user"); err != nil {
		return err
	}
	if err := f.quiesce(ctx); err != nil {
		return err
	}
	f.disconnect(fmt.Sprintf("rooms per user: closing every subscriber while each user creates %d rooms of their own", o.fanUserRooms-1))
	start := time.Now()
	if err := ra.addRooms(ctx, f.bench, o.fanUserRooms-1); err != nil {
		return fmt.Errorf("rooms per user: %w", err)
	}
	m.roomsSetup = time.Since(start)
	m.manyRooms, err = run(fmt.Sprintf("%d rooms per user", o.fanUserRooms))
	return err
}

// fanout is one server's subscribers and the message numbering.
type fanout struct {
	bench, name string
	t           fanTarget
	o           options
	subs        []*fanSub
	next        int          // number of the next message
	arrivals    atomic.Int64 // messages the subscribers have read, of any step
	frames      atomic.Int64 // frames of any kind the subscribers have read
}

// fanSub is one subscriber socket and what it received of the current step.
type fanSub struct {
	i    int
	conn *websocket.Conn

	mu     sync.Mutex
	step   *fanStep
	seen   []uint64 // bit k: message step.lo+k arrived
	got    int
	hist   histogram
	closed error // why the socket ended, once it has
	code   int   // its close code, if the server sent one
}

// fanStep is the messages of one step.
type fanStep struct {
	lo, n     int
	acked     []bool       // written by the step before the drain, read after it
	delivered atomic.Int64 // first arrivals at any subscriber
}

// fanPrefix starts a fan-out message's body: "fb:<n>:<send time, Unix ns>" (timedBody).
const fanPrefix = "fb:"

var fanMarker = []byte(`"` + fanPrefix)

// read runs until the socket ends, recording the messages it brings. Each frame is read into
// one buffer that the subscriber keeps (gorilla's ReadMessage allocates and grows a new one
// per frame): the load generator shares the processors with the server it measures, so it
// spends as little as it can, the same for every server.
func (s *fanSub) read(conn *websocket.Conn, pings bool, arrivals, frames *atomic.Int64) {
	var data []byte
	for {
		var err error
		data, err = readFrame(conn, data[:0])
		if err != nil {
			s.mu.Lock()
			if s.conn == conn { // not replaced by reset
				s.closed = err
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					s.code = ce.Code
				}
			}
			s.mu.Unlock()
			return
		}
		now := time.Now()
		frames.Add(1)
		if pings && bytes.Contains(data, []byte("{}")) {
			for _, line := range bytes.Split(data, []byte("\n")) {
				if string(bytes.TrimSpace(line)) == "{}" {
					_ = conn.WriteMessage(websocket.TextMessage, []byte("{}"))
				}
			}
		}
		for rest := data; ; {
			j := bytes.Index(rest, fanMarker)
			if j < 0 {
				break
			}
			rest = rest[j+len(fanMarker):]
			n, k := leadingInt(rest)
			if k == 0 {
				continue
			}
			var sentAt int64
			if k < len(rest) && rest[k] == ':' {
				sentAt, _ = leadingInt64(rest[k+1:])
			}
			arrivals.Add(1)
			s.record(n, sentAt, now)
		}
	}
}

// readFrame reads the next data frame's payload into buf (grown as needed) and returns it.
func readFrame(conn *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return buf, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// leadingInt parses the decimal digits b starts with, and says how many there were.
func leadingInt(b []byte) (int, int) {
	v, k := leadingInt64(b)
	return int(v), k
}

func leadingInt64(b []byte) (v int64, k int) {
	for k < len(b) && k < 19 && b[k] >= '0' && b[k] <= '9' {
		v = v*10 + int64(b[k]-'0')
		k++
	}
	return v, k
}

// record counts message n's first arrival at this subscriber, sent at sentAt (Unix ns).
func (s *fanSub) record(n int, sentAt int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.step
	if st == nil {
		return
	}
	k := n - st.lo
	if k < 0 || k >= st.n || s.seen[k>>6]&(1<<(k&63)) != 0 {
		return
	}
	s.seen[k>>6] |= 1 << (k & 63)
	s.got++
	if sentAt != 0 {
		s.hist.add(now.Sub(time.Unix(0, sentAt)))
	}
	st.delivered.Add(1)
}

func (s *fanSub) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn == nil || s.closed != nil
}

// connect opens every subscriber, 32 at a time.
func (f *fanout) connect(ctx context.Context) error {
	progress(f.bench, "%s: connecting %s subscribers", f.name, thousands(int64(len(f.subs))))
	var done atomic.Int64
	err := parallel(ctx, len(f.subs), 32, func(i int) error {
		if err := f.open(ctx, f.subs[i]); err != nil {
			return err
		}
		if n := done.Add(1); n%250 == 0 || int(n) == len(f.subs) {
			progress(f.bench, "%s: %s/%s subscribers connected", f.name, thousands(n), thousands(int64(len(f.subs))))
		}
		return nil
	})
	return err
}

func (f *fanout) open(ctx context.Context, s *fanSub) error {
	conn, err := f.t.subscribe(ctx, s.i)
	if err != nil {
		return fmt.Errorf("%s subscriber %d: %w", f.name, s.i, err)
	}
	s.mu.Lock()
	s.conn, s.closed, s.code = conn, nil, 0
	s.mu.Unlock()
	go s.read(conn, f.t.answersPings(), &f.arrivals, &f.frames)
	return nil
}

// quiesce waits (up to a minute) until the subscribers have read no message for half a
// second, so a backlog left by a step that failed does not load the next one.
func (f *fanout) quiesce(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	last := f.arrivals.Load()
	for quiet := 0; quiet < 5 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if n := f.arrivals.Load(); n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
	return nil
}

// settle waits (up to a minute) until the subscribers have read no frame of any kind (the
// presence frames of users coming back online, say) for a second.
func (f *fanout) settle(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	last := f.frames.Load()
	for quiet := 0; quiet < 10 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if n := f.frames.Load(); n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
	return nil
}

// reset closes every subscriber (reconnect opens them again): the server drops what it
// still had queued for them, so a backlog a failed step left does not load the next.
func (f *fanout) reset() {
	f.disconnect("the subscribers fell behind: closing them all to drop the backlog")
}

// disconnect closes every subscriber, saying why; reconnect opens them again.
func (f *fanout) disconnect(why string) {
	progress(f.bench, "%s: %s", f.name, why)
	for _, s := range f.subs {
		s.mu.Lock()
		conn := s.conn
		s.conn = nil
		s.mu.Unlock()
		if conn != nil {
			_ = conn.Close()
		}
	}
}

// reconnect reopens the subscribers that are closed.
func (f *fanout) reconnect(ctx context.Context) error {
	var closed []int
	for i, s := range f.subs {
		if s.isClosed() {
			closed = append(closed, i)
		}
	}
	if len(closed) == 0 {
		return nil
	}
	progress(f.bench, "%s: reconnecting %d closed subscribers", f.name, len(closed))
	err := parallel(ctx, len(closed), 32, func(k int) error { return f.open(ctx, f.subs[closed[k]]) })
	time.Sleep(time.Second)
	return err
}

func (f *fanout) closeAll() {
	for _, s := range f.subs {
		s.mu.Lock()
		if s.conn != nil {
			_ = s.conn.Close()
		}
		s.mu.Unlock()
	}
}

// fanResult is what one step measured.
type fanResult struct {
	rate       float64 // target msgs/s
	n          int     // messages scheduled
	acked      int
	failed     int
	firstErr   error
	sendWindow time.Duration
	achieved   float64 // acked msgs/s over the send window
	subs       int
	expected   int64 // acked × subscribers
	received   int64 // of those, arrived
	lost       int64
	closes     map[int]int // close code (0: no close frame) → subscribers
	hist       histogram
	sendHist   histogram     // each acknowledged publish, request → reply (POST → 201)
	serverCPU  float64       // CPU-seconds of the server process from the first send to the drain
	drained    bool          // every live subscriber got every acknowledged message
	drainTime  time.Duration // from the last send to drained (or giving up)
	retry      bool          // a second try of a rate whose first missed only the p99 bound
	stalled    bool          // the drain ended because nothing arrived for 3 s
}

func (r *fanResult) closeCount() int {
	n := 0
	for _, c := range r.closes {
		n += c
	}
	return n
}

func (r *fanResult) deliveryRate() float64 { return r.achieved * float64(r.subs) }

func (r *fanResult) cpuPerDelivery() float64 {
	if r.received == 0 {
		return 0
	}
	return 1e6 * r.serverCPU / float64(r.received)
}

func (r *fanResult) pass(o options) bool {
	return r.failed == 0 && r.lost == 0 && r.closeCount() == 0 && r.hist.n > 0 &&
		r.hist.percentile(99) <= o.ceilingP99 && r.achieved >= 0.95*r.rate
}

// missingText says what did not arrive: lost when the subscribers had stopped receiving,
// late when they were still receiving when the drain gave up.
func (r *fanResult) missingText() string {
	switch {
	case r.lost == 0:
		return "nothing lost"
	case r.stalled:
		return thousands(r.lost) + " lost: nothing arrived for 3 s"
	default:
		return fmt.Sprintf("%s still on their way %s after the last send, not counted as lost", thousands(r.lost), r.drainTime.Round(time.Second))
	}
}

// onlySlow reports whether the step missed only the p99 bound: everything sent and
// delivered, nobody closed.
func (r *fanResult) onlySlow(o options) bool {
	return r.failed == 0 && r.lost == 0 && r.closeCount() == 0 && r.achieved >= 0.95*r.rate && r.hist.percentile(99) > o.ceilingP99
}

func (r *fanResult) summary() string {
	s := fmt.Sprintf("%g msgs/s → %.0f sent/s (%s deliveries/s offered), p50 / p99 / max %s, %s/%s delivered, server CPU %.1f µs per delivery, sends p50 / p99 %s",
		r.rate, r.achieved, thousands(int64(r.deliveryRate())), latencyTriple(&r.hist), thousands(r.received), thousands(r.expected), r.cpuPerDelivery(), histP50P99(&r.sendHist))
	var why []string
	if r.lost > 0 {
		why = append(why, r.missingText())
	}
	if c := r.closeCount(); c > 0 {
		codes := make([]string, 0, len(r.closes))
		for code, k := range r.closes {
			codes = append(codes, fmt.Sprintf("%d×%d", k, code))
		}
		slices.Sort(codes)
		why = append(why, "closes "+strings.Join(codes, " "))
	}
	if r.failed > 0 {
		why = append(why, fmt.Sprintf("%d sends failed (%v)", r.failed, r.firstErr))
	}

	if len(why) > 0 {
		s += " [" + strings.Join(why, ", ") + "]"
	}
	if r.retry {
		s = "again: " + s
	}
	return s
}

// step publishes rate messages per second for d, waits for every live subscriber to have
// them all (see the drain below), and collects the figures.
func (f *fanout) step(ctx context.Context, rate float64, d, drainMax time.Duration) (*fanResult, error) {
	n := max(1, int(rate*d.Seconds()))
	st := &fanStep{lo: f.next, n: n, acked: make([]bool, n)}
	f.next += n
	for _, s := range f.subs {
		s.mu.Lock()
		s.step, s.seen, s.got, s.hist = st, make([]uint64, (n+63)/64), 0, histogram{}
		s.mu.Unlock()
	}
	r := &fanResult{rate: rate, n: n, subs: len(f.subs), closes: map[int]int{}}
	cpu0 := cpuSeconds(f.t.pid())

	lastProgress := time.Now()
	target, err := f.t.sendTarget(ctx)
	if err != nil {
		return nil, err
	}
	job := sendJob{Target: target, Rate: rate, N: n, Lo: st.lo, Senders: f.o.fanSenders, Prefix: fanPrefix}
	sent, err := paceRemote(ctx, job, st.acked, func(elapsed time.Duration) {
		lastProgress = time.Now()
		progress(f.bench, "%s: %g msgs/s: %.0fs, %s deliveries so far", f.name, rate, elapsed.Seconds(), thousands(st.delivered.Load()))
	})
	if err != nil {
		return nil, err
	}
	r.sendWindow, r.acked, r.failed, r.firstErr, r.achieved = sent.window, sent.acked, sent.failed, sent.firstErr, sent.achieved
	r.sendHist = sent.hist
	if r.failed > n/2 {
		return nil, fmt.Errorf("%s: %d of %d sends failed: %w", f.name, r.failed, n, r.firstErr)
	}

	// Drain: wait until every subscriber still open has every acknowledged message, or
	// nothing has arrived for 3 s (what is missing then is lost), or drainMax has passed
	// (what is missing is still queued: either way the subscribers did not keep up).
	drainStart := time.Now()
	lastCount, lastChange := f.arrivals.Load(), drainStart
	for {
		live := 0
		for _, s := range f.subs {
			if !s.isClosed() {
				live++
			}
		}
		got := st.delivered.Load()
		if got >= int64(r.acked*live) {
			r.drained = true
			break
		}
		if n := f.arrivals.Load(); n != lastCount { // messages of this step or, behind them, of earlier ones
			lastCount, lastChange = n, time.Now()
		}
		if time.Since(lastChange) > 3*time.Second {
			r.stalled = true
			break
		}
		if time.Since(drainStart) > drainMax {
			break
		}
		if time.Since(lastProgress) >= 5*time.Second {
			lastProgress = time.Now()
			progress(f.bench, "%s: %g msgs/s: draining: %s/%s delivered", f.name, rate, thousands(got), thousands(int64(r.acked*live)))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.drainTime = time.Since(drainStart)
	r.serverCPU = cpuSeconds(f.t.pid()) - cpu0

	for _, s := range f.subs {
		s.mu.Lock()
		for k := range n {
			if st.acked[k] {
				r.expected++
				if s.seen[k>>6]&(1<<(k&63)) != 0 {
					r.received++
				}
			}
		}
		r.hist.merge(&s.hist)
		if s.closed != nil {
			r.closes[s.code]++
		}
		s.step, s.seen = nil, nil
		s.mu.Unlock()
	}
	r.lost = r.expected - r.received
	return r, nil
}

// pacedSends is what a paced run of sends measured.
type pacedSends struct {
	acked, failed int
	firstErr      error
	window        time.Duration // from the first send to the last reply
	achieved      float64       // acknowledged sends per second over the window
	hist          histogram     // each acknowledged send, request → reply
}

// pace calls send(0…n-1) at rate calls per second, each from one of senders goroutines (a
// call waits for a free sender: at most senders are in flight), and times each call; every
// 2 s it calls tick with the time since the start and the calls acknowledged so far.
func pace(ctx context.Context, rate float64, n, senders int, send func(k int) error, tick func(elapsed time.Duration, acked int64)) (*pacedSends, error) {
	r := &pacedSends{}
	var acked, failed atomic.Int64
	var mu sync.Mutex
	var errOnce sync.Once
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h histogram
			for k := range jobs {
				t0 := time.Now()
				if err := send(k); err != nil {
					failed.Add(1)
					errOnce.Do(func() { r.firstErr = err })
					continue
				}
				h.add(time.Since(t0))
				acked.Add(1)
			}
			mu.Lock()
			r.hist.merge(&h)
			mu.Unlock()
		}()
	}
	start := time.Now()
	lastTick := start
	interval := time.Duration(float64(time.Second) / rate)
dispatch:
	for k := 0; k < n; k++ {
		if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case jobs <- k:
		case <-ctx.Done():
			break dispatch
		}
		if tick != nil && time.Since(lastTick) >= 2*time.Second {
			lastTick = time.Now()
			tick(time.Since(start), acked.Load())
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.window = time.Since(start)
	r.acked, r.failed = int(acked.Load()), int(failed.Load())
	r.achieved = float64(r.acked) / r.window.Seconds()
	return r, nil
}

// parallel runs fn(0…n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, fn func(int) error) error {
	var (
		next     atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// parlorFan is Parlor under the fan-out benchmark: a `parlor serve` subprocess (or, to
// profile, an in-process server), a room, its owner (the sender) and the subscribing users.
type parlorFan struct {
	*endpoint
	proc   *process
	inproc *server
	owner  *user
	users  []*user
	room   uuid.UUID
	idle   uuid.UUID // the owner's second room, nobody else in it
	dialer *websocket.Dialer
}

// startParlorFan starts Parlor as `parlor serve`, or in-process when inProcess (so that a
// CPU profile sees the server), and sets up the room.
func startParlorFan(ctx context.Context, bench, bin, dbURL, dir string, users, perUser int, inProcess bool) (*parlorFan, error) {
	p := &parlorFan{dialer: &websocket.Dialer{HandshakeTimeout: 10 * time.Second}}
	if inProcess {
		srv, err := startServer(ctx, dbURL, func(c *config.Config) { c.WSMaxConnsPerUser = perUser })
		if err != nil {
			return nil, err
		}
		p.inproc, p.endpoint = srv, srv.endpoint
		progress(bench, "parlor is serving in-process (to profile it), APP_WS_MAX_CONNS_PER_USER=%d", perUser)
	} else {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		env, err := parlorEnv(addr, dbURL, "APP_WS_MAX_CONNS_PER_USER="+strconv.Itoa(perUser))
		if err != nil {
			return nil, err
		}
		if p.proc, err = startProcess("parlor serve", bin, []string{"serve"}, env, filepath.Join(dir, "parlor-fanout.log")); err != nil {
			return nil, err
		}
		p.endpoint = newEndpoint("http://" + addr)
		if err := p.proc.waitReady(ctx, p.URL+"/readyz", 20*time.Millisecond, 30*time.Second); err != nil {
			p.close()
			return nil, err
		}
		progress(bench, "parlor serve is ready (pid %d, APP_WS_MAX_CONNS_PER_USER=%d)", p.proc.pid(), perUser)
	}
	var err error
	if p.owner, err = p.register(ctx, "owner"); err != nil {
		p.close()
		return nil, err
	}
	res, err := p.owner.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "fan-out room"})
	if err == nil && res.JSON201 == nil {
		err = fmt.Errorf("status %d: %s", res.StatusCode(), res.Body)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("create room: %w", err)
	}
	p.room = res.JSON201.Id
	res, err = p.owner.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "idle room"})
	if err == nil && res.JSON201 == nil {
		err = fmt.Errorf("status %d: %s", res.StatusCode(), res.Body)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("create the idle room: %w", err)
	}
	p.idle = res.JSON201.Id
	if p.users, err = p.registerMany(ctx, bench, "subscriber", users); err != nil {
		p.close()
		return nil, err
	}
	err = parallel(ctx, len(p.users), 8, func(i int) error {
		res, err := p.users[i].Client.JoinRoomWithResponse(ctx, p.room, nil)
		if err != nil {
			return fmt.Errorf("join room: %w", err)
		}
		if res.JSON200 == nil {
			return fmt.Errorf("join room: status %d: %s", res.StatusCode(), res.Body)
		}
		return nil
	})
	if err != nil {
		p.close()
		return nil, err
	}
	progress(bench, "%d users joined the room", len(p.users))
	return p, nil
}

func (p *parlorFan) close() {
	if p.inproc != nil {
		p.inproc.close()
		p.inproc = nil
	}
	if p.proc != nil {
		if err := p.proc.stop(15 * time.Second); err != nil {
			progress("fanout", "parlor serve: %v", err)
		}
		p.proc = nil
		p.http.CloseIdleConnections()
	}
}

// pid is the server's process: this one when Parlor runs in-process.
func (p *parlorFan) pid() int {
	if p.proc == nil {
		return os.Getpid()
	}
	return p.proc.pid()
}

func (p *parlorFan) answersPings() bool { return false }

func (p *parlorFan) subscribe(ctx context.Context, i int) (*websocket.Conn, error) {
	u := p.users[i%len(p.users)]
	res, err := u.Client.CreateRealtimeTicketWithResponse(ctx)
	if err != nil {
		return nil, fmt.Errorf("ticket: %w", err)
	}
	if res.JSON201 == nil {
		return nil, fmt.Errorf("ticket: status %d: %s", res.StatusCode(), res.Body)
	}
	u2 := "ws" + strings.TrimPrefix(p.URL, "http") + "/v1/realtime?" + url.Values{"ticket": {res.JSON201.Ticket}, "batch": {"true"}}.Encode()
	conn, hres, err := p.dialer.DialContext(ctx, u2, nil)
	if err != nil {
		if hres != nil {
			return nil, fmt.Errorf("dial: %w (status %d)", err, hres.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	// The socket is subscribed to the room once hello arrives.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("waiting for hello: %w", err)
	}
	if !bytes.HasPrefix(data, []byte(`{"type":"hello"`)) && !bytes.Contains(data, []byte(`"type":"hello"`)) {
		_ = conn.Close()
		return nil, fmt.Errorf("the first frame is not hello: %.200s", data)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

func (p *parlorFan) sendTarget(ctx context.Context) (sendTarget, error) {
	return p.target(ctx, p.room)
}

func (p *parlorFan) idleSendTarget(ctx context.Context) (sendTarget, error) {
	return p.target(ctx, p.idle)
}

// target sends as the room's owner, with an access token fresh enough for the run.
func (p *parlorFan) target(ctx context.Context, room uuid.UUID) (sendTarget, error) {
	token, err := p.owner.auth.current(ctx)
	return sendTarget{Kind: "parlor", URL: p.URL, Token: token, Room: room.String()}, err
}

// addRooms has every subscribing user create extra rooms of their own (nobody else in them:
// rooms shared between the subscribers would multiply the presence frames of the connect
// phase), 8 requests at a time, spread over the users.
func (p *parlorFan) addRooms(ctx context.Context, bench string, extra int) error {
	total := len(p.users) * extra
	progress(bench, "creating %s rooms: %d for each of %d users", thousands(int64(total)), extra, len(p.users))
	var done atomic.Int64
	start := time.Now()
	return parallel(ctx, total, 8, func(k int) error {
		u := p.users[k%len(p.users)]
		res, err := u.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "quiet room " + strconv.Itoa(k/len(p.users))})
		if err == nil && res.JSON201 == nil {
			err = fmt.Errorf("status %d: %.200s", res.StatusCode(), res.Body)
		}
		if err != nil {
			return fmt.Errorf("create room: %w", err)
		}
		if n := done.Add(1); n%1000 == 0 || n == int64(total) {
			progress(bench, "%s/%s rooms created (%.0f/s)", thousands(n), thousands(int64(total)), float64(n)/time.Since(start).Seconds())
		}
		return nil
	})
}
