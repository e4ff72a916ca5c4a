package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/apiclient"
)

// runSend measures POST /v1/rooms/{id}/messages at o.senders concurrent senders against
// pgbench running the same SQL on the same database.
//
// Each sender is a user of its own who owns a room of its own and sends only there (one
// sender per room): a send holds its room's row lock from the seq bump to the commit, so
// senders sharing a room serialize. The 1-room pair (every sender in one room) shows that
// ceiling.
func runSend(ctx context.Context, o options, rep *report) error {
	const bench = "send"
	d, err := newDatabase(ctx, bench)
	if err != nil {
		return err
	}
	defer d.drop()
	progress(bench, "database %s ready", d.name)
	srv, err := startServer(ctx, d.url)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			srv.close()
		}
	}()
	poolSize := srv.Pool.Config().MaxConns

	users, err := srv.registerMany(ctx, bench, "sender", o.senders)
	if err != nil {
		return err
	}
	rooms := make([]uuid.UUID, len(users))
	for i, u := range users {
		res, err := u.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: fmt.Sprintf("bench room %02d", i)})
		if err != nil {
			return fmt.Errorf("create room: %w", err)
		}
		if res.JSON201 == nil {
			return fmt.Errorf("create room: status %d: %s", res.StatusCode(), res.Body)
		}
		rooms[i] = res.JSON201.Id
	}
	for _, u := range users[1:] {
		res, err := u.Client.JoinRoomWithResponse(ctx, rooms[0], nil)
		if err != nil {
			return fmt.Errorf("join room: %w", err)
		}
		if res.JSON200 == nil {
			return fmt.Errorf("join room: status %d: %s", res.StatusCode(), res.Body)
		}
	}
	progress(bench, "%d users own a room each; all joined room 0", len(users))

	stopProfile, err := startProfile(bench, fmt.Sprintf("the %d-room run", len(rooms)), o.cpuProfile, o.warmup)
	if err != nil {
		return err
	}
	many, err := httpSend(ctx, bench, fmt.Sprintf("%d rooms", len(rooms)), users, func(i int) uuid.UUID { return rooms[i] }, o.warmup, o.duration)
	stopProfile()
	if err != nil {
		return err
	}
	one, err := httpSend(ctx, bench, "1 room", users, func(int) uuid.UUID { return rooms[0] }, o.warmup/2, o.short)
	if err != nil {
		return err
	}
	srv.close()
	closed = true

	// Every 201 must be a stored message: a cheap check that the figures count real work.
	pool, err := d.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	var stored int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM messages").Scan(&stored); err != nil {
		return err
	}
	// (A failed request may still have committed.)
	if sent, failed := many.created+one.created, many.failed+one.failed; stored < sent || stored > sent+failed {
		return fmt.Errorf("the server answered 201 %d times (%d requests failed) but stored %d messages", sent, failed, stored)
	}

	// pgbench's client i plays sender i: the same room and author.
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_senders (n integer PRIMARY KEY, room_id uuid NOT NULL, author_id uuid NOT NULL);
		CREATE TABLE bench_plain (id bigserial PRIMARY KEY, body text NOT NULL)`); err != nil {
		return err
	}
	for i, u := range users {
		if _, err := pool.Exec(ctx, "INSERT INTO bench_senders VALUES ($1, $2, $3)", i, rooms[i], u.ID); err != nil {
			return err
		}
	}
	progress(bench, "pgbench: the send's SQL, %d clients × %d rooms, %s", o.senders, len(rooms), o.duration)
	before := sampleCPU()
	pgMany, err := runPgbench(ctx, d.url, sendScript, o.senders, o.duration)
	if err != nil {
		return err
	}
	pgCPU := cpuBetween(before, sampleCPU(), pgMany.txs)
	if _, err := pool.Exec(ctx, "UPDATE bench_senders SET room_id = $1", rooms[0]); err != nil {
		return err
	}
	progress(bench, "pgbench: the send's SQL, %d clients × 1 room, %s", o.senders, o.short)
	pgOne, err := runPgbench(ctx, d.url, sendScript, o.senders, o.short)
	if err != nil {
		return err
	}
	progress(bench, "pgbench: plain one-row insert, %d clients, %s", o.senders, o.short)
	pgPlain, err := runPgbench(ctx, d.url, "INSERT INTO bench_plain (body) VALUES ('bench message');\n", o.senders, o.short)
	if err != nil {
		return err
	}
	for _, r := range []pgbenchResult{pgMany, pgOne, pgPlain} {
		if r.failed != "" {
			return fmt.Errorf("pgbench: %s", r.failed)
		}
	}

	n := len(rooms)
	manyRatio, oneRatio := many.rate()/pgMany.tps, one.rate()/pgOne.tps
	rep.add(bench, fmt.Sprintf("HTTP POST /v1/rooms/{id}/messages, %d senders × %d rooms", o.senders, n), rate(many.rate(), "req/s"), "", "")
	rep.add(bench, "  latency p50 / p99", p50p99(many.lat), "", "")
	rep.add(bench, fmt.Sprintf("pgbench, the send's SQL, %d clients × %d rooms", o.senders, n), rate(pgMany.tps, "tps"), "", "")
	rep.add(bench, "  HTTP / pgbench", fmt.Sprintf("%.2f", manyRatio), "≥ 0.8", verdict(manyRatio >= 0.8))
	rep.add(bench, fmt.Sprintf("HTTP POST, %d senders × 1 room (room lock serializes)", o.senders), rate(one.rate(), "req/s"), "", "")
	rep.add(bench, "  latency p50 / p99", p50p99(one.lat), "", "")
	rep.add(bench, fmt.Sprintf("pgbench, the send's SQL, %d clients × 1 room", o.senders), rate(pgOne.tps, "tps"), "", "")
	rep.add(bench, "  HTTP / pgbench, 1 room", fmt.Sprintf("%.2f", oneRatio), "", "")
	rep.add(bench, fmt.Sprintf("pgbench plain one-row insert, %d clients", o.senders), rate(pgPlain.tps, "tps"), "reference", "")
	rep.note("send: %d users, each the owner of its own room and its only sender; HTTP %s measured after %s warm-up (1 room: %s after %s); "+
		"server pool DB_MAX_CONNS=%d, Redis %s; pgbench -n -M prepared -c %d -j %d, the same database right after.",
		o.senders, o.duration, o.warmup, o.short, o.warmup/2, poolSize, onOff(redisURL() != ""), o.senders, min(2, o.senders))
	if c := many.cpu; c.ok && pgCPU.ok {
		rep.note("send: CPU in the %d-room HTTP run: machine %.0f%% busy; per request %.0f µs in this process (server + load generator) and %.0f µs elsewhere (PostgreSQL, Redis, kernel). "+
			"pgbench run: machine %.0f%% busy, %.0f µs per transaction (PostgreSQL + pgbench).",
			n, 100*c.busy, 1e6*c.perCall, 1e6*c.other, 100*pgCPU.busy, 1e6*(pgCPU.perCall+pgCPU.other))
	}
	if many.failed+one.failed > 0 {
		rep.note("send: %d requests failed; first: %v", many.failed+one.failed, firstNonNil(many.firstErr, one.firstErr))
	}
	return nil
}

// sendScript is one send's SQL as Parlor runs it: bump the room's seq under its row lock,
// insert the message and its event, commit. Client i is sender i (bench_senders).
const sendScript = `BEGIN;
UPDATE rooms r SET last_seq = r.last_seq + 1 FROM bench_senders s
 WHERE s.n = :client_id AND r.id = s.room_id AND r.deleted_at IS NULL
 RETURNING r.id AS room, r.last_seq AS seq, s.author_id AS author \gset
INSERT INTO messages (room_id, seq, author_id, client_msg_id, body)
 VALUES (:room, :seq, :author, gen_random_uuid(), 'bench message') RETURNING id AS msg \gset
INSERT INTO room_events (room_id, seq, type, actor_id, message_id)
 VALUES (:room, :seq, 'message.created', :author, :msg);
COMMIT;
`

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func firstNonNil(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sendRun is what one HTTP send run measured.
type sendRun struct {
	window   time.Duration
	counted  int64 // requests answered 201 within the window
	created  int64 // every 201, warm-up included
	failed   int64
	firstErr error
	lat      latencies // of the requests counted
	cpu      cpuUse    // during the window
}

func (r sendRun) rate() float64 { return float64(r.counted) / r.window.Seconds() }

// httpSend runs one sender per user, user i sending to room(i), each message with a new
// client_msg_id, and counts the requests that complete within [warmup, warmup+d).
func httpSend(ctx context.Context, bench, label string, users []*user, room func(int) uuid.UUID, warmup, d time.Duration) (sendRun, error) {
	progress(bench, "HTTP: %d senders × %s: %s warm-up, %s measured", len(users), label, warmup, d)
	start := time.Now()
	from, end := start.Add(warmup), start.Add(warmup+d)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		run      = sendRun{window: d}
		answered atomic.Int64
	)
	cpuDone := make(chan cpuSample, 2)
	go func() {
		time.Sleep(time.Until(from))
		cpuDone <- sampleCPU()
		time.Sleep(time.Until(end))
		cpuDone <- sampleCPU()
	}()
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat latencies
			var counted, created, failed int64
			var firstErr error
			roomID := room(i)
			for ctx.Err() == nil && time.Now().Before(end) {
				t0 := time.Now()
				res, err := u.Client.SendMessageWithResponse(ctx, roomID, apiclient.SendMessageJSONRequestBody{
					ClientMsgId: uuid.New(), Body: "bench message",
				})
				t1 := time.Now()
				if err == nil && res.JSON201 == nil {
					err = fmt.Errorf("status %d: %s", res.StatusCode(), res.Body)
				}
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					if failed > 100 {
						break
					}
					continue
				}
				created++
				answered.Add(1)
				if !t1.Before(from) && t1.Before(end) {
					counted++
					lat = append(lat, t1.Sub(t0))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			run.lat = append(run.lat, lat...)
			run.counted += counted
			run.created += created
			run.failed += failed
			if run.firstErr == nil {
				run.firstErr = firstErr
			}
		}()
	}
	tick := time.NewTicker(2 * time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			n := answered.Load()
			progress(bench, "HTTP: %s: %.0fs, %s sent (%s/s so far)", label, time.Since(start).Seconds(),
				thousands(n), thousands(int64(float64(n)/time.Since(start).Seconds())))
		}
	}
	tick.Stop()
	if err := ctx.Err(); err != nil {
		return sendRun{}, err
	}
	run.cpu = cpuBetween(<-cpuDone, <-cpuDone, run.counted)
	if run.failed > 100 && run.counted == 0 {
		return sendRun{}, fmt.Errorf("sends fail: %w", run.firstErr)
	}
	progress(bench, "HTTP: %s: %s req/s, p50 / p99 %s", label, thousands(int64(run.rate())), p50p99(run.lat))
	return run, nil
}

// startProfile starts a CPU profile of what into file after delay (the warm-up); the
// returned function stops it. Without a file it does nothing.
func startProfile(bench, what, file string, delay time.Duration) (func(), error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	started := make(chan bool, 1)
	timer := time.AfterFunc(delay, func() { started <- pprof.StartCPUProfile(f) == nil })
	return func() {
		if !timer.Stop() && <-started {
			pprof.StopCPUProfile()
		}
		_ = f.Close()
		progress(bench, "CPU profile of %s written to %s (go tool pprof -top %s)", what, file, file)
	}, nil
}
