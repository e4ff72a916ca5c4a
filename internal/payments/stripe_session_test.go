package payments

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82"
)

// TestFromStripeReadsTheOutcome maps Checkout Sessions as Stripe returns them with the
// PaymentIntent expanded (testdata/) to what Settle acts on: only a paid session credits,
// only a completed session whose delayed payment failed fails, and a delayed payment still
// processing is neither.
func TestFromStripeReadsTheOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fixture      string
		status       string
		intentStatus string
		paid, failed bool
	}{
		{"checkout_session_paid.json", SessionComplete, IntentSucceeded, true, false},
		{"checkout_session_delayed_processing.json", SessionComplete, IntentProcessing, false, false},
		{"checkout_session_delayed_failed.json", SessionComplete, IntentRequiresPaymentMethod, false, true},
		{"checkout_session_delayed_canceled.json", SessionComplete, IntentCanceled, false, true},
		{"checkout_session_expired.json", SessionExpired, "", false, false},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join("testdata", tc.fixture))
			require.NoError(t, err)
			var cs stripe.CheckoutSession
			require.NoError(t, json.Unmarshal(raw, &cs))
			s := fromStripe(&cs)
			require.Equal(t, tc.status, s.Status)
			require.Equal(t, tc.intentStatus, s.PaymentIntentStatus)
			require.Equal(t, tc.paid, s.Paid(), "Paid")
			require.Equal(t, tc.failed, s.Failed(), "Failed")
			if cs.PaymentIntent != nil {
				require.Equal(t, cs.PaymentIntent.ID, s.PaymentIntent)
			}
		})
	}

	// Without the expansion the intent is a bare id: a completed, unpaid session then reads
	// as still processing, never as failed.
	var cs stripe.CheckoutSession
	require.NoError(t, json.Unmarshal([]byte(`{"id":"cs_1","object":"checkout.session","status":"complete",
		"payment_status":"unpaid","payment_intent":"pi_1"}`), &cs))
	s := fromStripe(&cs)
	require.Equal(t, "pi_1", s.PaymentIntent)
	require.False(t, s.Paid())
	require.False(t, s.Failed())
}
