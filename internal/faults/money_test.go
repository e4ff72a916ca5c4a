package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// Helpers of the money fault tests (issue 11, "Money that survives anything").

// requireAudit runs the ledger audit (scripts/ledger-reconciliation.sql) and fails the test
// with every discrepancy it finds.
func requireAudit(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	problems, err := wallet.Reconcile(ctx, pool)
	require.NoError(t, err, "the ledger audit runs")
	var lines []string
	for _, p := range problems {
		lines = append(lines, p.String())
	}
	require.Empty(t, lines, "the ledger audit finds nothing")
}

// webhookSender delivers signed Stripe events as Stripe does: each is retried, after a short
// pause, until it is answered 2xx (or the deadline passes). It tallies the answers.
type webhookSender struct {
	client   *http.Client
	deadline time.Time

	mu        sync.Mutex
	statuses  map[int]int // answer status → count; 0 is a transport error (refused, reset)
	refused4x []string    // 4xx answers to a correctly signed event: never right
	undone    int         // deliveries still not accepted at the deadline
}

func newWebhookSender(deadline time.Time) *webhookSender {
	return &webhookSender{
		client:   &http.Client{Timeout: 10 * time.Second},
		deadline: deadline,
		statuses: map[int]int{},
	}
}

// deliverOnce posts payload, signed now, to base's webhook endpoint and returns the status
// (0 when no answer came).
func (w *webhookSender) deliverOnce(base string, payload []byte) int {
	req, err := http.NewRequest(http.MethodPost, base+"/v1/webhooks/stripe", bytes.NewReader(payload))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", payments.SignWebhook(payload, parlortest.WebhookSecret, time.Now()))
	res, err := w.client.Do(req)
	status := 0
	var body []byte
	if err == nil {
		body, _ = io.ReadAll(res.Body)
		_ = res.Body.Close()
		status = res.StatusCode
	}
	w.mu.Lock()
	w.statuses[status]++
	if status >= 400 && status < 500 {
		w.refused4x = append(w.refused4x, fmt.Sprintf("%d %s", status, body))
	}
	w.mu.Unlock()
	return status
}

// deliver retries payload until a 2xx; base picks the instance of each attempt (a load
// balancer). It reports whether the delivery was accepted before the deadline.
func (w *webhookSender) deliver(base func(attempt int) string, payload []byte) bool {
	for attempt := 0; ; attempt++ {
		if s := w.deliverOnce(base(attempt), payload); s >= 200 && s < 300 {
			return true
		}
		if time.Now().After(w.deadline) {
			w.mu.Lock()
			w.undone++
			w.mu.Unlock()
			return false
		}
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
	}
}

// deliverAll sends every payload with workers concurrent senders.
func (w *webhookSender) deliverAll(workers int, base func(attempt int) string, payloads [][]byte) {
	work := make(chan []byte)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				w.deliver(base, p)
			}
		})
	}
	for _, p := range payloads {
		work <- p
	}
	close(work)
	wg.Wait()
}

func (w *webhookSender) requireAllAccepted(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("webhook answers by status (0 = no answer): %v", w.statuses)
	require.Empty(t, w.refused4x, "a correctly signed event is never refused with a 4xx")
	require.Zero(t, w.undone, "every delivery is accepted (2xx) before the deadline")
}

// withDuplicates returns events plus extra re-deliveries of randomly chosen ones, shuffled.
func withDuplicates(events [][]byte, extra int) [][]byte {
	out := append([][]byte(nil), events...)
	for range extra {
		out = append(out, events[rand.IntN(len(events))])
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// paidEvent pays a sandbox session without delivering anything and returns a fresh
// checkout.session.completed event for it, as Stripe would send.
func paidEvent(t *testing.T, sandbox *payments.Sandbox, session string, topup uuid.UUID) []byte {
	t.Helper()
	out, err := sandbox.Settle(ctx, session, true)
	require.NoError(t, err)
	require.True(t, out.Session.Paid(), "the sandbox session of %s is paid", topup)
	return payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed", out.Session, topup, time.Now())
}

// moneyBook is what the ledger says about a set of top-ups.
type moneyBook struct {
	mints     map[uuid.UUID]int // top-up → mint transactions
	statuses  map[string]int    // top-up status → count
	unhandled int               // payment events not processed
}

func readBook(t *testing.T, pool *pgxpool.Pool, topups []uuid.UUID) moneyBook {
	t.Helper()
	b := moneyBook{mints: map[uuid.UUID]int{}, statuses: map[string]int{}}
	rows, err := pool.Query(ctx, `SELECT topup_id, count(*) FROM ledger_transactions WHERE kind = 'topup' AND topup_id = ANY($1) GROUP BY topup_id`, topups)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		b.mints[id] = n
	}
	require.NoError(t, rows.Err())
	rows, err = pool.Query(ctx, `SELECT status, count(*) FROM topups WHERE id = ANY($1) GROUP BY status`, topups)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		b.statuses[s] = n
	}
	require.NoError(t, rows.Err())
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL").Scan(&b.unhandled))
	return b
}

// balanceOf is a user's wallet balance as stored (0 without a wallet).
func balanceOf(t *testing.T, pool *pgxpool.Pool, user uuid.UUID) int64 {
	t.Helper()
	var bal int64
	err := pool.QueryRow(ctx, "SELECT coalesce((SELECT balance FROM ledger_accounts WHERE user_id = $1), 0)", user).Scan(&bal)
	require.NoError(t, err)
	return bal
}

// waitFor polls cond every 100 ms until it holds or within passes; it reports whether it held.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var _ = context.Background
