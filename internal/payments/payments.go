// Package payments talks to payment providers: Stripe Checkout through stripe-go, or the
// sandbox that plays Stripe's part offline. Both sit behind Provider; webhooks of both are
// Stripe-shaped and verified the same way.
package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	// AmountTotal and Currency are what the payer was charged (minor units, lower-case ISO
	// code).
	AmountTotal int64
	Currency    string
	ExpiresAt   time.Time
}

// Charged reports whether the session charged exactly amount in currency: what a top-up's
// package cost at purchase. Anything else (a price changed at the provider, a discount, a
// tampered session) must not mint credits.
func (s Session) Charged(amount int64, currency string) bool {
	return s.AmountTotal == amount && strings.EqualFold(s.Currency, currency)
}

// CallTimeout bounds one call to the provider, its retries included: Stripe's client makes
// up to three attempts (StripeAttemptTimeout each) with a short backoff between them.
const CallTimeout = 30 * time.Second

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
	// Charge is the charge a charge.refunded event reports; Dispute the dispute a
	// charge.dispute.* event reports. Nil for other events.
	Charge  *Charge
	Dispute *Dispute
	// APIVersion is the Stripe API version the event is rendered in: its webhook
	// endpoint's, which need not be stripe-go's.
	APIVersion string
	Payload    []byte
}

// Charge is a charge as a charge.refunded event reports it: AmountRefunded is cumulative
// (every refund of the charge so far), so events in any order tell the same story.
type Charge struct {
	ID             string
	PaymentIntent  string
	Amount         int64
	AmountRefunded int64
	Currency       string
}

// Dispute is a dispute as a charge.dispute.* event reports it. Status is Stripe's:
// warning_needs_response, warning_under_review, warning_closed (an inquiry, no funds
// withdrawn), needs_response, under_review (funds withdrawn), won (reinstated), lost.
type Dispute struct {
	ID            string
	Charge        string
	PaymentIntent string
	Amount        int64
	Currency      string
	Status        string
}

// Event types Parlor books beyond the checkout session's.
const (
	EventChargeRefunded        = "charge.refunded"
	EventDisputeCreated        = "charge.dispute.created"
	EventDisputeUpdated        = "charge.dispute.updated"
	EventDisputeClosed         = "charge.dispute.closed"
	EventDisputeFundsWithdrawn = "charge.dispute.funds_withdrawn"
	EventDisputeFundsReinstate = "charge.dispute.funds_reinstated"
)

// OtherAPIVersion reports whether the event is rendered in another API version than the
// one stripe-go, and so Parlor, reads (stripe.APIVersion).
func (e Event) OtherAPIVersion() bool { return e.APIVersion != stripe.APIVersion }

// ErrBadSignature means a webhook's signature or timestamp did not verify.
var ErrBadSignature = errors.New("the webhook signature does not verify")

// ErrNotAnEvent means a webhook's body is signed but is not a Stripe event (not JSON, or
// no id or type).
var ErrNotAnEvent = errors.New("the signed webhook body is not a Stripe event")

// ErrUnsupportedAPIVersion means an event of another API version is about a checkout
// session that cannot be read from it. Its error is an *APIVersionError.
var ErrUnsupportedAPIVersion = errors.New("the event's API version is not supported")

// APIVersionError is an event of another API version whose checkout session cannot be
// read; it names both versions. It matches ErrUnsupportedAPIVersion.
type APIVersionError struct {
	EventID, Type string
	Got, Want     string // the event's api_version, and stripe-go's
	Err           error  // why the session cannot be read, when known
}

func (e *APIVersionError) Error() string {
	msg := fmt.Sprintf("event %s (%s) is of API version %q, not %s: its checkout session cannot be read", e.EventID, e.Type, e.Got, e.Want)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes an *APIVersionError match ErrUnsupportedAPIVersion.
func (e *APIVersionError) Is(target error) bool { return target == ErrUnsupportedAPIVersion }

// WebhookTolerance is how old a signed webhook may be.
const WebhookTolerance = 5 * time.Minute

// checkoutSessionEvents is the prefix of the event types about a checkout session.
const checkoutSessionEvents = "checkout.session."

// VerifyWebhook checks the Stripe-Signature header over the raw payload with secret and
// returns the event. An event of another API version than stripe-go's is read tolerantly
// (Stripe renders events in the version of their webhook endpoint): it verifies like any
// other, and only a checkout session event whose session cannot be read from it is
// refused, with an *APIVersionError — never ErrBadSignature, which would send the operator
// after the secret.
func VerifyWebhook(payload []byte, header, secret string) (Event, error) {
	ev, err := webhook.ConstructEventWithOptions(payload, header, secret,
		webhook.ConstructEventOptions{Tolerance: WebhookTolerance, IgnoreAPIVersionMismatch: true})
	if err != nil {
		for _, sig := range []error{webhook.ErrNotSigned, webhook.ErrInvalidHeader, webhook.ErrNoValidSignature, webhook.ErrTooOld} {
			if errors.Is(err, sig) {
				return Event{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
			}
		}
		return unparsedEvent(payload, err) // signed, but stripe-go cannot parse it
	}
	if ev.ID == "" || ev.Type == "" {
		return Event{}, fmt.Errorf("%w: no id or type", ErrNotAnEvent)
	}
	out := Event{ID: ev.ID, Type: string(ev.Type), APIVersion: ev.APIVersion, Payload: payload}
	var why error
	if ev.Data != nil && len(ev.Data.Raw) > 0 {
		why = out.readObject(ev.Data.Raw)
	}
	if out.SessionID == "" && out.OtherAPIVersion() && strings.HasPrefix(out.Type, checkoutSessionEvents) {
		return Event{}, &APIVersionError{EventID: out.ID, Type: out.Type, Got: out.APIVersion, Want: stripe.APIVersion, Err: why}
	}
	return out, nil
}

// ReadStoredEvent reads an event stored after VerifyWebhook verified it.
func ReadStoredEvent(payload []byte) (Event, error) {
	var head struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		APIVersion string `json:"api_version"`
		Data       struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrNotAnEvent, err)
	}
	out := Event{ID: head.ID, Type: head.Type, APIVersion: head.APIVersion, Payload: payload}
	if len(head.Data.Object) > 0 {
		_ = out.readObject(head.Data.Object) // what cannot be read is left unset
	}
	return out, nil
}

// readObject reads what Parlor acts on from the event's data.object: a checkout session's
// id and top-up, a refunded charge, a dispute. It returns why a checkout session could not
// be read.
func (e *Event) readObject(raw []byte) error {
	var obj struct {
		Object            string          `json:"object"`
		ID                string          `json:"id"`
		ClientReferenceID string          `json:"client_reference_id"`
		PaymentIntent     json.RawMessage `json:"payment_intent"`
		Charge            json.RawMessage `json:"charge"`
		Amount            int64           `json:"amount"`
		AmountRefunded    int64           `json:"amount_refunded"`
		Currency          string          `json:"currency"`
		Status            string          `json:"status"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	switch {
	case obj.Object == "checkout.session" && obj.ID != "":
		e.SessionID, e.TopupID = obj.ID, obj.ClientReferenceID
		return nil
	case obj.Object == "charge" && obj.ID != "" && e.Type == EventChargeRefunded:
		e.Charge = &Charge{ID: obj.ID, PaymentIntent: idOf(obj.PaymentIntent), Amount: obj.Amount,
			AmountRefunded: obj.AmountRefunded, Currency: obj.Currency}
	case obj.Object == "dispute" && obj.ID != "" && strings.HasPrefix(e.Type, "charge.dispute."):
		e.Dispute = &Dispute{ID: obj.ID, Charge: idOf(obj.Charge), PaymentIntent: idOf(obj.PaymentIntent),
			Amount: obj.Amount, Currency: obj.Currency, Status: obj.Status}
	}
	switch {
	case obj.Object != "checkout.session":
		return fmt.Errorf("data.object is a %q, not a checkout.session", obj.Object)
	default:
		return errors.New("the checkout session has no id")
	}
}

// idOf reads an expandable field: an id, or an expanded object with an id.
func idOf(raw json.RawMessage) string {
	var id string
	if json.Unmarshal(raw, &id) == nil {
		return id
	}
	var obj struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.ID
}

// unparsedEvent is the verified payload that stripe-go could not parse (parseErr): an event
// of another API version is kept by its id and type unless it is about a checkout session,
// whose session then cannot be read; anything else is not an event.
func unparsedEvent(payload []byte, parseErr error) (Event, error) {
	var head struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		APIVersion string `json:"api_version"`
	}
	if json.Unmarshal(payload, &head) != nil || head.ID == "" || head.Type == "" || head.APIVersion == "" ||
		head.APIVersion == stripe.APIVersion {
		return Event{}, fmt.Errorf("%w: %v", ErrNotAnEvent, parseErr)
	}
	if strings.HasPrefix(head.Type, checkoutSessionEvents) {
		return Event{}, &APIVersionError{EventID: head.ID, Type: head.Type, Got: head.APIVersion, Want: stripe.APIVersion, Err: parseErr}
	}
	return Event{ID: head.ID, Type: head.Type, APIVersion: head.APIVersion, Payload: payload}, nil
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

// ChargeRefundedEvent renders a Stripe-shaped charge.refunded event of the charge paying
// paymentIntent, amountRefunded of amount refunded so far (tests, and the sandbox).
func ChargeRefundedEvent(id string, c Charge, created time.Time) []byte {
	return event(id, EventChargeRefunded, created, map[string]any{
		"id": c.ID, "object": "charge", "payment_intent": c.PaymentIntent, "amount": c.Amount,
		"amount_refunded": c.AmountRefunded, "currency": c.Currency, "refunded": c.AmountRefunded >= c.Amount,
		"paid": true, "status": "succeeded",
	})
}

// DisputeEvent renders a Stripe-shaped charge.dispute.* event of type typ about d.
func DisputeEvent(id, typ string, d Dispute, created time.Time) []byte {
	return event(id, typ, created, map[string]any{
		"id": d.ID, "object": "dispute", "charge": d.Charge, "payment_intent": d.PaymentIntent,
		"amount": d.Amount, "currency": d.Currency, "status": d.Status, "reason": "fraudulent",
	})
}

func event(id, typ string, created time.Time, object any) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "type": typ,
		"created": created.Unix(), "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": object},
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
