package payments

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v82"
)

// Stripe is the real provider: Stripe Checkout in payment mode through stripe-go.
type Stripe struct {
	client *stripe.Client
}

// NewStripe returns the Stripe provider; backendURL overrides the API host (stripe-mock in
// tests), empty for Stripe itself.
func NewStripe(secretKey, backendURL string) *Stripe {
	cfg := &stripe.BackendConfig{
		// stripe-go's default is 80 s per attempt: three attempts would outlast every lock
		// and request bound Parlor keeps (CallTimeout bounds the whole call).
		HTTPClient:        &http.Client{Timeout: StripeAttemptTimeout},
		MaxNetworkRetries: stripe.Int64(StripeRetries),
	}
	if backendURL != "" {
		cfg.URL = stripe.String(backendURL)
	}
	return &Stripe{client: stripe.NewClient(secretKey, stripe.WithBackends(stripe.NewBackendsWithConfig(cfg)))}
}

// StripeAttemptTimeout bounds one HTTP attempt at Stripe; StripeRetries is how many times
// stripe-go retries a failed attempt (under the same idempotency key). Together with the
// backoff they fit in CallTimeout.
const (
	StripeAttemptTimeout = 9 * time.Second
	StripeRetries        = 2
)

// bounded is ctx bounded by CallTimeout.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallTimeout)
}

// Name implements Provider.
func (s *Stripe) Name() string { return "stripe" }

// CreateCheckout implements Provider: a payment-mode session for the package's price,
// tied to the top-up by client_reference_id and metadata, expiring at in.ExpiresAt (Stripe
// allows 30 minutes to 24 hours), under the deterministic idempotency key.
func (s *Stripe) CreateCheckout(ctx context.Context, in CheckoutInput) (Session, error) {
	params := &stripe.CheckoutSessionCreateParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModePayment)),
		ClientReferenceID: stripe.String(in.TopupID.String()),
		SuccessURL:        stripe.String(in.SuccessURL),
		CancelURL:         stripe.String(in.CancelURL),
		ExpiresAt:         stripe.Int64(in.ExpiresAt.Unix()),
		LineItems: []*stripe.CheckoutSessionCreateLineItemParams{{
			Quantity: stripe.Int64(1),
			PriceData: &stripe.CheckoutSessionCreateLineItemPriceDataParams{
				Currency:   stripe.String(in.Currency),
				UnitAmount: stripe.Int64(in.Amount),
				ProductData: &stripe.CheckoutSessionCreateLineItemPriceDataProductDataParams{
					Name: stripe.String(in.ProductName),
				},
			},
		}},
		PaymentIntentData: &stripe.CheckoutSessionCreatePaymentIntentDataParams{
			Metadata: map[string]string{"topup_id": in.TopupID.String()},
		},
	}
	params.AddMetadata("topup_id", in.TopupID.String())
	params.AddMetadata("user_id", in.UserID.String())
	params.SetIdempotencyKey(in.IdempotencyKey())
	ctx, cancel := bounded(ctx)
	defer cancel()
	cs, err := s.client.V1CheckoutSessions.Create(ctx, params)
	if err != nil {
		return Session{}, fmt.Errorf("stripe: create checkout session: %w", err)
	}
	return fromStripe(cs), nil
}

// GetSession implements Provider. The PaymentIntent is expanded: a session paid with a
// delayed method stays complete and unpaid whether its payment is still processing or has
// failed, and only the intent's status tells the two apart.
func (s *Stripe) GetSession(ctx context.Context, id string) (Session, error) {
	params := &stripe.CheckoutSessionRetrieveParams{}
	params.AddExpand("payment_intent")
	ctx, cancel := bounded(ctx)
	defer cancel()
	cs, err := s.client.V1CheckoutSessions.Retrieve(ctx, id, params)
	if err != nil {
		return Session{}, fmt.Errorf("stripe: retrieve checkout session %s: %w", id, err)
	}
	return fromStripe(cs), nil
}

func fromStripe(cs *stripe.CheckoutSession) Session {
	out := Session{ID: cs.ID, URL: cs.URL, Status: string(cs.Status), PaymentStatus: string(cs.PaymentStatus),
		AmountTotal: cs.AmountTotal, Currency: string(cs.Currency), ExpiresAt: time.Unix(cs.ExpiresAt, 0)}
	if cs.PaymentIntent != nil {
		// Unexpanded (as in CreateCheckout's answer) the intent is an id with no status.
		out.PaymentIntent, out.PaymentIntentStatus = cs.PaymentIntent.ID, string(cs.PaymentIntent.Status)
	}
	return out
}

// Refund implements Provider: a refund of the payment intent, under the caller's
// idempotency key (a retry never refunds twice).
func (s *Stripe) Refund(ctx context.Context, paymentIntent string, amount int64, idempotencyKey string) error {
	params := &stripe.RefundCreateParams{PaymentIntent: stripe.String(paymentIntent), Amount: stripe.Int64(amount)}
	params.SetIdempotencyKey(idempotencyKey)
	ctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := s.client.V1Refunds.Create(ctx, params); err != nil {
		// Stripe keeps an idempotency key for 24 hours: a refund retried after that (or one
		// already made in the Dashboard) is refused as already refunded — and the money is
		// back with the payer, which is all that was asked.
		var serr *stripe.Error
		if errors.As(err, &serr) && serr.Code == stripe.ErrorCodeChargeAlreadyRefunded {
			return nil
		}
		return fmt.Errorf("stripe: refund %s: %w", paymentIntent, err)
	}
	return nil
}
