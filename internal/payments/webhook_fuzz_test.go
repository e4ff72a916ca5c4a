package payments_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/payments"
)

const fuzzWebhookSecret = "whsec_fuzz"

// FuzzVerifyWebhook verifies arbitrary bodies under arbitrary Stripe-Signature headers (a
// forged one never verifies, and committed seed headers go stale), and the same bodies
// signed now with the secret: it never panics, a refusal is ErrBadSignature, an accepted
// event carries its exact body, and the body with any byte changed, added or cut is refused
// under the header that verified it.
func FuzzVerifyWebhook(f *testing.F) {
	now := time.Now()
	topup := uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10")
	paid := payments.CheckoutEvent("evt_1", "checkout.session.completed",
		payments.Session{ID: "cs_1", Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid}, topup, now)
	expired := payments.CheckoutEvent("evt_2", "checkout.session.expired",
		payments.Session{ID: "cs_2", Status: "expired", PaymentStatus: "unpaid"}, topup, now)
	f.Add(paid, payments.SignWebhook(paid, fuzzWebhookSecret, now), uint(10))
	f.Add(expired, payments.SignWebhook(expired, fuzzWebhookSecret, now), uint(0))
	f.Add(paid, payments.SignWebhook(paid, "whsec_other", now), uint(3))
	f.Add(paid, payments.SignWebhook(paid, fuzzWebhookSecret, now.Add(-time.Hour)), uint(3))
	f.Add(paid, "", uint(0))
	f.Add([]byte(`{"id":"evt_3","object":"event","type":"x","data":{"object":{"object":"charge"}}}`), "t=1,v1=00", uint(1))
	f.Add([]byte(`{}`), "t=abc,v1=zz,v0=,v1", uint(1))
	f.Add([]byte(`not json`), "t=99999999999999999999,v1=", uint(1))
	f.Add([]byte{}, ",,,=", uint(0))
	f.Fuzz(func(t *testing.T, body []byte, header string, pos uint) {
		check := func(header string) {
			ev, err := payments.VerifyWebhook(body, header, fuzzWebhookSecret)
			if err != nil {
				require.ErrorIs(t, err, payments.ErrBadSignature)
				require.Equal(t, payments.Event{}, ev)
				return
			}
			require.Equal(t, body, ev.Payload)
			require.NotEmpty(t, body)
			i := pos % uint(len(body))
			altered := bytes.Clone(body)
			altered[i] ^= 0x20
			for _, b := range [][]byte{altered, append(bytes.Clone(body), ' '), body[:len(body)-1]} {
				_, err := payments.VerifyWebhook(b, header, fuzzWebhookSecret)
				require.ErrorIs(t, err, payments.ErrBadSignature, "an altered body %q", b)
			}
			_, err = payments.VerifyWebhook(body, header, fuzzWebhookSecret+"x")
			require.ErrorIs(t, err, payments.ErrBadSignature, "another secret")
		}
		check(header)
		check(payments.SignWebhook(body, fuzzWebhookSecret, time.Now()))
	})
}
