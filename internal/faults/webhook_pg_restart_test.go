package faults_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// Issue 11: PostgreSQL is stopped and restarted while 200 paid top-ups' signed
// checkout.session.completed events (30 % delivered twice) arrive 16 at a time and their
// River jobs mint. A delivery answered 5xx, or not at all, is retried as Stripe does until
// a 2xx. In the end, without restarting Parlor: every delivery was accepted, each paid
// top-up is succeeded and credited exactly once (one mint, the buyers' balances), every
// stored event is processed, and the ledger audit finds nothing.
//
// A job that runs into the outage (reading its event, finding its top-up, minting) is
// retried by River, never cancelled, so the jobs alone process every stored event and
// credit every paid top-up — no reconciler needed. (They were cancelled when finding the
// top-up failed: 2 of 8 runs left a paid top-up uncredited until the reconciler.)
func TestPostgreSQLRestartedWhileWebhooksAreProcessed(t *testing.T) {
	// Not parallel: a heavy load of its own, kept apart from the timing-bound fault tests.
	pgRestartUnderWebhooks(t, true)
}

// pgRestartUnderWebhooks runs the outage; strict requires every job to finish by itself,
// else the reconciler is run for what cancelled jobs left pending.
func pgRestartUnderWebhooks(t *testing.T, strict bool) {
	const topups = 200
	began := time.Now()
	pg, s := startOnOwnCluster(t)
	s.Topups.MaxPending = topups // the top-ups of four users, all pending at once
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	users := []*parlortest.User{s.Register(t, "u0"), s.Register(t, "u1"), s.Register(t, "u2"), s.Register(t, "u3")}
	want := map[uuid.UUID]int64{}
	var ids []uuid.UUID
	var events [][]byte
	for i := range topups {
		u := users[i%len(users)]
		tp, err := s.Topups.Create(ctx, u.ID, "small")
		require.NoError(t, err)
		events = append(events, paidEvent(t, sandbox, s.SessionOf(t, tp.ID), tp.ID))
		want[u.ID] += tp.Credits
		ids = append(ids, tp.ID)
	}
	deliveries := withDuplicates(events, topups*30/100)
	t.Logf("%d paid top-ups set up in %s", topups, time.Since(began).Round(time.Millisecond))

	// The outage: once a third of the deliveries are accepted, PostgreSQL stops for 2 s.
	w := newWebhookSender(time.Now().Add(60 * time.Second))
	var accepted atomic.Int64
	third := make(chan struct{})
	go func() {
		for accepted.Load() < int64(len(deliveries)/3) {
			time.Sleep(5 * time.Millisecond)
		}
		close(third)
	}()
	outage := make(chan time.Duration)
	go func() {
		<-third
		at := time.Now()
		pg.Stop(t)
		time.Sleep(2 * time.Second)
		pg.Restart(t)
		outage <- time.Since(at)
	}()
	base := func(int) string { return s.URL }
	work := make(chan []byte)
	var senders sync.WaitGroup
	for range 16 {
		senders.Go(func() {
			for p := range work {
				if w.deliver(base, p) {
					accepted.Add(1)
				}
			}
		})
	}
	for _, d := range deliveries {
		work <- d
	}
	close(work)
	senders.Wait()
	took := <-outage
	t.Logf("PostgreSQL was down for %s", took.Round(time.Millisecond))
	w.requireAllAccepted(t)
	w.mu.Lock()
	failedDuring := w.statuses[0] + w.statuses[500] + w.statuses[503]
	w.mu.Unlock()
	require.Positive(t, failedDuring, "the outage was felt by deliveries (5xx or no answer), so it happened while they arrived")

	// Every event is stored once and processed; every top-up is credited once.
	require.Equal(t, topups, s.Count(t, "SELECT count(*) FROM payment_events"), "each event is stored once")
	processed := waitFor(45*time.Second, func() bool {
		return s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event' AND state NOT IN ('completed', 'cancelled', 'discarded')") == 0
	})
	require.True(t, processed, "every webhook job ends within 45 s of the outage")
	processed = s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL") == 0
	if !processed {
		var jobs []string
		rows, err := s.Pool.Query(ctx, "SELECT state::text, attempt, coalesce(errors[array_length(errors,1)]->>'error','') FROM river_job WHERE kind = 'payment_event' AND state <> 'completed'")
		require.NoError(t, err)
		for rows.Next() {
			var st, e string
			var a int
			require.NoError(t, rows.Scan(&st, &a, &e))
			jobs = append(jobs, fmt.Sprintf("%s attempt %d: %s", st, a, e))
		}
		require.NoError(t, rows.Err())
		t.Logf("unfinished payment_event jobs: %v", jobs)
	}
	if !strict {
		cancelled := s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event' AND state = 'cancelled'")
		unprocessed := s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL")
		require.Equal(t, cancelled, unprocessed, "an event is left unprocessed only by a cancelled job (the known bug)")
		_, err := s.Topups.ReconcilePending(ctx, time.Now().Add(wallet.WebhookGrace+time.Second), 1000)
		require.NoError(t, err)
	}
	b := readBook(t, s.Pool, ids)
	if !strict {
		b.unhandled = 0 // the cancelled jobs' events, counted above
	}
	require.Zero(t, b.unhandled, "every stored event is processed")
	require.Equal(t, map[string]int{"succeeded": topups}, b.statuses, "every paid top-up succeeded")
	require.Len(t, b.mints, topups, "every paid top-up is minted")
	for id, n := range b.mints {
		require.Equal(t, 1, n, "top-up %s is minted once", id)
	}
	for _, u := range users {
		require.Equal(t, want[u.ID], balanceOf(t, s.Pool, u.ID), "each buyer holds the credits of their paid top-ups")
		require.Equal(t, want[u.ID], parlortest.BalanceOf(t, u), "and reads them in GET /v1/wallet")
	}
	requireAudit(t, s.Pool)
	t.Logf("%d deliveries through a PostgreSQL restart made whole in %s", len(deliveries), time.Since(began).Round(time.Millisecond))
}
