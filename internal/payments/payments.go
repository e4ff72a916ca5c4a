// Package payments talks to payment providers: Stripe Checkout through stripe-go, or the
// sandbox that plays Stripe's part offline. Both sit behind Provider; webhooks of both are
// Stripe-shaped and verified the same way.
package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"
)

// Session states, as Stripe names them.
const (
	SessionOpen     = "open"
	SessionComplete = "complete"
	SessionExpired  = "expired"
	PaymentPaid     = "paid"
	PaymentUnpaid   = "unpaid"
)

// PaymentIntent states that decide a completed-but-unpaid session, as Stripe names them.
// A delayed payment method (SEPA Debit, ACH, …) leaves the session complete and unpaid
// while its PaymentIntent is processing; the intent then succeeds (the session becomes
// paid) or fails back to requires_payment_method — or canceled — and the session stays
// complete and unpaid for good.
const (
	IntentProcessing            = "processing"
	IntentSucceeded             = "succeeded"
	IntentRequiresPaymentMethod = "requires_payment_method"
	IntentCanceled              = "canceled"
)

// Session is a checkout session as the provider knows it: the authoritative payment state.
type Session struct {
	ID            string
	URL           string
	Status        string // open, complete, expired
	PaymentStatus string // paid, unpaid, no_payment_required
	PaymentIntent string
	// PaymentIntentStatus is the PaymentIntent's status (processing, succeeded,
	// requires_payment_method, canceled, …); empty when the session has no intent yet.
	PaymentIntentStatus string
	ExpiresAt           time.Time
}

// Paid reports whether the provider confirms the payment.
func (s Session) Paid() bool { return s.Status == SessionComplete && s.PaymentStatus == PaymentPaid }

// Failed reports whether the provider says the payment failed for good: the session was
// completed with a delayed payment method whose PaymentIntent then failed. A completed,
// unpaid session whose payment is still processing is neither paid nor failed.
func (s Session) Failed() bool {
	return s.Status == SessionComplete && s.PaymentStatus == PaymentUnpaid &&
		(s.PaymentIntentStatus == IntentRequiresPaymentMethod || s.PaymentIntentStatus == IntentCanceled)
}

// CheckoutInput describes a checkout session to open for a top-up.
type CheckoutInput struct {
	TopupID     uuid.UUID
	UserID      uuid.UUID
	Credits     int64
	Amount      int64 // minor units
	Currency    string
	ProductName string
	SuccessURL  string
	CancelURL   string
	ExpiresAt   time.Time
}

// IdempotencyKey is the provider-side key of a top-up's checkout creation: a retry of the
// same top-up never opens a second session.
func (in CheckoutInput) IdempotencyKey() string { return "topup:" + in.TopupID.String() + ":checkout" }

// Provider is a payment provider.
type Provider interface {
	// Name is "stripe" or "sandbox".
	Name() string
	// CreateCheckout opens a checkout session for a top-up.
	CreateCheckout(ctx context.Context, in CheckoutInput) (Session, error)
	// GetSession re-reads a session's authoritative state.
	GetSession(ctx context.Context, id string) (Session, error)
	// Refund returns amount (minor units) of a payment to the payer, once per key.
	Refund(ctx context.Context, paymentIntent string, amount int64, idempotencyKey string) error
}

// Event is a verified webhook event, reduced to what the top-up flow needs.
type Event struct {
	ID        string
	Type      string
	SessionID string // the checkout session it concerns, when it concerns one
	TopupID   string // from the session's client_reference_id
	Payload   []byte
}

// ErrBadSignature means a webhook's signature or timestamp did not verify.
var ErrBadSignature = errors.New("the webhook signature does not verify")

// WebhookTolerance is how old a signed webhook may be.
const WebhookTolerance = 5 * time.Minute

// VerifyWebhook checks the Stripe-Signature header over the raw payload with secret and
// returns the event.
func VerifyWebhook(payload []byte, header, secret string) (Event, error) {
	ev, err := webhook.ConstructEventWithOptions(payload, header, secret, webhook.ConstructEventOptions{Tolerance: WebhookTolerance})
	if err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	out := Event{ID: ev.ID, Type: string(ev.Type), Payload: payload}
	if ev.Data != nil && len(ev.Data.Raw) > 0 {
		var obj struct {
			Object            string `json:"object"`
			ID                string `json:"id"`
			ClientReferenceID string `json:"client_reference_id"`
		}
		if err := json.Unmarshal(ev.Data.Raw, &obj); err == nil && obj.Object == "checkout.session" {
			out.SessionID, out.TopupID = obj.ID, obj.ClientReferenceID
		}
	}
	return out, nil
}

// SignWebhook signs payload like Stripe does (the sandbox's events, and tests).
func SignWebhook(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: at}).Header
}

// CheckoutEvent renders a Stripe-shaped checkout.session.* event about s, of the API
// version stripe-go expects.
func CheckoutEvent(id, typ string, s Session, topupID uuid.UUID, created time.Time) []byte {
	type object struct {
		ID                string            `json:"id"`
		Object            string            `json:"object"`
		ClientReferenceID string            `json:"client_reference_id"`
		Metadata          map[string]string `json:"metadata"`
		Status            string            `json:"status"`
		PaymentStatus     string            `json:"payment_status"`
		PaymentIntent     *string           `json:"payment_intent"`
	}
	obj := object{ID: s.ID, Object: "checkout.session", ClientReferenceID: topupID.String(),
		Metadata: map[string]string{"topup_id": topupID.String()}, Status: s.Status, PaymentStatus: s.PaymentStatus}
	if s.PaymentIntent != "" {
		obj.PaymentIntent = &s.PaymentIntent
	}
	b, _ := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "type": typ,
		"created": created.Unix(), "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": obj},
	})
	return b
}

// ErrNotConfigured is returned by Unconfigured.
var ErrNotConfigured = errors.New("payments are not configured (set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET)")

// Unconfigured is the provider of a production deployment without Stripe keys: the sandbox
// would hand out free credits, so every payment is refused instead.
type Unconfigured struct{}

// Name implements Provider.
func (Unconfigured) Name() string { return "stripe" }

// CreateCheckout implements Provider.
func (Unconfigured) CreateCheckout(context.Context, CheckoutInput) (Session, error) {
	return Session{}, ErrNotConfigured
}

// GetSession implements Provider.
func (Unconfigured) GetSession(context.Context, string) (Session, error) {
	return Session{}, ErrNotConfigured
}

// Refund implements Provider.
func (Unconfigured) Refund(context.Context, string, int64, string) error { return ErrNotConfigured }
