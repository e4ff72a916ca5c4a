package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// The proportions of issue 5's proof: 1,000 payments, 10,000 signed deliveries, 30 % of
// them duplicates (a redelivery of an event id already sent).
const (
	scaleTopups      = 1000
	scaleEventsPer   = 7                            // distinct events per top-up
	scaleEvents      = scaleTopups * scaleEventsPer // 7,000 distinct event ids
	scaleCopies      = 3                            // deliveries of an event that is repeated
	scaleRepeated    = 1500                         // events delivered scaleCopies times
	scaleBursts      = scaleRepeated / 2            // … whose copies are sent at the same instant
	scaleDeliveries  = scaleEvents + scaleRepeated*(scaleCopies-1)
	scaleHTTPSlots   = 32 // deliveries in flight at most
	scaleUsers       = 10
	scalePaidPercent = 70 // paid; the rest: half abandoned (session open), half cancelled (expired)
	// River works the queue at about 100 jobs/s at most (10 workers, its 100 ms fetch
	// cooldown), so the 2,150 checkout events take 20 s or more to drain whatever the CPU.
	scaleDrainTimeout = 90 * time.Second
)

// topupKind is what the provider knows about a top-up's payment.
type topupKind int

const (
	kindPaid      topupKind = iota // session complete and paid
	kindAbandoned                  // session still open, unpaid
	kindCancelled                  // session expired, unpaid
)

type scaleTopup struct {
	id      uuid.UUID
	user    int
	credits int64
	kind    topupKind
}

// nonSessionEvent renders a Stripe-shaped event about a payment intent or charge of a
// top-up: Stripe sends these around every checkout; Parlor stores them and acts on none.
func nonSessionEvent(typ, object, objectID string, topup uuid.UUID, apiVersion string) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "evt_" + uuid.NewString(), "object": "event", "api_version": apiVersion, "type": typ,
		"created": time.Now().Unix(), "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": map[string]any{"id": objectID, "object": object,
			"metadata": map[string]string{"topup_id": topup.String()}}},
	})
	return b
}

// TestScaleSignedWebhookDeliveriesOverHTTP is issue 5's first proof, end to end over real
// HTTP: 1,000 top-ups (70 % paid, 15 % abandoned with their session open, 15 % cancelled),
// seven distinct Stripe-shaped events each (7,000 event ids: 2,150 checkout.session.*
// events — two different events for each paid payment, and for each unpaid one an event
// claiming a payment the provider does not confirm, plus for each abandoned one an expiry
// it does not confirm either — and customer.*, payment_intent.* or charge.* events Parlor
// only stores), 10,000 deliveries in all: 1,500
// events are delivered three times (3,000 duplicates, 30 %), half of them as three copies
// sent at the same instant, half scattered through the shuffled order. Each delivery is
// signed freshly with stripe-go's webhook.GenerateTestSignedPayload and the server's
// webhook secret and POSTed to /v1/webhooks/stripe, at most 32 in flight. Then, once River
// has processed every stored event: each paid top-up is credited exactly once (one ledger
// transaction under topup:<id>:mint, wallets holding exactly the paid credits), none of the
// unpaid ones, and the reconciliation queries return nothing.
func TestScaleSignedWebhookDeliveriesOverHTTP(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("10,000 deliveries")
	}
	start := time.Now()
	cfg := parlortest.Config(t)
	cfg.StripeWebhookSecret = parlortest.WebhookSecret
	cfg.DBMaxConns = 20         // DB_MAX_CONNS's default, not the 10 of other test servers: HTTP and River share the pool
	cfg.JobWorkers = 10         // APP_JOB_WORKERS's default
	cfg.MaxPendingTopups = 1000 // the top-ups of a few users, all pending at once
	s := parlortest.Start(t, cfg)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	apiVersion := stripeAPIVersion(t)

	users := make([]*parlortest.User, scaleUsers)
	for i := range users {
		users[i] = s.Register(t, fmt.Sprintf("payer%d", i))
	}

	// 1,000 top-ups, opened and settled at the provider (the sandbox) in parallel; their
	// events are built here and delivered below.
	packages := []string{"small", "medium", "large"}
	topups := make([]scaleTopup, scaleTopups)
	events := make([][]byte, scaleEvents)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= scaleTopups {
					return
				}
				if err := openScaleTopup(s, sandbox, users, apiVersion, i, packages[i%len(packages)], topups, events[i*scaleEventsPer:(i+1)*scaleEventsPer]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	setup := time.Since(start)

	// The deliveries: every event once, 1,500 of them three times; 750 of those as a burst
	// (three copies released together), 750 as single deliveries scattered in the order.
	type item struct{ copies [][]byte }
	order := rand.Perm(scaleEvents)
	items := make([]item, 0, scaleDeliveries)
	for n, e := range order {
		ev := events[e]
		switch {
		case n < scaleBursts:
			items = append(items, item{copies: [][]byte{ev, ev, ev}})
		case n < scaleRepeated:
			for range scaleCopies {
				items = append(items, item{copies: [][]byte{ev}})
			}
		default:
			items = append(items, item{copies: [][]byte{ev}})
		}
	}
	rand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: scaleHTTPSlots, MaxIdleConnsPerHost: scaleHTTPSlots, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	var sent, stored, duplicates atomic.Int64
	deliverOne := func(payload []byte) {
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
			Payload: payload, Secret: parlortest.WebhookSecret, Timestamp: time.Now()})
		req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/webhooks/stripe", bytes.NewReader(payload))
		if err != nil {
			t.Error(err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", signed.Header)
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("delivery: %v", err)
			return
		}
		body, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		sent.Add(1)
		var receipt struct {
			Received  bool  `json:"received"`
			Duplicate *bool `json:"duplicate"`
		}
		if err != nil || res.StatusCode != http.StatusOK || json.Unmarshal(body, &receipt) != nil || !receipt.Received || receipt.Duplicate == nil {
			t.Errorf("delivery answered %d (%v): %s", res.StatusCode, err, body)
			return
		}
		if *receipt.Duplicate {
			duplicates.Add(1)
		} else {
			stored.Add(1)
		}
	}

	// At most scaleHTTPSlots deliveries in flight: each holds a slot; a burst takes one per
	// copy and releases its copies together once it holds them all.
	deliverStart := time.Now()
	slots := make(chan struct{}, scaleHTTPSlots)
	for _, it := range items {
		release := make(chan struct{})
		for _, payload := range it.copies {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				<-release
				deliverOne(payload)
			})
		}
		close(release)
	}
	wg.Wait()
	delivering := time.Since(deliverStart)
	processedWhileDelivering := s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NOT NULL")
	require.False(t, t.Failed(), "every delivery is acknowledged with 200")
	require.Equal(t, int64(scaleDeliveries), sent.Load())
	require.Equal(t, int64(scaleEvents), stored.Load(), "exactly one delivery of each event is the one that stores it")
	require.Equal(t, int64(scaleDeliveries-scaleEvents), duplicates.Load())
	require.Equal(t, scaleEvents, s.Count(t, "SELECT count(*) FROM payment_events"), "each event is stored once")

	// Wait for River: every stored checkout event processed, every job completed.
	sessionEvents := s.Count(t, "SELECT count(*) FROM payment_events WHERE type LIKE 'checkout.session.%'")
	require.Equal(t, sessionEvents, s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event'"), "one job per stored checkout event")
	drainStart := time.Now()
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL AND type LIKE 'checkout.session.%'") == 0
	}, scaleDrainTimeout, 100*time.Millisecond, "every stored checkout event is processed")
	draining := time.Since(drainStart)
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event' AND state <> 'completed'"), "no job failed, retried or was cancelled")
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NOT NULL AND type NOT LIKE 'checkout.session.%'"), "events about no checkout session are only stored")

	// Each top-up: paid ones succeeded and credited once, the others untouched.
	type outcome struct {
		status        string
		mints         int
		mintKey       string
		credited      int64
		issued        int64
		paymentIntent *string
	}
	rows, err := s.Pool.Query(ctx, `
		SELECT tp.id, tp.status, tp.payment_intent_id,
		       count(DISTINCT lt.id),
		       coalesce(min(lt.idempotency_key), ''),
		       coalesce(sum(le.amount) FILTER (WHERE la.user_id = tp.user_id), 0),
		       coalesce(sum(le.amount) FILTER (WHERE la.code = 'issuance'), 0)
		FROM topups tp
		LEFT JOIN ledger_transactions lt ON lt.topup_id = tp.id
		LEFT JOIN ledger_entries le ON le.transaction_id = lt.id
		LEFT JOIN ledger_accounts la ON la.id = le.account_id
		GROUP BY tp.id`)
	require.NoError(t, err)
	got := map[uuid.UUID]outcome{}
	for rows.Next() {
		var id uuid.UUID
		var o outcome
		require.NoError(t, rows.Scan(&id, &o.status, &o.paymentIntent, &o.mints, &o.mintKey, &o.credited, &o.issued))
		got[id] = o
	}
	require.NoError(t, rows.Err())
	require.Len(t, got, scaleTopups)
	want := make([]int64, scaleUsers)
	var paid, abandoned, cancelled int
	var total int64
	for _, tp := range topups {
		o := got[tp.id]
		switch tp.kind {
		case kindPaid:
			paid++
			want[tp.user] += tp.credits
			total += tp.credits
			require.Equal(t, wallet.TopupSucceeded, o.status, "paid top-up %s", tp.id)
			require.Equal(t, 1, o.mints, "paid top-up %s is credited exactly once", tp.id)
			require.Equal(t, "topup:"+tp.id.String()+":mint", o.mintKey)
			require.Equal(t, tp.credits, o.credited, "top-up %s credits its payer its package", tp.id)
			require.Equal(t, -tp.credits, o.issued)
			require.NotNil(t, o.paymentIntent, "the provider's payment intent is recorded")
		case kindAbandoned, kindCancelled:
			wantStatus := wallet.TopupPending
			if tp.kind == kindCancelled {
				cancelled++
				wantStatus = wallet.TopupExpired
			} else {
				abandoned++
			}
			require.Equal(t, wantStatus, o.status, "unpaid top-up %s", tp.id)
			require.Zero(t, o.mints, "unpaid top-up %s is never credited", tp.id)
		}
	}
	for i, u := range users {
		require.Equal(t, want[i], parlortest.BalanceOf(t, u), "wallet of user %d", i)
	}
	require.Equal(t, paid, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind <> 'topup'"))
	var issuance int64
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT balance FROM ledger_accounts WHERE code = 'issuance'").Scan(&issuance))
	require.Equal(t, -total, issuance, "credits in circulation are exactly the paid ones")

	// scripts/ledger-reconciliation.sql, through the function `parlor reconcile` runs.
	problems, err := wallet.Reconcile(ctx, s.Pool)
	require.NoError(t, err)
	require.Empty(t, problems, "the reconciliation queries return nothing")

	t.Logf("%d top-ups (%d paid, %d abandoned, %d cancelled; %d credits), %d events (%d about checkout sessions), "+
		"%d deliveries (%d duplicates, %d bursts of %d), %d in flight: setup %s, delivering %s (%.0f/s, %d events processed meanwhile), "+
		"draining River %s more, total %s",
		scaleTopups, paid, abandoned, cancelled, total, scaleEvents, sessionEvents, scaleDeliveries, scaleDeliveries-scaleEvents,
		scaleBursts, scaleCopies, scaleHTTPSlots, setup.Round(time.Millisecond), delivering.Round(time.Millisecond),
		float64(scaleDeliveries)/delivering.Seconds(), processedWhileDelivering, draining.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// openScaleTopup opens top-up i for one of users, settles it at the provider as its kind
// says, and writes its seven events into evs.
func openScaleTopup(s *parlortest.Server, sandbox *payments.Sandbox, users []*parlortest.User, apiVersion string,
	i int, pkg string, topups []scaleTopup, evs [][]byte) error {
	user := i % len(users)
	kind := kindPaid
	switch pct := i % 100; {
	case pct >= scalePaidPercent+(100-scalePaidPercent)/2:
		kind = kindCancelled
	case pct >= scalePaidPercent:
		kind = kindAbandoned
	}
	tp, err := s.Topups.Create(ctx, users[user].ID, pkg)
	if err != nil {
		return err
	}
	topups[i] = scaleTopup{id: tp.ID, user: user, credits: tp.Credits, kind: kind}
	var sessionID string
	if err := s.Pool.QueryRow(ctx, "SELECT checkout_session_id FROM topups WHERE id = $1", tp.ID).Scan(&sessionID); err != nil {
		return err
	}
	session, err := sandbox.GetSession(ctx, sessionID)
	if err != nil {
		return err
	}
	if kind != kindAbandoned {
		out, err := sandbox.Settle(ctx, sessionID, kind == kindPaid) // its own event is not delivered
		if err != nil {
			return err
		}
		session = out.Session
	}
	checkout := func(typ string, claim payments.Session) []byte {
		return payments.CheckoutEvent("evt_"+uuid.NewString(), typ, claim, tp.ID, time.Now())
	}
	// What an event claims that the provider does not confirm (a stale or out-of-order
	// event): the worker asks the provider, which has the last word.
	paidClaim := session
	paidClaim.Status, paidClaim.PaymentStatus = payments.SessionComplete, payments.PaymentPaid
	pi := "pi_scale_" + tp.ID.String()
	if session.PaymentIntent != "" {
		pi = session.PaymentIntent
	}
	other := func(typ, object, id string) []byte { return nonSessionEvent(typ, object, id, tp.ID, apiVersion) }
	ch := "ch_scale_" + tp.ID.String()
	// Two or three checkout.session.* events per top-up (each one a River job) and four or
	// five events about its payment intent, charge or customer, which Parlor only stores.
	switch kind {
	case kindPaid:
		copy(evs, [][]byte{
			checkout("checkout.session.completed", session),
			checkout("checkout.session.async_payment_succeeded", session), // another event, the same payment
			other("customer.created", "customer", "cus_scale_"+tp.ID.String()),
			other("payment_intent.created", "payment_intent", pi),
			other("payment_intent.succeeded", "payment_intent", pi),
			other("charge.succeeded", "charge", ch),
			other("charge.updated", "charge", ch),
		})
	case kindAbandoned:
		failed, expiredClaim := session, session
		failed.Status, expiredClaim.Status = payments.SessionComplete, payments.SessionExpired
		copy(evs, [][]byte{
			checkout("checkout.session.completed", paidClaim),
			checkout("checkout.session.async_payment_failed", failed),
			checkout("checkout.session.expired", expiredClaim), // the session is still open
			other("customer.created", "customer", "cus_scale_"+tp.ID.String()),
			other("payment_intent.created", "payment_intent", pi),
			other("payment_intent.payment_failed", "payment_intent", pi),
			other("charge.failed", "charge", ch),
		})
	case kindCancelled:
		copy(evs, [][]byte{
			checkout("checkout.session.expired", session),
			checkout("checkout.session.completed", paidClaim),
			other("customer.created", "customer", "cus_scale_"+tp.ID.String()),
			other("payment_intent.created", "payment_intent", pi),
			other("payment_intent.requires_action", "payment_intent", pi),
			other("payment_intent.canceled", "payment_intent", pi),
			other("charge.expired", "charge", ch),
		})
	}
	return nil
}
