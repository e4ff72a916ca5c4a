// Command bench reproduces the performance figures of DESIGN.md ("Performance the product
// must reach") on the machine it runs on, and prints them as a table with the machine.
//
//	go run ./bench [flags] send|sync|startup|fanout|memory|soak|all
//
// Every benchmark creates its own database (on BENCH_DB_URL, a role with CREATEDB), migrates
// it, and drops it at the end, also when interrupted. Parlor runs in-process (send, sync) on
// a real TCP listener and is called through the generated Go client over keep-alive HTTP, or
// as a built binary (startup, and fanout and memory, which measure the server process on its
// own). fanout and memory also run Centrifugo v6 (built on first use outside the repository)
// under the same load, as the reference. all runs send, sync and startup. Progress goes to
// stderr, the table to stdout.
//
// To look into a figure: -diagnose (sync) prints the plans of the sync query and times a
// server whose connections plan every statement for its parameters; -cpuprofile (send)
// profiles the in-process server and its load generator during the 64-room run, and
// (fanout) runs Parlor in-process to profile it during the latency run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the knobs of every benchmark; the defaults keep each one short on a 2-core
// machine.
type options struct {
	// send
	senders  int
	warmup   time.Duration
	duration time.Duration
	short    time.Duration // the 1-room pair and the plain-insert reference
	// sync
	messages  int
	rooms     int
	userRooms int
	requests  int
	diagnose  bool
	// startup
	starts int
	// fanout
	subscribers  int
	fanUsers     int
	fanRate      float64
	fanDuration  time.Duration
	fanSenders   int
	ceilingStep  time.Duration
	ceilingP99   time.Duration
	fanIdle      time.Duration // the idle-room send run (0: skipped)
	fanUserRooms int           // rooms per subscriber's user in the rooms-per-user variant (≤ 1: skipped)
	fanRoomsRun  time.Duration // length of each run of the rooms-per-user variant
	// memory
	idleConns   []int // socket counts, each measured on a fresh server
	idlePerUser int
	idleBatch   int
	idleTraffic int // messages sent into each user's room after the idle figure (0: none)
	idleSettle  time.Duration
	idleSources int // sockets per loopback source address
	// soak
	soakDuration time.Duration
	soakWarmup   time.Duration
	soakRate     float64
	soakUsers    int
	soakRooms    int
	soakSyncers  int
	soakSockets  int
	soakTopups   int
	// profiling
	cpuProfile string
}

// benchmarks in the order `all` runs them; fanout, memory and soak take minutes each and stay
// out of `all`.
var benchmarks = []struct {
	name  string
	run   func(context.Context, options, *report) error
	inAll bool
}{
	{"send", runSend, true},
	{"sync", runSync, true},
	{"startup", runStartup, true},
	{"fanout", runFanout, false},
	{"memory", runMemory, false},
	{"soak", runSoak, false},
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == senderArg {
		os.Exit(runSender())
	}
	var o options
	flag.IntVar(&o.senders, "senders", 64, "send: concurrent senders (one room each) and pgbench clients")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "send: warm-up before measuring each HTTP run")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "send: measured time of the 64-room HTTP run and its pgbench twin")
	flag.DurationVar(&o.short, "short", 4*time.Second, "send: measured time of the 1-room pair and of the plain-insert reference")
	flag.IntVar(&o.messages, "messages", 1_000_000, "sync: messages to seed")
	flag.IntVar(&o.rooms, "rooms", 2000, "sync: rooms to seed the messages over")
	flag.IntVar(&o.userRooms, "user-rooms", 200, "sync: rooms the syncing user is a member of")
	flag.IntVar(&o.requests, "requests", 2000, "sync: measured requests of the caught-up sync")
	flag.BoolVar(&o.diagnose, "diagnose", false, "sync: print EXPLAIN (ANALYZE, BUFFERS) of the caught-up SyncEvents query and time it on a server with plan_cache_mode=force_custom_plan")
	flag.IntVar(&o.starts, "starts", 5, "startup: process starts to time")
	flag.IntVar(&o.subscribers, "subscribers", 1000, "fanout: WebSocket subscribers of the one room (and of Centrifugo's channel)")
	flag.IntVar(&o.fanUsers, "fanout-users", 100, "fanout: users the subscribers belong to (APP_WS_MAX_CONNS_PER_USER is set to subscribers/users)")
	flag.Float64Var(&o.fanRate, "fanout-rate", 100, "fanout: messages per second of the latency run; the ceiling search starts at twice this")
	flag.DurationVar(&o.fanDuration, "fanout-duration", 20*time.Second, "fanout: length of the latency run")
	flag.IntVar(&o.fanSenders, "fanout-senders", 32, "fanout: concurrent POSTs (Parlor) or publishes (Centrifugo) the paced sender may have in flight")
	flag.DurationVar(&o.ceilingStep, "ceiling-step", 5*time.Second, "fanout: length of each ceiling step")
	flag.DurationVar(&o.ceilingP99, "ceiling-p99", 500*time.Millisecond, "fanout: highest p99 send → receive latency of a passing ceiling step (a backlog that grows through a step pushes p99 past it)")
	flag.DurationVar(&o.fanIdle, "fanout-idle-duration", 10*time.Second, "fanout: length of the idle-room run: the same senders and rate into a second room nobody is subscribed to, timing each POST (request → 201)\n"+
		"to compare with the POSTs during the latency run; 0 skips it")
	flag.IntVar(&o.fanUserRooms, "fanout-user-rooms", 200, "fanout: rooms each subscriber's user is in for the rooms-per-user variant (the fan-out room plus rooms of their own, created\n"+
		"through the API, no traffic in them), compared with a run of the same length where they are in the one room; 1 or 0 skips it")
	flag.DurationVar(&o.fanRoomsRun, "fanout-rooms-duration", 10*time.Second, "fanout: length of each of the two runs (1 room per user, then -fanout-user-rooms) of the rooms-per-user variant, at -fanout-rate")
	flag.Func("idle-conns", "memory: comma-separated idle WebSocket counts, each measured on a fresh server (Parlor, then Centrifugo) (default 10000,50000)", func(v string) error {
		sizes, err := parseSizes(v)
		o.idleConns = sizes
		return err
	})
	o.idleConns = []int{10_000, 50_000}
	flag.IntVar(&o.idlePerUser, "idle-per-user", 100, "memory: most sockets per user: ceil(conns/this) users, APP_WS_MAX_CONNS_PER_USER set to the sockets each gets")
	flag.IntVar(&o.idleBatch, "idle-batch", 500, "memory: sockets opened per batch (tickets fetched just before)")
	flag.IntVar(&o.idleTraffic, "idle-traffic", 5, "memory: messages then sent into each user's room (Centrifugo: channel), waiting for every socket to read them all, before the RSS after traffic (0 skips; at most 64)")
	flag.DurationVar(&o.idleSettle, "idle-settle", 5*time.Second, "memory: quiet time before each RSS reading")
	flag.IntVar(&o.idleSources, "idle-per-source", 20_000, "memory: most sockets dialled from one loopback source address (127.0.0.2, 127.0.0.3, …; one address reaches ~28k)")
	flag.DurationVar(&o.soakDuration, "soak-duration", 10*time.Minute, "soak: length of the mixed load")
	flag.DurationVar(&o.soakWarmup, "soak-warmup", 30*time.Second, "soak: warm-up under the same load before the baseline is read")
	flag.Float64Var(&o.soakRate, "soak-rate", 20, "soak: messages sent per second")
	flag.IntVar(&o.soakUsers, "soak-users", 40, "soak: users")
	flag.IntVar(&o.soakRooms, "soak-rooms", 10, "soak: rooms (each user is in 3)")
	flag.IntVar(&o.soakSyncers, "soak-syncers", 20, "soak: users long-polling GET /v1/sync")
	flag.IntVar(&o.soakSockets, "soak-sockets", 60, "soak: socket clients (each opens, reads for 1–15 s, closes, resumes)")
	flag.IntVar(&o.soakTopups, "soak-topups", 2, "soak: clients buying credit (a top-up every 2 s, paid or cancelled)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "send: write a CPU profile of this process (server + load generator) during the 64-room HTTP run to `file`;\n"+
		"fanout: run Parlor in-process instead of as a subprocess and profile it (with the load generator) during the latency run")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./bench [flags] send|sync|startup|fanout|memory|all\n\n"+
			"all runs send, sync and startup; fanout, memory and soak take minutes each and run only by name.\n\n"+
			"environment: BENCH_DB_URL (admin URL of a role with CREATEDB; default %s),\n"+
			"BENCH_REDIS_URL (default %s; \"none\" runs without Redis), PGBENCH (path of pgbench),\n"+
			"BENCH_CENTRIFUGO (fanout: path of a Centrifugo v6 binary instead of building %s@%s; \"none\" skips it)\n\nflags:\n",
			defaultAdminURL, defaultRedisURL, centrifugoModule, centrifugoVersion)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var selected []int
	for i, b := range benchmarks {
		if flag.Arg(0) == b.name || flag.Arg(0) == "all" && b.inAll {
			selected = append(selected, i)
		}
	}
	if len(selected) == 0 {
		fmt.Fprintf(os.Stderr, "bench: unknown benchmark %q\n\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	if o.senders < 1 || o.rooms < 1 || o.userRooms < 1 || o.userRooms > o.rooms || o.messages < o.rooms || o.requests < 1 || o.starts < 1 {
		fmt.Fprintln(os.Stderr, "bench: senders, requests and starts must be positive; user-rooms ≤ rooms ≤ messages")
		os.Exit(2)
	}
	if o.subscribers < 1 || o.fanUsers < 1 || o.fanUsers > o.subscribers || o.fanRate <= 0 || o.fanDuration <= 0 || o.fanSenders < 1 ||
		o.ceilingStep <= 0 || o.fanIdle < 0 || o.fanUserRooms < 0 || o.fanRoomsRun <= 0 ||
		len(o.idleConns) == 0 || o.idlePerUser < 1 || o.idleBatch < 1 || o.idleTraffic < 0 || o.idleTraffic > 64 || o.idleSettle < 0 || o.idleSources < 1 {
		fmt.Fprintln(os.Stderr, "bench: fanout and memory sizes must be positive; fanout-users ≤ subscribers, idle-traffic ≤ 64")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := &report{}
	failed := false
	for _, i := range selected {
		b := benchmarks[i]
		load := loadAverage()
		progress(b.name, "starting (1-minute load average %s)", load)
		rep.note("%s: 1-minute load average at the start %s on %d cores (counts `go run`'s compile and earlier benchmarks; work of others on the machine skews figures).", b.name, load, runtime.NumCPU())
		start := time.Now()
		if err := b.run(ctx, o, rep); err != nil {
			failed = true
			rep.add(b.name, "FAILED: "+err.Error(), "", "", "")
			progress(b.name, "failed: %v", err)
			if errors.Is(err, context.Canceled) {
				break
			}
			continue
		}
		progress(b.name, "done in %s", time.Since(start).Round(100*time.Millisecond))
	}
	rep.print(os.Stdout, machine(context.WithoutCancel(ctx)))
	if failed {
		os.Exit(1)
	}
}

// parseSizes parses a comma-separated list of positive counts ("10000,50000"; "10k" and
// "50_000" work too).
func parseSizes(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		f = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(f), "_", ""))
		mult := 1
		if t, ok := strings.CutSuffix(f, "k"); ok {
			f, mult = t, 1000
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

// loadAverage is the 1-minute load average, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
