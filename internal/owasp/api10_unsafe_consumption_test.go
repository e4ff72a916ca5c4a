// API10:2023 Unsafe Consumption of APIs.
//
// Parlor consumes one third-party API: Stripe's — the events it POSTs to
// /v1/webhooks/stripe, and the checkout sessions it answers with. Unsafe consumption would
// be believing an event because it arrived: crediting on an unsigned, altered, replayed,
// duplicated or foreign event, or on what an event claims (paid, an amount, a mode, an
// account, whose top-up it is) rather than on what Stripe says when asked.
//
// This file proves: TestWebhookRefusalsStoreNothing sends events with a wrong secret, an
// altered body, a stale or swapped timestamp, no or only a v0 signature, an event of
// another API version whose checkout session cannot be read, a body that is no event, and
// an oversized body — each refused, nothing stored, no job queued;
// TestEventsOfAnotherAPIVersionAreReadLikeAnyOther sends a correctly signed paid event of
// another API version, whose claims are checked with the provider like any other's; TestWebhookClaimsAreCheckedWithTheProvider sends correctly signed events that
// lie (live mode, another account, an inflated amount, credits in the metadata, paid when
// it is not, another user's top-up) and requires the credits Stripe's own state gives,
// once, to the buyer; TestDuplicateAndUnknownEventsChangeNothing repeats an event and sends
// types Parlor does not use. (Signature parsing is fuzzed in internal/payments; every
// event repeated and shuffled under concurrency is internal/httpapi's
// TestWebhooksCreditEachPaymentOnce and TestScaleSignedWebhookDeliveriesOverHTTP; a store
// failure asking Stripe to retry, TestWebhookStoreFailureAsksForARetry.)
package owasp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
)

func TestWebhookRefusalsStoreNothing(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	ev := s.PaidCheckoutEvent(t, tp.Id)

	signed := func(payload []byte, at time.Time) (*http.Response, []byte) {
		return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(payload),
			http.Header{"Stripe-Signature": {payments.SignWebhook(payload, parlortest.WebhookSecret, at)}})
	}
	for _, tc := range []struct {
		name   string
		status int
		send   func() (*http.Response, []byte)
	}{
		{"wrong secret", 400, func() (*http.Response, []byte) {
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(ev),
				http.Header{"Stripe-Signature": {payments.SignWebhook(ev, "whsec_wrong", time.Now())}})
		}},
		{"altered body", 400, func() (*http.Response, []byte) {
			altered := bytes.Replace(ev, []byte(`"livemode":false`), []byte(`"livemode":true `), 1)
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(altered),
				http.Header{"Stripe-Signature": {payments.SignWebhook(ev, parlortest.WebhookSecret, time.Now())}})
		}},
		{"stale timestamp", 400, func() (*http.Response, []byte) {
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(ev),
				http.Header{"Stripe-Signature": {payments.SignWebhook(ev, parlortest.WebhookSecret, time.Now().Add(-10*time.Minute))}})
		}},
		// Another API version is read like any other (TestEventsOfAnotherAPIVersionAreReadLikeAnyOther);
		// only a checkout session it does not let Parlor read is refused.
		{"another API version, its session unreadable", 422, func() (*http.Response, []byte) {
			old := bytes.Replace(ev, []byte(`"api_version":"`+stripe.APIVersion+`"`), []byte(`"api_version":"2020-08-27"`), 1)
			old = bytes.Replace(old, []byte(`"object":"checkout.session"`), []byte(`"object":"checkout_session"`), 1)
			return signed(old, time.Now())
		}},
		{"signed, but not JSON", 400, func() (*http.Response, []byte) { return signed([]byte("evt_refused"), time.Now()) }},
		{"signed, but not an event", 400, func() (*http.Response, []byte) { return signed([]byte(`{}`), time.Now()) }},
		{"signature of another timestamp", 400, func() (*http.Response, []byte) {
			header := payments.SignWebhook(ev, parlortest.WebhookSecret, time.Now().Add(-time.Hour))
			_, sig, _ := strings.Cut(header, ",")
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(ev),
				http.Header{"Stripe-Signature": {"t=" + strconv.FormatInt(time.Now().Unix(), 10) + "," + sig}})
		}},
		{"only a v0 signature", 400, func() (*http.Response, []byte) {
			header := payments.SignWebhook(ev, parlortest.WebhookSecret, time.Now())
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(ev),
				http.Header{"Stripe-Signature": {strings.Replace(header, "v1=", "v0=", 1)}})
		}},
		{"no signature", 400, func() (*http.Response, []byte) {
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", bytes.NewReader(ev), nil)
		}},
		{"oversized body", 413, func() (*http.Response, []byte) {
			big := append(bytes.TrimSuffix(ev, []byte("}")), []byte(`,"pad":"`+strings.Repeat("x", 300<<10)+`"}`)...)
			return s.Do(t, "POST", "/v1/webhooks/stripe", "application/json", io.NopCloser(bytes.NewReader(big)),
				http.Header{"Stripe-Signature": {payments.SignWebhook(big, parlortest.WebhookSecret, time.Now())}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, b := tc.send()
			require.Equal(t, tc.status, res.StatusCode, string(b))
			require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM payment_events"), "a refused webhook was stored")
		})
	}
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM river_job"))
	// The genuine delivery is accepted.
	status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, 200, status, string(b))
	require.Contains(t, string(b), `"received":true`)
}

// liar rewrites a checkout event's claims: edit (when set) changes the event and its session object.
func liar(t *testing.T, ev []byte, edit func(event, object map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(ev, &m))
	if edit != nil {
		edit(m, m["data"].(map[string]any)["object"].(map[string]any))
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

// waitProcessed waits until every stored checkout event has been processed or given up.
func waitProcessed(t *testing.T, s *parlortest.Server) {
	t.Helper()
	require.Eventually(t, func() bool {
		return s.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'payment_event' AND state NOT IN ('completed', 'cancelled', 'discarded')`) == 0
	}, 15*time.Second, 20*time.Millisecond, "every stored checkout event is processed")
}

func TestWebhookClaimsAreCheckedWithTheProvider(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	bob, eve := s.Register(t, "bob"), s.Register(t, "eve")
	paid, unpaid := parlortest.CreateTopup(t, bob, "small"), parlortest.CreateTopup(t, bob, "small")
	evesPending := parlortest.CreateTopup(t, eve, "large")
	out, err := sandbox.Settle(ctx, s.SessionOf(t, paid.Id), true) // paid; its own event not delivered
	require.NoError(t, err)
	unpaidSession, err := sandbox.GetSession(ctx, s.SessionOf(t, unpaid.Id))
	require.NoError(t, err)
	unpaidSession.Status, unpaidSession.PaymentStatus = payments.SessionComplete, payments.PaymentPaid // the lie

	event := func(session payments.Session, topup uuid.UUID, edit func(event, object map[string]any)) []byte {
		return liar(t, payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed", session, topup, time.Now()), edit)
	}
	for _, ev := range [][]byte{
		event(out.Session, paid.Id, func(e, o map[string]any) {
			e["livemode"], e["account"] = true, "acct_evil"
			o["amount_total"], o["currency"] = 99_999_999, "usd"
			o["metadata"] = map[string]any{"topup_id": paid.Id.String(), "credits": "1000000", "user_id": eve.ID.String()}
		}),
		// A paid session claimed for eve's top-up: the session decides, and it is bob's.
		event(out.Session, evesPending.Id, nil),
		// Bob's unpaid session said to be paid.
		event(unpaidSession, unpaid.Id, func(e, o map[string]any) { o["amount_total"] = 199 }),
		// A session Parlor never opened, naming eve's top-up.
		event(payments.Session{ID: "cs_forged", Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid}, evesPending.Id, nil),
	} {
		status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
		require.Equal(t, http.StatusOK, status, string(b))
	}
	waitProcessed(t, s)
	require.Equal(t, paid.Credits, parlortest.BalanceOf(t, bob), "the package's credits, once, whatever the event claims")
	require.Zero(t, parlortest.BalanceOf(t, eve))
	require.Equal(t, "pending", string(parlortest.GetTopup(t, bob, unpaid.Id).Status))
	require.Equal(t, "pending", string(parlortest.GetTopup(t, eve, evesPending.Id).Status))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
}

func TestDuplicateAndUnknownEventsChangeNothing(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	ev := s.PaidCheckoutEvent(t, tp.Id)
	receipts := []string{}
	for range 3 {
		status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
		require.Equal(t, http.StatusOK, status, string(b))
		receipts = append(receipts, string(b))
	}
	require.Contains(t, receipts[0], `"duplicate":false`)
	require.Contains(t, receipts[1], `"duplicate":true`)
	require.Contains(t, receipts[2], `"duplicate":true`)

	// Types Parlor does not use are acknowledged, kept, and queue no work.
	for _, typ := range []string{"customer.created", "charge.succeeded", "payout.paid", "not.a.type"} {
		other := []byte(`{"id":"evt_` + uuid.NewString() + `","object":"event","api_version":"` + stripe.APIVersion +
			`","type":"` + typ + `","data":{"object":{"id":"obj_1","object":"` + strings.Split(typ, ".")[0] + `","amount":100000}}}`)
		status, b := s.DeliverWebhook(t, other, time.Now(), parlortest.WebhookSecret)
		require.Equal(t, http.StatusOK, status, string(b))
	}
	waitProcessed(t, s)
	require.Equal(t, 5, s.Count(t, "SELECT count(*) FROM payment_events"))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event'"), "only the checkout event is work")
	require.Equal(t, tp.Credits, parlortest.BalanceOf(t, bob))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM ledger_transactions WHERE kind = 'topup'"))
}

func TestEventsOfAnotherAPIVersionAreReadLikeAnyOther(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	paid, unpaid := parlortest.CreateTopup(t, bob, "small"), parlortest.CreateTopup(t, bob, "small")
	old := func(ev []byte) []byte {
		return bytes.Replace(ev, []byte(`"api_version":"`+stripe.APIVersion+`"`), []byte(`"api_version":"2020-08-27"`), 1)
	}
	// A lie told in another version: bob's unpaid session said to be paid.
	lie := old(payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed",
		payments.Session{ID: s.SessionOf(t, unpaid.Id), Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid}, unpaid.Id, time.Now()))
	for _, ev := range [][]byte{old(s.PaidCheckoutEvent(t, paid.Id)), lie} {
		status, b := s.DeliverWebhook(t, ev, time.Now(), parlortest.WebhookSecret)
		require.Equal(t, http.StatusOK, status, string(b))
	}
	waitProcessed(t, s)
	require.Equal(t, paid.Credits, parlortest.BalanceOf(t, bob), "the paid one credited once, the lie not")
	require.Equal(t, "pending", string(parlortest.GetTopup(t, bob, unpaid.Id).Status))
	require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM payment_events"))
}
