package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
)

// withAPIVersion returns event rendered by another API version: its api_version replaced,
// and edit (when set) applied to the event.
func withAPIVersion(t *testing.T, event []byte, version string, edit func(event map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(event, &m))
	m["api_version"] = version
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

// TestWebhookOfAnotherAPIVersion: Stripe signs an event in the API version of its webhook
// endpoint, which need not be stripe-go's. Such an event verifies like any other: a checkout
// session event whose session is readable is stored and processed (the provider is asked
// about the session, as for every event), an event of a type Parlor does not use is stored
// and acknowledged; one whose checkout session cannot be read is 422
// unsupported_api_version naming both versions — never the signature's 400 — and stores
// nothing. Every such event is counted, and a wrong signature stays a 400.
func TestWebhookOfAnotherAPIVersion(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	const old = "2020-08-27"

	// A payment completed, told by an event of 2020-08-27.
	tp := parlortest.CreateTopup(t, bob, "small")
	paid := withAPIVersion(t, s.PaidCheckoutEvent(t, tp.Id), old, nil)
	res, b := postSigned(t, s, paid, false)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))
	require.Contains(t, string(b), `"duplicate":false`)
	require.Eventually(t, func() bool { return parlortest.BalanceOf(t, bob) == tp.Credits }, 10*time.Second, 20*time.Millisecond,
		"the payment told by an event of another API version is credited")
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, bob, tp.Id).Status)

	// A type Parlor does not use, of another version: kept, acknowledged, no work.
	other := []byte(`{"id":"evt_` + uuid.NewString() + `","object":"event","api_version":"2024-06-20","type":"customer.created",` +
		`"data":{"object":{"id":"cus_1","object":"customer"}}}`)
	res, b = postSigned(t, s, other, false)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))

	// Checkout session events whose session another version shapes differently.
	pending := parlortest.CreateTopup(t, bob, "small")
	base := payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed",
		payments.Session{ID: s.SessionOf(t, pending.Id), Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid}, pending.Id, time.Now())
	for name, edit := range map[string]func(map[string]any){
		"the object is only a reference": func(e map[string]any) {
			e["data"] = map[string]any{"object": s.SessionOf(t, pending.Id)}
		},
		"the object is no checkout session": func(e map[string]any) {
			e["data"].(map[string]any)["object"].(map[string]any)["object"] = "checkout_session"
		},
		"the session has no id": func(e map[string]any) {
			delete(e["data"].(map[string]any)["object"].(map[string]any), "id")
		},
	} {
		ev := withAPIVersion(t, base, old, func(e map[string]any) {
			e["id"] = "evt_" + uuid.NewString()
			edit(e)
		})
		res, b := postSigned(t, s, ev, false)
		p := parlortest.RequireProblem(t, res, b, http.StatusUnprocessableEntity, "unsupported_api_version")
		require.NotNil(t, p.Detail, name)
		require.Contains(t, *p.Detail, old, name)
		require.Contains(t, *p.Detail, stripe.APIVersion, name)
	}

	// A wrong signature is still a wrong signature, whatever the version.
	res, b = s.Do(t, http.MethodPost, "/v1/webhooks/stripe", "application/json", bytes.NewReader(paid),
		http.Header{"Stripe-Signature": {payments.SignWebhook(paid, "whsec_wrong", time.Now())}})
	p := parlortest.RequireProblem(t, res, b, http.StatusBadRequest, "invalid_request")
	require.Contains(t, *p.Detail, "Stripe-Signature")

	require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM payment_events"), "the readable events are stored, the refused ones not")
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'payment_event'"), "only the checkout event is work")
	require.Equal(t, "pending", string(parlortest.GetTopup(t, bob, pending.Id).Status))
	_, metrics := s.Scrape(t)
	for _, want := range []string{
		"parlor_webhook_api_version_mismatches_total 5",
		`parlor_webhook_events_received_total{outcome="stored"} 2`,
		`parlor_webhook_events_received_total{outcome="unsupported_api_version"} 3`,
		`parlor_webhook_events_received_total{outcome="invalid"} 1`,
	} {
		require.Contains(t, string(metrics), want)
	}
	requireBooksBalance(t, s)
}
