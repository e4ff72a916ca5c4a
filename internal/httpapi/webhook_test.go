package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
)

// padded returns event with a "pad" field in its data.object that brings the whole body to
// size bytes: the shape of a large checkout session (many line items, long metadata).
func padded(t *testing.T, event []byte, size int) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(event, &m))
	obj := m["data"].(map[string]any)["object"].(map[string]any)
	obj["pad"] = ""
	b, err := json.Marshal(m)
	require.NoError(t, err)
	require.Less(t, len(b), size)
	obj["pad"] = strings.Repeat("x", size-len(b))
	b, err = json.Marshal(m)
	require.NoError(t, err)
	require.Len(t, b, size)
	return b
}

// postSigned posts payload to the Stripe webhook signed with stripe-go's own test helper
// and the server's secret; chunked sends it without a Content-Length.
func postSigned(t *testing.T, s *parlortest.Server, payload []byte, chunked bool) (*http.Response, []byte) {
	t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: parlortest.WebhookSecret, Timestamp: time.Now()})
	var body io.Reader = bytes.NewReader(payload)
	if chunked {
		body = io.NopCloser(body)
	}
	return s.Do(t, http.MethodPost, "/v1/webhooks/stripe", "application/json", body,
		http.Header{"Stripe-Signature": {signed.Header}})
}

// TestWebhookTakesEventsUpToItsOwnBound: the API's 64 KiB body limit does not apply to
// Stripe's webhook, which has its own bound of 256 KiB. A correctly signed 100 KiB event is
// stored and credits its payment; one over 256 KiB, with or without a Content-Length, is
// 413 payload_too_large and stores nothing; every other endpoint keeps the 64 KiB limit.
func TestWebhookTakesEventsUpToItsOwnBound(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")

	for _, chunked := range []bool{false, true} {
		big := padded(t, payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed",
			payments.Session{ID: s.SessionOf(t, tp.Id)}, tp.Id, time.Now()), 300<<10)
		res, b := postSigned(t, s, big, chunked)
		parlortest.RequireProblem(t, res, b, http.StatusRequestEntityTooLarge, "payload_too_large")
	}
	require.Zero(t, s.Count(t, "SELECT count(*) FROM payment_events"), "an oversized event was stored")

	ev := padded(t, s.PaidCheckoutEvent(t, tp.Id), 100<<10)
	res, b := postSigned(t, s, ev, false)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))
	require.Contains(t, string(b), `"duplicate":false`)
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM payment_events"))
	require.Eventually(t, func() bool { return parlortest.BalanceOf(t, bob) == tp.Credits }, 10*time.Second, 20*time.Millisecond,
		"the 100 KiB event's payment is credited")

	// Right at the bound is still an event; the rest of the API keeps its own limit.
	at := padded(t, []byte(`{"id":"evt_`+uuid.NewString()+`","object":"event","api_version":"`+stripe.APIVersion+
		`","type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}`), 256<<10)
	res, b = postSigned(t, s, at, true)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))
	res, b = s.As(t, bob, http.MethodPost, "/v1/rooms", `{"name":"`+strings.Repeat("x", 100<<10)+`","visibility":"public"}`)
	parlortest.RequireProblem(t, res, b, http.StatusRequestEntityTooLarge, "payload_too_large")

	_, metrics := s.Scrape(t)
	require.Contains(t, string(metrics), `parlor_webhook_events_received_total{outcome="too_large"} 2`)
	require.Contains(t, string(metrics), `parlor_webhook_events_received_total{outcome="stored"} 2`)
}
