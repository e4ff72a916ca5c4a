package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82"

	"github.com/parlor-dev/parlor/internal/payments"
)

// TestStripeCheckoutRequestShape checks what the stripe provider sends Stripe: a payment-mode
// session tied to the top-up, for the package's price, with the deterministic idempotency
// key — against a fake API that records the request (stripemock_test.go checks the same
// calls against stripe-mock, which the test task installs).
func TestStripeCheckoutRequestShape(t *testing.T) {
	var mu sync.Mutex
	var recForm, recQuery url.Values
	var recHeader http.Header
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/checkout/sessions":
			recForm, _ = url.ParseQuery(string(body))
			recHeader = r.Header.Clone()
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "cs_test_1", "object": "checkout.session",
				"url": "https://checkout.stripe.com/c/pay/cs_test_1", "status": "open", "payment_status": "unpaid", "expires_at": 1900000000})
		case r.Method == http.MethodGet && r.URL.Path == "/v1/checkout/sessions/cs_test_1":
			recQuery = r.URL.Query()
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "cs_test_1", "object": "checkout.session",
				"status": "complete", "payment_status": "paid",
				"payment_intent": map[string]any{"id": "pi_1", "object": "payment_intent", "status": "succeeded"}})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer api.Close()

	p := payments.NewStripe("sk_test_x", api.URL)
	topup, user := uuid.New(), uuid.New()
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	s, err := p.CreateCheckout(context.Background(), payments.CheckoutInput{
		TopupID: topup, UserID: user, Credits: 100, Amount: 199, Currency: "usd", ProductName: "100 Parlor credits",
		SuccessURL: "https://parlor.example/?ok", CancelURL: "https://parlor.example/?cancel", ExpiresAt: expires,
	})
	require.NoError(t, err)
	require.Equal(t, "cs_test_1", s.ID)
	require.Equal(t, "https://checkout.stripe.com/c/pay/cs_test_1", s.URL)

	mu.Lock()
	form, header := recForm, recHeader
	mu.Unlock()
	require.Equal(t, "payment", form.Get("mode"))
	require.Equal(t, topup.String(), form.Get("client_reference_id"))
	require.Equal(t, topup.String(), form.Get("metadata[topup_id]"))
	require.Equal(t, topup.String(), form.Get("payment_intent_data[metadata][topup_id]"))
	require.Equal(t, "199", form.Get("line_items[0][price_data][unit_amount]"))
	require.Equal(t, "usd", form.Get("line_items[0][price_data][currency]"))
	require.Equal(t, "1", form.Get("line_items[0][quantity]"))
	require.Equal(t, "https://parlor.example/?ok", form.Get("success_url"))
	require.NotEmpty(t, form.Get("expires_at"))
	require.Equal(t, "topup:"+topup.String()+":checkout", header.Get("Idempotency-Key"))
	require.Equal(t, "Bearer sk_test_x", header.Get("Authorization"))

	got, err := p.GetSession(context.Background(), "cs_test_1")
	require.NoError(t, err)
	require.True(t, got.Paid())
	require.Equal(t, "pi_1", got.PaymentIntent)
	require.Equal(t, payments.IntentSucceeded, got.PaymentIntentStatus)
	mu.Lock()
	query := recQuery
	mu.Unlock()
	require.Equal(t, []string{"payment_intent"}, query["expand[0]"], "the session is read with its payment intent expanded")
}

func TestVerifyWebhook(t *testing.T) {
	topup := uuid.New()
	ev := payments.CheckoutEvent("evt_1", "checkout.session.completed",
		payments.Session{ID: "cs_1", Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid}, topup, time.Now())
	got, err := payments.VerifyWebhook(ev, payments.SignWebhook(ev, "whsec_a", time.Now()), "whsec_a")
	require.NoError(t, err)
	require.Equal(t, "evt_1", got.ID)
	require.Equal(t, "cs_1", got.SessionID)
	require.Equal(t, topup.String(), got.TopupID)

	_, err = payments.VerifyWebhook(ev, payments.SignWebhook(ev, "whsec_b", time.Now()), "whsec_a")
	require.ErrorIs(t, err, payments.ErrBadSignature)
	_, err = payments.VerifyWebhook(ev, payments.SignWebhook(ev, "whsec_a", time.Now().Add(-6*time.Minute)), "whsec_a")
	require.ErrorIs(t, err, payments.ErrBadSignature, "older than the tolerance")
}

// TestVerifyWebhookOfAnotherAPIVersion: an event Stripe signed in another API version than
// stripe-go's verifies; its version is reported, its checkout session read when it can be,
// and when a checkout session event's session cannot be read the error names both versions
// (ErrUnsupportedAPIVersion) — never ErrBadSignature. A bad signature stays ErrBadSignature.
func TestVerifyWebhookOfAnotherAPIVersion(t *testing.T) {
	topup := uuid.New()
	ev := payments.CheckoutEvent("evt_1", "checkout.session.completed",
		payments.Session{ID: "cs_1", Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid}, topup, time.Now())
	old := bytes.Replace(ev, []byte(`"api_version":"`+stripe.APIVersion+`"`), []byte(`"api_version":"2020-08-27"`), 1)
	require.NotEqual(t, ev, old)

	got, err := payments.VerifyWebhook(old, payments.SignWebhook(old, "whsec_a", time.Now()), "whsec_a")
	require.NoError(t, err)
	require.Equal(t, "2020-08-27", got.APIVersion)
	require.True(t, got.OtherAPIVersion())
	require.Equal(t, "cs_1", got.SessionID)
	require.Equal(t, topup.String(), got.TopupID)

	same, err := payments.VerifyWebhook(ev, payments.SignWebhook(ev, "whsec_a", time.Now()), "whsec_a")
	require.NoError(t, err)
	require.False(t, same.OtherAPIVersion())

	other := []byte(`{"id":"evt_2","object":"event","api_version":"2020-08-27","type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}`)
	got, err = payments.VerifyWebhook(other, payments.SignWebhook(other, "whsec_a", time.Now()), "whsec_a")
	require.NoError(t, err, "a type Parlor does not use needs no readable session")
	require.Empty(t, got.SessionID)

	for _, unreadable := range [][]byte{
		[]byte(`{"id":"evt_3","object":"event","api_version":"2020-08-27","type":"checkout.session.completed","data":{"object":"cs_1"}}`),
		[]byte(`{"id":"evt_4","object":"event","api_version":"2020-08-27","type":"checkout.session.completed","data":{"object":{"object":"checkout.session"}}}`),
		[]byte(`{"id":"evt_5","object":"event","api_version":"2020-08-27","type":"checkout.session.expired","created":"yesterday","data":{"object":{"id":"cs_1","object":"checkout.session"}}}`),
	} {
		_, err := payments.VerifyWebhook(unreadable, payments.SignWebhook(unreadable, "whsec_a", time.Now()), "whsec_a")
		require.ErrorIs(t, err, payments.ErrUnsupportedAPIVersion, "%s", unreadable)
		require.NotErrorIs(t, err, payments.ErrBadSignature)
		require.ErrorContains(t, err, "2020-08-27")
		require.ErrorContains(t, err, stripe.APIVersion)
	}

	_, err = payments.VerifyWebhook(old, payments.SignWebhook(old, "whsec_b", time.Now()), "whsec_a")
	require.ErrorIs(t, err, payments.ErrBadSignature)
	for _, notAnEvent := range [][]byte{[]byte(`{}`), []byte(`not json`), []byte(`{"id":"evt_6","object":"event","api_version":"` + stripe.APIVersion + `"}`)} {
		_, err = payments.VerifyWebhook(notAnEvent, payments.SignWebhook(notAnEvent, "whsec_a", time.Now()), "whsec_a")
		require.ErrorIs(t, err, payments.ErrNotAnEvent, "%s", notAnEvent)
	}
}

// TestStripeRefundOfARefundedPaymentIsDone: Stripe honours an idempotency key for 24 hours,
// so a refund retried later (or a refund already made in the Dashboard) is answered
// `charge_already_refunded`: the money is back with the payer, which is what was asked —
// success, not a provider failure (a 503 the caller would retry for ever). Other refusals
// stay errors.
func TestStripeRefundOfARefundedPaymentIsDone(t *testing.T) {
	t.Parallel()
	code := "charge_already_refunded"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"type": "invalid_request_error", "code": code, "message": "Charge ch_1 has already been refunded."}})
	}))
	defer api.Close()
	p := payments.NewStripe("sk_test_x", api.URL)
	require.NoError(t, p.Refund(context.Background(), "pi_1", 199, "topup:x:refund:1"))

	code = "amount_too_large"
	require.Error(t, p.Refund(context.Background(), "pi_1", 199, "topup:x:refund:1"))
}
