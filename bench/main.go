// Command bench reproduces the performance figures of DESIGN.md ("Performance the product
// must reach") on the machine it runs on, and prints them as a table with the machine.
//
//	go run ./bench [flags] send|sync|startup|fanout|memory|all
//
// Every benchmark creates its own database (on BENCH_DB_URL, a role with CREATEDB), migrates
// it, and drops it at the end, also when interrupted. Parlor runs in-process (send, sync) on
// a real TCP listener and is called through the generated Go client over keep-alive HTTP, or
// as a built binary (startup, and fanout and memory, which measure the server process on its
// own). fanout also runs Centrifugo v6, built on first use outside the repository. all runs
// send, sync and startup. Progress goes to stderr, the table to stdout.
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
	subscribers int
	fanUsers    int
	fanRate     float64
	fanDuration time.Duration
	fanSenders  int
	ceilingStep time.Duration
	ceilingP99  time.Duration
	// memory
	idleConns int
	idleUsers int
	idleBatch int
	// profiling
	cpuProfile string
}

// benchmarks in the order `all` runs them; fanout and memory take minutes each and stay
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
}

func main() {
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
	flag.IntVar(&o.idleConns, "idle-conns", 10_000, "memory: idle WebSocket connections to open")
	flag.IntVar(&o.idleUsers, "idle-users", 100, "memory: users the idle connections belong to (APP_WS_MAX_CONNS_PER_USER is set to conns/users)")
	flag.IntVar(&o.idleBatch, "idle-batch", 500, "memory: sockets opened per batch (tickets fetched just before)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "send: write a CPU profile of this process (server + load generator) during the 64-room HTTP run to `file`;\n"+
		"fanout: run Parlor in-process instead of as a subprocess and profile it (with the load generator) during the latency run")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./bench [flags] send|sync|startup|fanout|memory|all\n\n"+
			"all runs send, sync and startup; fanout and memory take minutes each and run only by name.\n\n"+
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
		o.ceilingStep <= 0 || o.idleConns < 1 || o.idleUsers < 1 || o.idleUsers > o.idleConns || o.idleBatch < 1 {
		fmt.Fprintln(os.Stderr, "bench: fanout and memory sizes must be positive; fanout-users ≤ subscribers, idle-users ≤ idle-conns")
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
