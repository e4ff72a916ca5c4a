package payments

import (
	"context"
	"fmt"
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
	var opts []stripe.ClientOption
	if backendURL != "" {
		u := backendURL
		opts = append(opts, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{URL: &u})))
	}
	return &Stripe{client: stripe.NewClient(secretKey, opts...)}
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
	cs, err := s.client.V1CheckoutSessions.Retrieve(ctx, id, params)
	if err != nil {
		return Session{}, fmt.Errorf("stripe: retrieve checkout session %s: %w", id, err)
	}
	return fromStripe(cs), nil
}

func fromStripe(cs *stripe.CheckoutSession) Session {
	out := Session{ID: cs.ID, URL: cs.URL, Status: string(cs.Status), PaymentStatus: string(cs.PaymentStatus),
		ExpiresAt: time.Unix(cs.ExpiresAt, 0)}
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
	if _, err := s.client.V1Refunds.Create(ctx, params); err != nil {
		return fmt.Errorf("stripe: refund %s: %w", paymentIntent, err)
	}
	return nil
}
