package httpapi_test

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

func TestSandboxTopupEndToEnd(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	topup := parlortest.CreateTopup(t, bob, "small")
	require.Equal(t, int64(100), topup.Credits)
	require.Equal(t, int64(199), topup.Amount)
	w, err := bob.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), w.JSON200.PendingTopups)
	require.Equal(t, int64(0), w.JSON200.Balance)

	// The checkout page, as a browser would use it.
	u, err := url.Parse(topup.CheckoutUrl)
	require.NoError(t, err)
	res, page := s.Do(t, "GET", u.Path, "", nil, nil)
	require.Equal(t, 200, res.StatusCode, string(page))
	require.Contains(t, string(page), ">Pay</button>")
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob), "nothing is credited before payment")
	res, page = s.Do(t, "POST", u.Path+"/pay", "", nil, nil)
	require.Equal(t, 200, res.StatusCode, string(page))
	require.Contains(t, string(page), `<strong id="status">complete</strong>`)

	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, bob, topup.Id).Status)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))
	h := history(t, bob)
	require.Len(t, h, 1)
	require.Equal(t, apiclient.KindTopup, h[0].Kind)
	require.Equal(t, topup.Id, *h[0].TopupId)
	// The webhook was stored and its job completed.
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NOT NULL") == 1
	}, 10*time.Second, 20*time.Millisecond)
	// Paying again changes nothing.
	res, _ = s.Do(t, "POST", u.Path+"/pay", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))
	w, err = bob.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(0), w.JSON200.PendingTopups)

	// Cancelling another one expires it, with no credit.
	other := parlortest.CreateTopup(t, bob, "medium")
	ou, _ := url.Parse(other.CheckoutUrl)
	res, _ = s.Do(t, "POST", ou.Path+"/cancel", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, apiclient.TopupStatusExpired, parlortest.GetTopup(t, bob, other.Id).Status)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))

	// Operators see it in /metrics.
	res, metrics := s.Scrape(t)
	require.Equal(t, 200, res.StatusCode)
	for _, want := range []string{
		`parlor_topups{status="succeeded"} 1`,
		`parlor_topups{status="expired"} 1`,
		`parlor_ledger_postings_total{kind="topup"} 1`,
		`parlor_webhook_events_received_total{outcome="stored"} 2`,
		`parlor_webhook_events_processed_total{outcome="ok"}`,
		`parlor_job_queue_depth{queue="default"}`,
	} {
		require.Contains(t, string(metrics), want)
	}

	// Someone else's top-up is not found; an unknown package is refused.
	eve := s.Register(t, "eve")
	nf, err := eve.Client.GetTopupWithResponse(ctx, topup.Id)
	require.NoError(t, err)
	parlortest.RequireProblem(t, nf.HTTPResponse, nf.Body, 404, "not_found")
	bad, err := eve.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: "k"}, apiclient.CreateTopupJSONRequestBody{PackageId: "huge"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, bad.HTTPResponse, bad.Body, 400, "invalid_request")
	requireBooksBalance(t, s)
}

func TestWebhooksCreditEachPaymentOnce(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	bob := s.Register(t, "bob")

	// Three paid top-ups and one never paid; the sandbox (the provider) knows which.
	var paid []apiclient.Topup
	var events [][]byte
	for i := range 4 {
		tp := parlortest.CreateTopup(t, bob, "small")
		session := s.SessionOf(t, tp.Id)
		if i < 3 {
			out, err := sandbox.Settle(ctx, session, true) // paid; its event is not delivered
			require.NoError(t, err)
			paid = append(paid, tp)
			// Two different events for one payment, as Stripe may send.
			for _, typ := range []string{"checkout.session.completed", "checkout.session.async_payment_succeeded"} {
				events = append(events, payments.CheckoutEvent("evt_"+uuid.NewString(), typ, out.Session, tp.Id, time.Now()))
			}
			continue
		}
		// A forged "paid" event about the unpaid one, correctly signed: the provider is asked,
		// and it says unpaid.
		got, err := sandbox.GetSession(ctx, session)
		require.NoError(t, err)
		got.Status, got.PaymentStatus = payments.SessionComplete, payments.PaymentPaid
		events = append(events, payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed", got, tp.Id, time.Now()))
	}
	// An event of a type Parlor does not use is acknowledged and kept.
	events = append(events, []byte(`{"id":"evt_other","object":"event","api_version":"`+stripeAPIVersion(t)+`","type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}`))

	// Every event several times, shuffled, in parallel — and the redirect's on-the-fly
	// sync racing them.
	var deliveries [][]byte
	for _, ev := range events {
		for range 4 {
			deliveries = append(deliveries, ev)
		}
	}
	rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	var wg sync.WaitGroup
	for _, d := range deliveries {
		wg.Go(func() {
			if status, b := s.DeliverWebhook(t, d, time.Now(), parlortest.WebhookSecret); status != 200 {
				t.Errorf("delivery answered %d: %s", status, b)
			}
		})
	}
	for _, tp := range paid {
		for range 3 {
			wg.Go(func() {
				res, err := bob.Client.GetTopupWithResponse(ctx, tp.Id)
				if err != nil || res.StatusCode() != 200 {
					t.Errorf("get top-up: %v %v", err, res)
				}
			})
		}
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL AND type LIKE 'checkout.session.%'") == 0
	}, 15*time.Second, 50*time.Millisecond, "every stored checkout event is processed")
	require.Equal(t, len(events), s.Count(t, "SELECT count(*) FROM payment_events"), "each event is stored once")
	require.Equal(t, int64(300), parlortest.BalanceOf(t, bob), "three payments, three credits")
	require.Equal(t, 3, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
	require.Equal(t, 3, s.Count(t, "SELECT count(*) FROM topups WHERE status = 'succeeded'"))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM topups WHERE status = 'pending'"), "the unpaid one stays pending")
	requireBooksBalance(t, s)
}

func stripeAPIVersion(t *testing.T) string {
	t.Helper()
	ev := payments.CheckoutEvent("x", "x", payments.Session{}, uuid.Nil, time.Now())
	i := strings.Index(string(ev), `"api_version":"`)
	rest := string(ev)[i+len(`"api_version":"`):]
	return rest[:strings.Index(rest, `"`)]
}

// TestWebhookStoreFailureAsksForARetry: when the database cannot store an event the webhook
// answers 503 with Retry-After — never 200 — so Stripe delivers it again, and nothing half
// done is left behind; the redelivery, once the database is back, credits the payment once.
func TestWebhookStoreFailureAsksForARetry(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	ev := s.PaidCheckoutEvent(t, tp.Id)

	// The event table is out of reach: every attempt to store fails inside PostgreSQL.
	_, err := s.Pool.Exec(ctx, "ALTER TABLE payment_events RENAME TO payment_events_away")
	require.NoError(t, err)
	res, b := s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(ev),
		http.Header{"Stripe-Signature": {payments.SignWebhook(ev, parlortest.WebhookSecret, time.Now())}})
	parlortest.RequireProblem(t, res, b, 503, "unavailable")
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	_, err = s.Pool.Exec(ctx, "ALTER TABLE payment_events_away RENAME TO payment_events")
	require.NoError(t, err)
	require.Zero(t, s.Count(t, "SELECT count(*) FROM payment_events"))
	require.Zero(t, s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event'"), "no job without its event")

	// Stripe's retry is stored, processed and credited.
	status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, 200, status, string(b))
	require.Eventually(t, func() bool { return parlortest.BalanceOf(t, bob) == tp.Credits }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, bob, tp.Id).Status)
	requireBooksBalance(t, s)
}

func TestAdminRefund(t *testing.T) {
	t.Parallel()
	a := startWithAdmin(t)
	s, admin := a.Server, a.admin
	bob, dan := s.Register(t, "bob"), s.Register(t, "dan")
	refund := func(c *apiclient.ClientWithResponses, id uuid.UUID) *apiclient.RefundTopupResponse {
		t.Helper()
		return refundAs(t, c, id, "")
	}

	bought := s.BuyCredits(t, bob, "small")
	pending := parlortest.CreateTopup(t, bob, "small")
	// Only admins refund; only succeeded top-ups are refundable.
	res := refund(bob.Client, bought.Id)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 403, "forbidden")
	res = refund(admin, pending.Id)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 409, "conflict")
	res = refund(admin, uuid.New())
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 404, "not_found")
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))

	res = refund(admin, bought.Id)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, apiclient.TopupStatusRefunded, res.JSON200.Status)
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	require.Equal(t, apiclient.KindRefund, history(t, bob)[0].Kind)
	// Again (a new key): nothing more is taken.
	res = refund(admin, bought.Id)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))

	// Credits partly spent: refused, nothing changes.
	spent := s.BuyCredits(t, dan, "small")
	room := parlortest.CreateRoom(t, dan, "dan's", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	require.Equal(t, 201, tip(t, dan, room, "spend", bob.ID, 1).StatusCode())
	res = refund(admin, spent.Id)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")
	require.Equal(t, int64(99), parlortest.BalanceOf(t, dan))
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, dan, spent.Id).Status)
	requireBooksBalance(t, s)
}

// TestManyShuffledDeliveriesCreditEachPaidTopupOnce: 300 top-ups (70 % paid), 3,000 signed
// deliveries — two event types per paid payment, an expiry notice per unpaid one, every
// event repeated, shuffled, 32 at a time — verified and stored through the webhook path,
// processed by the River workers. Each paid top-up is credited exactly once, none of the
// unpaid ones, and the books reconcile.
func TestManyShuffledDeliveriesCreditEachPaidTopupOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3,000 deliveries")
	}
	s := parlortest.New(t)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	const payments_, deliveriesN = 300, 3000
	s.Topups.MaxPending = payments_ // 100 per user, all pending at once
	users := []*parlortest.User{s.Register(t, "u0"), s.Register(t, "u1"), s.Register(t, "u2")}
	var events [][]byte
	want := map[uuid.UUID]int64{}
	for i := range payments_ {
		u := users[i%len(users)]
		tp, err := s.Topups.Create(ctx, u.ID, "small")
		require.NoError(t, err)
		session := s.SessionOf(t, tp.ID)
		if i%10 < 7 {
			out, err := sandbox.Settle(ctx, session, true)
			require.NoError(t, err)
			want[u.ID] += tp.Credits
			for _, typ := range []string{"checkout.session.completed", "checkout.session.async_payment_succeeded"} {
				events = append(events, payments.CheckoutEvent("evt_"+uuid.NewString(), typ, out.Session, tp.ID, time.Now()))
			}
			continue
		}
		got, err := sandbox.GetSession(ctx, session)
		require.NoError(t, err)
		got.Status = payments.SessionExpired
		events = append(events, payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.expired", got, tp.ID, time.Now()))
	}
	deliveries := make([][]byte, 0, deliveriesN)
	for i := range deliveriesN {
		deliveries = append(deliveries, events[i%len(events)])
	}
	rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	work := make(chan []byte)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for d := range work {
				ev, err := payments.VerifyWebhook(d, payments.SignWebhook(d, parlortest.WebhookSecret, time.Now()), parlortest.WebhookSecret)
				if err == nil {
					_, err = s.Topups.ReceiveWebhook(ctx, ev)
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, d := range deliveries {
		work <- d
	}
	close(work)
	wg.Wait()
	require.Equal(t, len(events), s.Count(t, "SELECT count(*) FROM payment_events"))
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL") == 0
	}, 60*time.Second, 100*time.Millisecond, "every event is processed")
	for _, u := range users {
		require.Equal(t, want[u.ID], parlortest.BalanceOf(t, u))
	}
	require.Equal(t, 210, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
	require.Equal(t, 210, s.Count(t, "SELECT count(*) FROM topups WHERE status = 'succeeded'"))
	require.Equal(t, 90, s.Count(t, "SELECT count(*) FROM topups WHERE status = 'pending'"), "an expiry notice the provider does not confirm changes nothing")
	requireBooksBalance(t, s)
}

// TestProductionWithoutStripeRefusesTopups: the sandbox mints credits at the press of a
// button, so production without Stripe keys refuses top-ups instead of running it.
func TestProductionWithoutStripeRefusesTopups(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.Env, cfg.PublicURL = "production", "https://parlor.example"
	s := parlortest.Start(t, cfg)
	bob := s.Register(t, "bob")
	res, err := bob.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: "k"}, apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 503, "unavailable")
	page, _ := s.Do(t, "GET", "/sandbox/checkout/cs_sbx_1", "", nil, nil)
	require.Equal(t, 404, page.StatusCode, "no sandbox pages in production")
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
}

// waitProcessed waits until every stored checkout event has been processed by its job.
func waitProcessed(t *testing.T, s *parlortest.Server) {
	t.Helper()
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM payment_events WHERE processed_at IS NULL AND type LIKE 'checkout.session.%'") == 0
	}, 15*time.Second, 20*time.Millisecond, "every stored checkout event is processed")
}

// TestSandboxDelayedPaymentThatFails presses the sandbox page's "Pay with a delayed method
// that fails", which plays a SEPA Debit or ACH payment that bounces as Stripe does: the
// checkout completes unpaid (checkout.session.completed), then the payment fails
// (checkout.session.async_payment_failed). The top-up ends failed, nothing is credited and
// the books balance.
func TestSandboxDelayedPaymentThatFails(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	topup := parlortest.CreateTopup(t, bob, "small")
	u, err := url.Parse(topup.CheckoutUrl)
	require.NoError(t, err)
	res, page := s.Do(t, "GET", u.Path, "", nil, nil)
	require.Equal(t, 200, res.StatusCode, string(page))
	require.Contains(t, string(page), `<form method="post" action="`+u.Path+`/pay-delayed-fail"><button type="submit">Pay with a delayed method that fails</button></form>`)

	res, page = s.Do(t, "POST", u.Path+"/pay-delayed-fail", "", nil, nil)
	require.Equal(t, 200, res.StatusCode, string(page))
	require.Contains(t, string(page), `<strong id="status">complete</strong>`)
	require.Contains(t, string(page), `<strong id="payment">unpaid</strong>`)
	require.Contains(t, string(page), `<strong id="intent">requires_payment_method</strong>`)
	require.NotContains(t, string(page), "<button", "a completed checkout offers nothing more to press")

	require.Equal(t, apiclient.TopupStatusFailed, parlortest.GetTopup(t, bob, topup.Id).Status)
	w, err := bob.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, w.StatusCode(), string(w.Body))
	require.Equal(t, int64(0), w.JSON200.Balance)
	require.Equal(t, int64(0), w.JSON200.PendingTopups)
	require.Empty(t, history(t, bob))

	// Stripe's two events, in Stripe's order, went through the signed webhook path; the
	// first already says the checkout completed unpaid.
	waitProcessed(t, s)
	type stored struct{ Type, Status, PaymentStatus string }
	rows, err := s.Pool.Query(ctx, `SELECT type, payload->'data'->'object'->>'status', payload->'data'->'object'->>'payment_status'
		FROM payment_events ORDER BY received_at`)
	require.NoError(t, err)
	events, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stored])
	require.NoError(t, err)
	require.Equal(t, []stored{
		{"checkout.session.completed", "complete", "unpaid"},
		{"checkout.session.async_payment_failed", "complete", "unpaid"},
	}, events)

	// Processing the events changed nothing more; pressing a button again sends nothing.
	for _, button := range []string{"/pay-delayed-fail", "/pay", "/cancel"} {
		res, page = s.Do(t, "POST", u.Path+button, "", nil, nil)
		require.Equal(t, 200, res.StatusCode, string(page))
	}
	require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM payment_events"))
	require.Equal(t, apiclient.TopupStatusFailed, parlortest.GetTopup(t, bob, topup.Id).Status)
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	requireBooksBalance(t, s)

	res, metrics := s.Scrape(t)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, string(metrics), `parlor_topups{status="failed"} 1`)
}

// TestSandboxDelayedPaymentThatSucceedsLater: checkout.session.completed for a delayed
// payment still processing (unpaid) credits nothing and leaves the top-up pending; when
// the payment succeeds later, the credits arrive exactly once, however often the events
// repeat.
func TestSandboxDelayedPaymentThatSucceedsLater(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	session := s.SessionOf(t, tp.Id)

	begun, err := sandbox.BeginDelayedPayment(ctx, session)
	require.NoError(t, err)
	require.NotNil(t, begun.Event)
	require.Equal(t, payments.IntentProcessing, begun.Session.PaymentIntentStatus)
	status, b := s.DeliverWebhook(t, begun.Event, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, 200, status, string(b))
	waitProcessed(t, s)
	require.Equal(t, apiclient.TopupStatusPending, parlortest.GetTopup(t, bob, tp.Id).Status, "a payment still processing is neither paid nor failed")
	w, err := bob.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, w.StatusCode(), string(w.Body))
	require.Equal(t, int64(0), w.JSON200.Balance)
	require.Equal(t, int64(1), w.JSON200.PendingTopups)

	finished, err := sandbox.FinishDelayedPayment(ctx, session, true)
	require.NoError(t, err)
	require.NotNil(t, finished.Event)
	require.True(t, finished.Session.Paid())
	for _, ev := range [][]byte{finished.Event, begun.Event, finished.Event} {
		status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
		require.Equal(t, 200, status, string(b))
	}
	waitProcessed(t, s)
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, bob, tp.Id).Status)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))
	require.Len(t, history(t, bob), 1)
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
	requireBooksBalance(t, s)
}

// TestLateAsyncFailureKeepsASucceededTopup: a checkout.session.async_payment_failed that
// arrives after the top-up succeeded — even with the provider now reporting the payment as
// failed — leaves the top-up succeeded with its credits.
func TestLateAsyncFailureKeepsASucceededTopup(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	bob := s.Register(t, "bob")
	bought := s.BuyCredits(t, bob, "small")
	session := s.SessionOf(t, bought.Id)
	_, err := s.Pool.Exec(ctx, `UPDATE sandbox_sessions SET payment_status = 'unpaid', payment_intent_status = 'requires_payment_method' WHERE id = $1`, session)
	require.NoError(t, err)
	failed, err := sandbox.GetSession(ctx, session)
	require.NoError(t, err)
	require.True(t, failed.Failed(), "the provider now says the payment failed")

	ev := payments.CheckoutEvent("evt_late_failure", "checkout.session.async_payment_failed", failed, bought.Id, time.Now())
	status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, 200, status, string(b))
	waitProcessed(t, s)
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, bob, bought.Id).Status)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
	requireBooksBalance(t, s)
}

// TestSandboxPageRefusals: an unknown checkout session is a 404 problem on every sandbox
// route, and paying a checkout past its expiry changes nothing — no event, no credit — as
// at Stripe, where an expired session can no longer be paid.
func TestSandboxPageRefusals(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	for _, r := range []struct{ method, path string }{
		{"GET", "/sandbox/checkout/cs_sbx_unknown"},
		{"POST", "/sandbox/checkout/cs_sbx_unknown/pay"},
		{"POST", "/sandbox/checkout/cs_sbx_unknown/cancel"},
		{"POST", "/sandbox/checkout/cs_sbx_unknown/pay-delayed-fail"},
	} {
		res, b := s.Do(t, r.method, r.path, "", nil, nil)
		parlortest.RequireProblem(t, res, b, 404, "not_found")
	}

	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	session := s.SessionOf(t, tp.Id)
	_, err := s.Pool.Exec(ctx, "UPDATE sandbox_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1", session)
	require.NoError(t, err)
	out, err := s.Topups.Provider().(*payments.Sandbox).Settle(ctx, session, true)
	require.NoError(t, err)
	require.Nil(t, out.Event, "paying an expired checkout announces nothing")
	require.Equal(t, payments.SessionExpired, out.Session.Status)
	require.Equal(t, apiclient.TopupStatusExpired, parlortest.GetTopup(t, bob, tp.Id).Status)
	require.Zero(t, parlortest.BalanceOf(t, bob))
}

// TestPendingTopupsAreCapped: each top-up opens a checkout session at the provider, so one
// account may have at most five awaiting payment — also when it asks for more at once —
// with a documented 409 for the next; once one is settled, it may buy again.
func TestPendingTopupsAreCapped(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	var wg sync.WaitGroup
	statuses := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			res, err := bob.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: uuid.NewString()},
				apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
			if err != nil {
				t.Error(err)
				return
			}
			if res.StatusCode() == 409 {
				parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 409, "topup_limit_reached")
			}
			statuses <- res.StatusCode()
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	require.Equal(t, map[int]int{201: wallet.MaxPendingTopups, 409: 8 - wallet.MaxPendingTopups}, count)
	require.Equal(t, wallet.MaxPendingTopups, s.Count(t, "SELECT count(*) FROM topups WHERE user_id = $1", bob.ID))

	// Paying one frees a place.
	var pending uuid.UUID
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT id FROM topups WHERE user_id = $1 LIMIT 1", bob.ID).Scan(&pending))
	page, err := url.Parse(parlortest.GetTopup(t, bob, pending).CheckoutUrl)
	require.NoError(t, err)
	res, _ := s.Do(t, "POST", page.Path+"/pay", "", nil, nil)
	require.Equal(t, 200, res.StatusCode)
	require.Eventually(t, func() bool { return parlortest.GetTopup(t, bob, pending).Status == apiclient.TopupStatusSucceeded },
		10*time.Second, 20*time.Millisecond)
	parlortest.CreateTopup(t, bob, "small")
}
