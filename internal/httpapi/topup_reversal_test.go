package httpapi_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
)

// reversals drives refunds and disputes of one paid top-up the way Stripe reports them:
// signed events delivered to the webhook, processed by the River workers.
type reversals struct {
	t      *testing.T
	s      *parlortest.Server
	topup  apiclient.Topup
	intent string
}

func newReversals(t *testing.T, s *parlortest.Server, u *parlortest.User) *reversals {
	t.Helper()
	r := &reversals{t: t, s: s, topup: s.BuyCredits(t, u, "small")} // 100 credits for 199 usd
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT payment_intent_id FROM topups WHERE id = $1", r.topup.Id).Scan(&r.intent))
	return r
}

func (r *reversals) refunded(amount int64) []byte {
	return payments.ChargeRefundedEvent("evt_"+uuid.NewString(), payments.Charge{ID: "ch_" + r.intent, PaymentIntent: r.intent,
		Amount: 199, AmountRefunded: amount, Currency: "usd"}, time.Now())
}

func (r *reversals) dispute(id, typ, status string) []byte {
	return payments.DisputeEvent("evt_"+uuid.NewString(), typ, payments.Dispute{ID: id, Charge: "ch_" + r.intent,
		PaymentIntent: r.intent, Amount: 199, Currency: "usd", Status: status}, time.Now())
}

// deliver posts each event (several at once when concurrent), each twice, as Stripe's
// at-least-once delivery does, and waits until every one is processed.
func (r *reversals) deliver(events ...[]byte) {
	r.t.Helper()
	var wg sync.WaitGroup
	ids := make([]string, 0, len(events))
	for _, ev := range events {
		var head struct {
			ID string `json:"id"`
		}
		require.NoError(r.t, json.Unmarshal(ev, &head))
		ids = append(ids, head.ID)
		for range 2 {
			wg.Go(func() {
				status, body := r.s.DeliverWebhook(r.t, ev, time.Now(), parlortest.WebhookSecret)
				if status != 200 {
					r.t.Errorf("delivery answered %d: %s", status, body)
				}
			})
		}
	}
	wg.Wait()
	require.Eventually(r.t, func() bool {
		return r.s.Count(r.t, "SELECT count(*) FROM payment_events WHERE id = ANY($1) AND processed_at IS NOT NULL", ids) == len(ids)
	}, 20*time.Second, 20*time.Millisecond, "the events are processed")
}

func (r *reversals) status() apiclient.TopupStatus {
	r.t.Helper()
	var status string
	require.NoError(r.t, r.s.Pool.QueryRow(ctx, "SELECT status FROM topups WHERE id = $1", r.topup.Id).Scan(&status))
	return apiclient.TopupStatus(status)
}

func walletOf(t *testing.T, u *parlortest.User) apiclient.Wallet {
	t.Helper()
	res, err := u.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	return *res.JSON200
}

// TestRefundsAtTheProviderAreBookedOnce: refunds made at Stripe (the Dashboard), partial then
// full, each delivered twice and concurrently, and an older event arriving after a newer
// one, take back the share of the credits each refund paid for — once — and the top-up
// follows: partially_refunded, then refunded.
func TestRefundsAtTheProviderAreBookedOnce(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	r := newReversals(t, s, bob)

	partial := r.refunded(100) // 100 of 199 cents: ceil(100 × 100 / 199) = 51 credits
	r.deliver(partial)
	require.Equal(t, int64(49), parlortest.BalanceOf(t, bob))
	require.Equal(t, apiclient.TopupStatusPartiallyRefunded, r.status())
	require.Equal(t, apiclient.TopupStatusPartiallyRefunded, parlortest.GetTopup(t, bob, r.topup.Id).Status)

	r.deliver(r.refunded(199), r.refunded(150)) // the full refund, and an older figure, at once
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	require.Equal(t, apiclient.TopupStatusRefunded, r.status())
	r.deliver(r.refunded(100)) // an old figure, late
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))

	// Booked once per figure: 51 for the first; the rest as one or two postings as the
	// concurrent 150 and 199 came (25 + 24, or 49), never more than the top-up's 100.
	var refunds []int64
	var total int64
	for _, e := range history(t, bob) {
		if e.Kind == apiclient.KindRefund {
			refunds = append(refunds, e.Amount)
			total += e.Amount
		}
	}
	require.Equal(t, int64(-100), total, "%v", refunds)
	require.Contains(t, refunds, int64(-51))
	require.LessOrEqual(t, len(refunds), 3, "%v", refunds)
	requireBooksBalance(t, s)
}

// TestDisputesAreBookedOnce: a dispute withdraws the top-up's credits while it is open and
// gives them back when won; a lost one keeps them withdrawn — whatever the order and number
// of its events — and an inquiry takes nothing.
func TestDisputesAreBookedOnce(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob, carl := s.Register(t, "bob"), s.Register(t, "carl")

	won := newReversals(t, s, bob)
	won.deliver(won.dispute("dp_won", payments.EventDisputeCreated, "warning_needs_response"))
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob), "an inquiry withdraws nothing")
	require.Equal(t, apiclient.TopupStatusDisputed, won.status())
	won.deliver(won.dispute("dp_won", payments.EventDisputeUpdated, "needs_response"),
		won.dispute("dp_won", payments.EventDisputeFundsWithdrawn, "needs_response"))
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	require.Equal(t, apiclient.TopupStatusDisputed, won.status())
	won.deliver(won.dispute("dp_won", payments.EventDisputeUpdated, "under_review"))
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	won.deliver(won.dispute("dp_won", payments.EventDisputeClosed, "won"))
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob), "won: the credits come back")
	require.Equal(t, apiclient.TopupStatusSucceeded, won.status())
	won.deliver(won.dispute("dp_won", payments.EventDisputeUpdated, "under_review")) // late
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob), "a decided dispute does not reopen")
	require.Equal(t, apiclient.TopupStatusSucceeded, won.status())

	// Lost, with the closing event first and the opening one late.
	lost := newReversals(t, s, carl)
	lost.deliver(lost.dispute("dp_lost", payments.EventDisputeClosed, "lost"))
	require.Equal(t, int64(0), parlortest.BalanceOf(t, carl))
	require.Equal(t, apiclient.TopupStatusChargedBack, lost.status())
	lost.deliver(lost.dispute("dp_lost", payments.EventDisputeCreated, "needs_response"))
	require.Equal(t, int64(0), parlortest.BalanceOf(t, carl), "withdrawn once")
	require.Equal(t, apiclient.TopupStatusChargedBack, lost.status())
	// A refund of a charged-back payment takes nothing more: the credits are gone already.
	lost.deliver(lost.refunded(199))
	require.Equal(t, int64(0), parlortest.BalanceOf(t, carl))

	kinds := map[apiclient.WalletTransactionKind]int{}
	for _, e := range history(t, bob) {
		kinds[e.Kind]++
	}
	require.Equal(t, 2, kinds[apiclient.KindDispute], "withdrawn once and given back once")
	requireBooksBalance(t, s)
}

// TestAReversalOfSpentCreditsIsADebtThatBlocksSpending: a refund at the provider takes the
// credits back even when some were spent. The wallet shows a balance of 0 and the debt;
// nothing can be spent (422 insufficient_credits) until credits received pay it off.
func TestAReversalOfSpentCreditsIsADebtThatBlocksSpending(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	room := parlortest.CreateRoom(t, ann, "debts", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	r := newReversals(t, s, bob)
	require.Equal(t, 201, tip(t, bob, room, uuid.NewString(), ann.ID, 60).StatusCode())

	r.deliver(r.refunded(199))
	w := walletOf(t, bob)
	require.Equal(t, int64(0), w.Balance)
	require.Equal(t, int64(60), w.Debt)
	require.Equal(t, int64(-60), history(t, bob)[0].BalanceAfter)

	res := tip(t, bob, room, uuid.NewString(), ann.ID, 1)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")
	require.Contains(t, string(res.Body), "debt")

	// A tip received and a top-up pay the debt off first; then spending works again.
	require.Equal(t, 201, tip(t, ann, room, uuid.NewString(), bob.ID, 10).StatusCode())
	require.Equal(t, apiclient.Wallet{Balance: 0, Debt: 50}, walletOf(t, bob))
	s.BuyCredits(t, bob, "small")
	require.Equal(t, apiclient.Wallet{Balance: 50, Debt: 0}, walletOf(t, bob))
	require.Equal(t, 201, tip(t, bob, room, uuid.NewString(), ann.ID, 50).StatusCode())
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	requireBooksBalance(t, s)
}

// TestARefundArrivingBeforeItsPaymentIsBookedOnceThePaymentIs: Stripe's events come in any
// order, and a refund's can arrive before the checkout's own (delayed, or retried after an
// outage). Its job finds no top-up for the payment and backs off; once the payment is
// credited the refund is booked at once, not after the backoff (or never, had its job
// given up).
func TestARefundArrivingBeforeItsPaymentIsBookedOnceThePaymentIs(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	paid := s.PaidCheckoutEvent(t, tp.Id) // paid at the sandbox; its event held back
	var intent string
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT payment_intent FROM sandbox_sessions WHERE topup_id = $1", tp.Id).Scan(&intent))

	refund := payments.ChargeRefundedEvent("evt_"+uuid.NewString(), payments.Charge{ID: "ch_" + intent, PaymentIntent: intent,
		Amount: 199, AmountRefunded: 199, Currency: "usd"}, time.Now())
	status, body := s.DeliverWebhook(t, refund, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, 200, status, string(body))
	// Its job has failed twice: the next try is 16 s away (River's attempt⁴ backoff).
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event' AND state = 'retryable' AND attempt >= 2") == 1
	}, 10*time.Second, 20*time.Millisecond)

	status, body = s.DeliverWebhook(t, paid, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, 200, status, string(body))
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM topups WHERE id = $1 AND status = 'refunded'", tp.Id) == 1
	}, 8*time.Second, 20*time.Millisecond, "the refund is booked as soon as the payment is")
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	requireBooksBalance(t, s)
}
