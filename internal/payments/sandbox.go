package payments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Sandbox plays Stripe Checkout offline: its sessions live in the database, its checkout
// page (served by the HTTP layer at /sandbox/checkout/{id}) has Pay, "Pay with a delayed
// method that fails" and Cancel buttons, and each emits the signed checkout.session.*
// events Stripe would send to the same webhook endpoint.
type Sandbox struct {
	pool      *pgxpool.Pool
	publicURL string
}

// NewSandbox returns the sandbox provider; publicURL is where its checkout pages are served.
func NewSandbox(pool *pgxpool.Pool, publicURL string) *Sandbox {
	return &Sandbox{pool: pool, publicURL: publicURL}
}

// Name implements Provider.
func (s *Sandbox) Name() string { return "sandbox" }

func randomID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// CheckoutURL is the sandbox page of a session.
func (s *Sandbox) CheckoutURL(id string) string { return s.publicURL + "/sandbox/checkout/" + id }

// CreateCheckout implements Provider; a second call for one top-up returns its session.
func (s *Sandbox) CreateCheckout(ctx context.Context, in CheckoutInput) (Session, error) {
	row, err := db.New(s.pool).CreateSandboxSession(ctx, db.CreateSandboxSessionParams{
		ID: randomID("cs_sbx_"), TopupID: in.TopupID, Amount: in.Amount, Currency: in.Currency, ExpiresAt: in.ExpiresAt,
	})
	if err != nil {
		return Session{}, fmt.Errorf("sandbox checkout: %w", err)
	}
	return s.session(row), nil
}

// errNoSession answers for a sandbox session id that does not exist (a 404 on its page).
var errNoSession = apperr.New(apperr.NotFound, "no such checkout session")

// GetSession implements Provider: an open session past its expiry reads as expired.
func (s *Sandbox) GetSession(ctx context.Context, id string) (Session, error) {
	row, err := db.New(s.pool).GetSandboxSession(ctx, id)
	if postgres.IsNoRows(err) {
		err = errNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("sandbox session %s: %w", id, err)
	}
	return s.session(row), nil
}

func (s *Sandbox) session(r db.SandboxSession) Session {
	out := Session{ID: r.ID, URL: s.CheckoutURL(r.ID), Status: r.Status, PaymentStatus: r.PaymentStatus,
		AmountTotal: r.Amount, Currency: r.Currency, ExpiresAt: r.ExpiresAt}
	if r.PaymentIntent != nil {
		out.PaymentIntent = *r.PaymentIntent
	}
	if r.PaymentIntentStatus != nil {
		out.PaymentIntentStatus = *r.PaymentIntentStatus
	}
	if out.Status == SessionOpen && time.Now().After(r.ExpiresAt) {
		out.Status = SessionExpired
	}
	return out
}

// SandboxOutcome is what the payer chose on the sandbox page.
type SandboxOutcome struct {
	Session Session
	TopupID string
	// Event is the signed-to-be webhook payload to deliver, empty when nothing changed.
	Event []byte
}

// Settle records the payer's choice (pay or cancel) on an open session and returns the
// Stripe-shaped event announcing it. Pressing a button twice changes nothing the second
// time, and paying a session past its expiry changes nothing either.
func (s *Sandbox) Settle(ctx context.Context, id string, pay bool) (SandboxOutcome, error) {
	typ := "checkout.session.expired"
	if pay {
		typ = "checkout.session.completed"
	}
	out, err := s.change(ctx, id, typ, func(q *db.Queries, row db.SandboxSession) (db.SandboxSession, error) {
		if !pay {
			return q.CompleteSandboxSession(ctx, db.CompleteSandboxSessionParams{ID: id, Status: SessionExpired, PaymentStatus: PaymentUnpaid})
		}
		if !time.Now().Before(row.ExpiresAt) {
			return row, errUnchanged // too late to pay
		}
		pi, succeeded := randomID("pi_sbx_"), IntentSucceeded
		return q.CompleteSandboxSession(ctx, db.CompleteSandboxSessionParams{ID: id, Status: SessionComplete,
			PaymentStatus: PaymentPaid, PaymentIntent: &pi, PaymentIntentStatus: &succeeded})
	})
	if err != nil {
		return SandboxOutcome{}, fmt.Errorf("sandbox settle %s: %w", id, err)
	}
	return out, nil
}

// BeginDelayedPayment plays a payer choosing a delayed payment method (SEPA Debit, ACH, …)
// on an open session. As at Stripe, the session completes unpaid while its PaymentIntent is
// processing, announced by checkout.session.completed; FinishDelayedPayment decides the
// payment later. Nothing changes on a session that is not open (or past its expiry).
func (s *Sandbox) BeginDelayedPayment(ctx context.Context, id string) (SandboxOutcome, error) {
	out, err := s.change(ctx, id, "checkout.session.completed", func(q *db.Queries, row db.SandboxSession) (db.SandboxSession, error) {
		if !time.Now().Before(row.ExpiresAt) {
			return row, errUnchanged // too late to pay
		}
		pi, processing := randomID("pi_sbx_"), IntentProcessing
		return q.CompleteSandboxSession(ctx, db.CompleteSandboxSessionParams{ID: id, Status: SessionComplete,
			PaymentStatus: PaymentUnpaid, PaymentIntent: &pi, PaymentIntentStatus: &processing})
	})
	if err != nil {
		return SandboxOutcome{}, fmt.Errorf("sandbox delayed payment %s: %w", id, err)
	}
	return out, nil
}

// FinishDelayedPayment ends a delayed payment still processing as Stripe does. Succeeded:
// the session becomes paid (checkout.session.async_payment_succeeded). Failed: the
// PaymentIntent goes back to requires_payment_method and the session stays complete and
// unpaid for good (checkout.session.async_payment_failed). Nothing changes otherwise.
func (s *Sandbox) FinishDelayedPayment(ctx context.Context, id string, succeeded bool) (SandboxOutcome, error) {
	typ, paid, intent := "checkout.session.async_payment_failed", PaymentUnpaid, IntentRequiresPaymentMethod
	if succeeded {
		typ, paid, intent = "checkout.session.async_payment_succeeded", PaymentPaid, IntentSucceeded
	}
	out, err := s.change(ctx, id, typ, func(q *db.Queries, _ db.SandboxSession) (db.SandboxSession, error) {
		return q.FinishSandboxPayment(ctx, db.FinishSandboxPaymentParams{ID: id, PaymentStatus: paid, PaymentIntentStatus: intent})
	})
	if err != nil {
		return SandboxOutcome{}, fmt.Errorf("sandbox delayed payment %s: %w", id, err)
	}
	return out, nil
}

// errUnchanged tells change that a step does not apply to the session as it is.
var errUnchanged = errors.New("nothing to change")

// change applies one step to a session and renders the event of type typ announcing the
// new state. update answers no rows (or errUnchanged) when the step does not apply — a
// button pressed twice — and then there is no event.
func (s *Sandbox) change(ctx context.Context, id, typ string, update func(q *db.Queries, row db.SandboxSession) (db.SandboxSession, error)) (SandboxOutcome, error) {
	var out SandboxOutcome
	err := postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		row, err := q.GetSandboxSession(ctx, id)
		if postgres.IsNoRows(err) {
			return errNoSession
		}
		if err != nil {
			return err
		}
		out.TopupID = row.TopupID.String()
		updated, err := update(q, row)
		if postgres.IsNoRows(err) || errors.Is(err, errUnchanged) {
			out.Session = s.session(row)
			return nil
		}
		if err != nil {
			return err
		}
		out.Session = s.session(updated)
		out.Event = CheckoutEvent(randomID("evt_sbx_"), typ, out.Session, updated.TopupID, time.Now())
		return nil
	})
	return out, err
}

// Refund implements Provider: the sandbox moves no money, so there is nothing to return.
func (s *Sandbox) Refund(context.Context, string, int64, string) error { return nil }
