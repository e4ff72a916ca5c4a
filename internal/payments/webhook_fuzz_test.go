package payments_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/parlor-dev/parlor/internal/payments"
)

const fuzzWebhookSecret = "whsec_fuzz"

// FuzzVerifyWebhook verifies arbitrary bodies under arbitrary Stripe-Signature headers (a
// forged one never verifies, and committed seed headers go stale), and the same bodies
// signed now with the secret: it never panics, a refusal is ErrBadSignature — or, for a
// body the signature covers, ErrNotAnEvent or ErrUnsupportedAPIVersion — an accepted event
// carries its exact body, id and type, and the body with any byte changed, added or cut is
// refused with ErrBadSignature under the header that verified it.
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
	f.Add([]byte(`{"id":"evt_4","type":"checkout.session.completed","api_version":"2020-08-27","data":{"object":"cs_1"}}`), "", uint(5))
	f.Add([]byte(`{"id":"evt_5","type":"customer.created","api_version":"2020-08-27","created":"x"}`), "", uint(7))
	f.Fuzz(func(t *testing.T, body []byte, header string, pos uint) {
		check := func(header string) {
			ev, err := payments.VerifyWebhook(body, header, fuzzWebhookSecret)
			if err != nil {
				if !errors.Is(err, payments.ErrNotAnEvent) && !errors.Is(err, payments.ErrUnsupportedAPIVersion) {
					require.ErrorIs(t, err, payments.ErrBadSignature)
				} else {
					require.NoError(t, webhook.ValidatePayloadWithTolerance(body, header, fuzzWebhookSecret, payments.WebhookTolerance),
						"a body refused as no event or of another version is one the signature covers")
				}
				require.Equal(t, payments.Event{}, ev)
				return
			}
			require.Equal(t, body, ev.Payload)
			require.NotEmpty(t, body)
			require.NotEmpty(t, ev.ID)
			require.NotEmpty(t, ev.Type)
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
