package payments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Sandbox plays Stripe Checkout offline: its sessions live in the database, its checkout
// page (served by the HTTP layer at /sandbox/checkout/{id}) has Pay and Cancel buttons, and
// paying completes the session and emits a signed checkout.session.completed event to the
// same webhook endpoint Stripe would call.
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

// GetSession implements Provider: an open session past its expiry reads as expired.
func (s *Sandbox) GetSession(ctx context.Context, id string) (Session, error) {
	row, err := db.New(s.pool).GetSandboxSession(ctx, id)
	if err != nil {
		return Session{}, fmt.Errorf("sandbox session %s: %w", id, err)
	}
	return s.session(row), nil
}

func (s *Sandbox) session(r db.SandboxSession) Session {
	out := Session{ID: r.ID, URL: s.CheckoutURL(r.ID), Status: r.Status, PaymentStatus: r.PaymentStatus, ExpiresAt: r.ExpiresAt}
	if r.PaymentIntent != nil {
		out.PaymentIntent = *r.PaymentIntent
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
// Stripe-shaped event announcing it. Pressing a button twice changes nothing the second time.
func (s *Sandbox) Settle(ctx context.Context, id string, pay bool) (SandboxOutcome, error) {
	var out SandboxOutcome
	err := postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		row, err := q.GetSandboxSession(ctx, id)
		if err != nil {
			return err
		}
		out.TopupID = row.TopupID.String()
		status, paid, typ := SessionExpired, PaymentUnpaid, "checkout.session.expired"
		var intent *string
		if pay {
			pi := randomID("pi_sbx_")
			status, paid, typ, intent = SessionComplete, PaymentPaid, "checkout.session.completed", &pi
		}
		if !pay || time.Now().Before(row.ExpiresAt) {
			updated, err := q.CompleteSandboxSession(ctx, db.CompleteSandboxSessionParams{ID: id, Status: status, PaymentStatus: paid, PaymentIntent: intent})
			if postgres.IsNoRows(err) {
				out.Session = s.session(row) // already settled
				return nil
			}
			if err != nil {
				return err
			}
			row = updated
		}
		out.Session = s.session(row)
		out.Event = CheckoutEvent(randomID("evt_sbx_"), typ, out.Session, row.TopupID, time.Now())
		return nil
	})
	if err != nil {
		return SandboxOutcome{}, fmt.Errorf("sandbox settle %s: %w", id, err)
	}
	return out, nil
}

// Refund implements Provider: the sandbox moves no money, so there is nothing to return.
func (s *Sandbox) Refund(context.Context, string, int64, string) error { return nil }
