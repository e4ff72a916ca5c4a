package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Top-up states. pending → succeeded (credits minted) → refunded; pending → expired |
// failed; pending → review when the provider reports a payment that is not the package's
// price (nothing minted; an operator decides).
const (
	TopupPending   = "pending"
	TopupSucceeded = "succeeded"
	TopupExpired   = "expired"
	TopupFailed    = "failed"
	TopupRefunded  = "refunded"
	TopupReview    = "review"
)

// Topup is a purchase of credits.
type Topup struct {
	ID          uuid.UUID
	PackageID   string
	Credits     int64
	Amount      int64
	Currency    string
	Status      string
	CheckoutURL string
	ExpiresAt   time.Time
	CreatedAt   time.Time
}

func topupFromRow(r db.Topup) Topup {
	out := Topup{ID: r.ID, PackageID: r.PackageID, Credits: r.Credits, Amount: r.Amount, Currency: r.Currency,
		Status: r.Status, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt}
	if r.CheckoutUrl != nil {
		out.CheckoutURL = *r.CheckoutUrl
	}
	return out
}

// CheckoutTTL is how long a checkout session stays open (Stripe allows 30 min to 24 h).
const CheckoutTTL = time.Hour

// MaxPendingTopups is Topups.MaxPending's default (APP_MAX_PENDING_TOPUPS): how many top-ups
// one account may have awaiting payment at once. Each opens a checkout session at the
// provider, so the cap bounds what one account can make Parlor ask of Stripe (the write
// rate limit bounds how fast).
const MaxPendingTopups = 5

// CheckoutCreateTimeout bounds creating a top-up: the provider call (with its retries) and
// the state changes around it. It runs on its own context, so a client that hangs up
// leaves no top-up half made; an Idempotency-Key's lock (IdempotencyStale) outlives it.
const CheckoutCreateTimeout = payments.CallTimeout + 10*time.Second

// Reconciliation. A new top-up's first check comes after WebhookGrace (its webhook usually
// settles it first, and a creation still in flight is finished by then); each later check
// waits twice as long as the one before, from CheckBackoffMin up to CheckBackoffMax, and
// never long past the checkout's expiry. A read polls the provider at most once every
// ProviderCheckInterval.
const (
	WebhookGrace          = 5 * time.Minute
	CheckBackoffMin       = time.Minute
	CheckBackoffMax       = time.Hour
	ProviderCheckInterval = 5 * time.Second
)

// nextCheck is when the reconciler looks at a pending top-up again after attempts visits.
func nextCheck(now, expiresAt time.Time, attempts int32) time.Time {
	wait := CheckBackoffMax
	if attempts < 6 {
		wait = min(CheckBackoffMin<<attempts, CheckBackoffMax)
	}
	next := now.Add(wait)
	if afterExpiry := expiresAt.Add(CheckBackoffMin); now.Before(afterExpiry) && afterExpiry.Before(next) {
		next = afterExpiry
	}
	return next
}

// Topups buys credits through a payment provider. The provider's webhooks are stored once
// per event and processed by a River job; processing re-reads the authoritative session
// state from the provider and mints the credits at most once (ledger key
// `topup:<id>:mint`) in one transaction with completing the job.
type Topups struct {
	pool      *pgxpool.Pool
	provider  payments.Provider
	packages  []Package
	publicURL string
	logger    *slog.Logger
	metrics   *Metrics
	queue     *river.Client[pgx.Tx]
	// Now is the clock (time.Now; tests move it).
	Now func() time.Time
	// MaxPending is how many top-ups one account may have awaiting payment at once.
	MaxPending int
}

// NewTopups returns the top-up service; SetQueue must be called before webhooks arrive.
func NewTopups(pool *pgxpool.Pool, provider payments.Provider, packages []Package, publicURL string, logger *slog.Logger, metrics *Metrics) *Topups {
	return &Topups{pool: pool, provider: provider, packages: packages, publicURL: publicURL, logger: logger, metrics: metrics, Now: time.Now,
		MaxPending: MaxPendingTopups}
}

// SetQueue gives the service the River client its webhook jobs go to.
func (t *Topups) SetQueue(c *river.Client[pgx.Tx]) { t.queue = c }

// Provider is the payment provider in use.
func (t *Topups) Provider() payments.Provider { return t.provider }

// Create starts buying packageID for user: a pending top-up and a checkout session whose
// URL the user pays at. Credits come only once the provider confirms the payment.
//
// The work runs on its own context bounded by CheckoutCreateTimeout, not the request's: a
// client that hangs up mid-way still gets a whole top-up (which a retry under the same
// Idempotency-Key replays). A process that dies mid-way leaves a pending top-up without a
// session, which the reconciler opens or fails.
func (t *Topups) Create(ctx context.Context, user uuid.UUID, packageID string) (Topup, error) {
	var pkg *Package
	for i := range t.packages {
		if t.packages[i].ID == packageID {
			pkg = &t.packages[i]
		}
	}
	if pkg == nil {
		return Topup{}, &apperr.Error{Code: apperr.Invalid, Message: fmt.Sprintf("there is no credit package %q; see GET /v1/wallet/packages", packageID),
			Fields: []apperr.FieldError{{Field: "body.package_id", Message: "is not a package on sale"}}}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CheckoutCreateTimeout)
	defer cancel()
	q := db.New(t.pool)
	now := t.Now()
	var row db.Topup
	err := postgres.WithTx(ctx, t.pool, func(q *db.Queries) error {
		if err := q.LockUserTopups(ctx, user); err != nil {
			return err
		}
		pending, err := q.CountPendingTopups(ctx, user)
		if err != nil {
			return err
		}
		if pending >= int64(t.MaxPending) {
			return apperr.New(apperr.TopupLimit, "%d top-ups already await payment, the most one account may have: pay one, or let it expire, first", pending)
		}
		row, err = q.CreateTopup(ctx, db.CreateTopupParams{
			UserID: user, PackageID: pkg.ID, Credits: pkg.Credits, Amount: pkg.Price, Currency: pkg.Currency,
			Provider: t.provider.Name(), ExpiresAt: now.Add(CheckoutTTL), NextCheckAt: now.Add(WebhookGrace),
		})
		return err
	})
	if err != nil {
		return Topup{}, fmt.Errorf("create top-up: %w", err)
	}
	row, err = t.openCheckout(ctx, q, row)
	var unavailable *apperr.Error
	if errors.As(err, &unavailable) {
		if _, merr := q.MoveTopup(ctx, db.MoveTopupParams{ID: row.ID, Status: TopupFailed, FromStatuses: []string{TopupPending}}); merr != nil {
			t.logger.ErrorContext(ctx, "mark a top-up failed", "topup_id", row.ID, "error", merr.Error())
		}
	}
	if err != nil {
		return Topup{}, err
	}
	return topupFromRow(row), nil
}

// openCheckout opens the checkout session of a pending top-up and records it. The
// provider's idempotency key is the top-up's, so opening it again (a reconciler finishing a
// creation that died) returns the same session. A provider failure is an *apperr.Error
// (unavailable).
func (t *Topups) openCheckout(ctx context.Context, q *db.Queries, row db.Topup) (db.Topup, error) {
	back := t.publicURL + "/?topup=" + row.ID.String()
	session, err := t.provider.CreateCheckout(ctx, payments.CheckoutInput{
		TopupID: row.ID, UserID: row.UserID, Credits: row.Credits, Amount: row.Amount, Currency: row.Currency,
		ProductName: fmt.Sprintf("%d Parlor credits", row.Credits), SuccessURL: back + "&result=success",
		CancelURL: back + "&result=cancel", ExpiresAt: row.ExpiresAt,
	})
	if err != nil {
		t.logger.ErrorContext(ctx, "open a checkout session", "topup_id", row.ID, "error", err.Error())
		return row, &apperr.Error{Code: apperr.Unavailable, Message: "the payment provider is not available; try again", RetryAfter: 5 * time.Second, Err: err}
	}
	updated, err := q.SetTopupCheckout(ctx, db.SetTopupCheckoutParams{ID: row.ID, CheckoutSessionID: &session.ID, CheckoutUrl: &session.URL})
	if err != nil {
		return row, fmt.Errorf("record the checkout session of top-up %s: %w", row.ID, err)
	}
	return updated, nil
}

var errNoTopup = apperr.New(apperr.NotFound, "no such top-up")

// Get returns one of user's top-ups, brought up to date with the provider first while it is
// pending (through the same function the webhook worker uses).
func (t *Topups) Get(ctx context.Context, user, id uuid.UUID) (Topup, error) {
	q := db.New(t.pool)
	row, err := q.GetTopup(ctx, id)
	if postgres.IsNoRows(err) || (err == nil && row.UserID != user) {
		return Topup{}, errNoTopup
	}
	if err != nil {
		return Topup{}, fmt.Errorf("get top-up: %w", err)
	}
	if row.Status == TopupPending && row.CheckoutSessionID != nil {
		if t.claimProviderCheck(ctx, q, id) {
			if err := t.Settle(ctx, id, nil); err != nil {
				t.logger.WarnContext(ctx, "sync a pending top-up", "topup_id", id, "error", err.Error())
			}
		}
		// Read again either way: the claim may have waited for a webhook's settlement to
		// commit, and then found the top-up no longer pending.
		if row, err = q.GetTopup(ctx, id); err != nil {
			return Topup{}, fmt.Errorf("get top-up: %w", err)
		}
	}
	return topupFromRow(row), nil
}

// claimProviderCheck reports whether this read may ask the provider about a pending top-up:
// at most one read in every ProviderCheckInterval does, across instances, however often
// the top-up is polled (the others answer what the database holds).
func (t *Topups) claimProviderCheck(ctx context.Context, q *db.Queries, id uuid.UUID) bool {
	now := t.Now()
	_, err := q.ClaimTopupProviderCheck(ctx, db.ClaimTopupProviderCheckParams{ID: id, Now: now, CheckedBefore: now.Add(-ProviderCheckInterval)})
	if err != nil && !postgres.IsNoRows(err) {
		t.logger.WarnContext(ctx, "claim a provider check of a top-up", "topup_id", id, "error", err.Error())
	}
	return err == nil
}

// PendingCount is how many of user's top-ups await payment.
func (t *Topups) PendingCount(ctx context.Context, user uuid.UUID) (int64, error) {
	return db.New(t.pool).CountPendingTopups(ctx, user)
}

// Settle moves a top-up to what its provider session says, with conditional updates, and
// mints its credits exactly once when paid the package's price at purchase: pending →
// succeeded when paid, → review when paid another amount or currency (nothing minted; an
// error log and parlor_topup_price_mismatches_total tell the operator), → failed when a
// delayed payment failed, → expired when the checkout expired; a delayed payment still
// processing leaves it pending. Only a pending top-up moves, so a late or stale "failed"
// never undoes a success. also runs in the same transaction (completing a job). Safe to
// call any number of times, concurrently, in any order.
func (t *Topups) Settle(ctx context.Context, id uuid.UUID, also func(tx pgx.Tx) error) error {
	row, err := db.New(t.pool).GetTopup(ctx, id)
	if err != nil {
		return fmt.Errorf("settle top-up %s: %w", id, err)
	}
	var session payments.Session
	if row.Status == TopupPending && row.CheckoutSessionID != nil {
		// The provider's word, never the event's or the redirect's.
		if session, err = t.provider.GetSession(ctx, *row.CheckoutSessionID); err != nil {
			return fmt.Errorf("settle top-up %s: %w", id, err)
		}
	}
	var intent *string
	if session.PaymentIntent != "" {
		intent = &session.PaymentIntent
	}
	minted, mismatched := false, false
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		q := db.New(tx)
		if _, err := q.LockTopup(ctx, id); err != nil {
			return err
		}
		switch {
		case session.Paid() && !session.Charged(row.Amount, row.Currency):
			_, err := q.MoveTopup(ctx, db.MoveTopupParams{ID: id, Status: TopupReview, PaymentIntentID: intent, FromStatuses: []string{TopupPending}})
			if err != nil && !postgres.IsNoRows(err) {
				return err
			}
			mismatched = err == nil
		case session.Paid():
			if _, err := q.MoveTopup(ctx, db.MoveTopupParams{ID: id, Status: TopupSucceeded, PaymentIntentID: intent, FromStatuses: []string{TopupPending}}); err != nil && !postgres.IsNoRows(err) {
				return err
			}
			var err error
			if minted, err = t.mint(ctx, q, id); err != nil {
				return err
			}
			if minted && intent != nil {
				if err := t.replayWaitingReversals(ctx, tx, q, *intent); err != nil {
					return err
				}
			}
		case session.Failed():
			// Final: the session is complete, so the payer cannot retry in it. The intent is
			// kept so an operator can look the failure up at the provider.
			if _, err := q.MoveTopup(ctx, db.MoveTopupParams{ID: id, Status: TopupFailed, PaymentIntentID: intent, FromStatuses: []string{TopupPending}}); err != nil && !postgres.IsNoRows(err) {
				return err
			}
		case session.Status == payments.SessionExpired:
			if _, err := q.MoveTopup(ctx, db.MoveTopupParams{ID: id, Status: TopupExpired, FromStatuses: []string{TopupPending}}); err != nil && !postgres.IsNoRows(err) {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("settle top-up %s: %w", id, err)
	}
	if minted {
		t.metrics.posted(KindTopup)
	}
	if mismatched {
		t.metrics.priceMismatched()
		t.logger.ErrorContext(ctx, "a paid checkout does not match its package's price; the top-up awaits review and nothing was credited",
			"topup_id", id, "user_id", row.UserID, "package_id", row.PackageID, "price", row.Amount, "currency", row.Currency,
			"paid", session.AmountTotal, "paid_currency", session.Currency, "payment_intent", session.PaymentIntent)
	}
	return nil
}

// replayWaitingReversals enqueues again, in the mint's transaction, the refund and dispute
// events of the payment that arrived before its top-up was credited: their own jobs found
// no top-up and are retrying with a growing backoff, or gave up.
func (t *Topups) replayWaitingReversals(ctx context.Context, tx pgx.Tx, q *db.Queries, paymentIntent string) error {
	if t.queue == nil {
		return nil
	}
	ids, err := q.WaitingReversalEvents(ctx, paymentIntent)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := t.queue.InsertTx(ctx, tx, PaymentEventArgs{EventID: id}, nil); err != nil {
			return err
		}
	}
	return nil
}

// mint credits a succeeded top-up's credits, once (the key makes a repeat a no-op).
func (t *Topups) mint(ctx context.Context, q *db.Queries, id uuid.UUID) (bool, error) {
	row, err := q.GetTopup(ctx, id)
	if err != nil {
		return false, err
	}
	if row.Status != TopupSucceeded {
		return false, nil
	}
	wallet, issuance, err := walletAndIssuance(ctx, q, row.UserID)
	if err != nil {
		return false, err
	}
	_, created, err := Post(ctx, q, Posting{
		Key: "topup:" + id.String() + ":mint", Kind: KindTopup, TopupID: &id,
		Memo: fmt.Sprintf("%s package", row.PackageID),
		Legs: []Leg{{Account: issuance, Amount: -row.Credits}, {Account: wallet, Amount: row.Credits}},
	})
	return created, err
}

// ErrWebhookStore means a webhook could not be stored: the provider should retry (5xx).
var ErrWebhookStore = errors.New("store the webhook event")

// ReceiveWebhook stores a verified event once (by its id) and, for an event about a
// checkout session, a refund or a dispute, enqueues its processing in the same transaction.
// A duplicate changes nothing.
func (t *Topups) ReceiveWebhook(ctx context.Context, ev payments.Event) (duplicate bool, err error) {
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		_, err := db.New(tx).InsertPaymentEvent(ctx, db.InsertPaymentEventParams{ID: ev.ID, Type: ev.Type, Payload: ev.Payload})
		if postgres.IsNoRows(err) {
			duplicate = true
			return nil
		}
		if err != nil {
			return err
		}
		if ev.SessionID == "" && ev.Charge == nil && ev.Dispute == nil {
			return nil // not about a checkout session, a refund or a dispute: kept, nothing to do
		}
		_, err = t.queue.InsertTx(ctx, tx, PaymentEventArgs{EventID: ev.ID}, nil)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%w %s: %v", ErrWebhookStore, ev.ID, err)
	}
	return duplicate, nil
}

// PaymentEventArgs is the River job that processes one stored webhook event.
type PaymentEventArgs struct {
	EventID string `json:"event_id"`
}

// Kind implements river.JobArgs.
func (PaymentEventArgs) Kind() string { return "payment_event" }

// PaymentEventWorker processes stored webhook events.
type PaymentEventWorker struct {
	river.WorkerDefaults[PaymentEventArgs]
	Topups *Topups
}

// UnknownPaymentAttempts is how many times a refund or dispute of a payment no top-up has
// is tried before it is given up (logged): the checkout's own webhook may still be on its
// way (Stripe retries one for three days), and River's backoff (attempt⁴ seconds) spreads
// sixteen attempts over about three days.
const UnknownPaymentAttempts = 16

// Work books the event — a checkout session's outcome (Settle), a refund (BookRefund) or a
// dispute (BookDispute) — completing the job in the same transaction as the effect.
func (w *PaymentEventWorker) Work(ctx context.Context, job *river.Job[PaymentEventArgs]) error {
	stored, err := db.New(w.Topups.pool).GetPaymentEvent(ctx, job.Args.EventID)
	if err != nil {
		return fmt.Errorf("payment event %s: %w", job.Args.EventID, err)
	}
	complete := func(tx pgx.Tx) error {
		if err := db.New(tx).MarkPaymentEventProcessed(ctx, stored.ID); err != nil {
			return err
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	}
	ev, err := payments.ReadStoredEvent(stored.Payload)
	if err != nil {
		return river.JobCancel(err)
	}
	switch {
	case ev.Charge != nil:
		err = w.Topups.BookRefund(ctx, *ev.Charge, complete)
	case ev.Dispute != nil:
		err = w.Topups.BookDispute(ctx, *ev.Dispute, complete)
	default:
		topupID, terr := topupOfEvent(ctx, db.New(w.Topups.pool), stored.Payload)
		switch {
		case errors.Is(terr, errNotOurs):
			w.Topups.logger.WarnContext(ctx, "a payment event names no top-up of ours; ignored", "event_id", stored.ID, "error", terr.Error())
			return river.JobCancel(terr)
		case terr != nil:
			err = terr // the database: retried
		default:
			err = w.Topups.Settle(ctx, topupID, complete)
		}
	}
	if errors.Is(err, ErrUnknownPayment) && job.Attempt >= UnknownPaymentAttempts {
		w.Topups.logger.WarnContext(ctx, "a refund or dispute names no payment of ours; given up", "event_id", stored.ID, "error", err.Error())
		return river.JobCancel(err)
	}
	w.Topups.metrics.eventProcessed(err)
	return err
}

// errNotOurs means a checkout session event names no top-up of ours: its job is cancelled.
// Any other error of topupOfEvent (the database unreachable) is retried.
var errNotOurs = errors.New("the event names no top-up of ours")

// topupOfEvent finds the top-up a checkout session event is about: by the session id we
// stored, else by client_reference_id.
func topupOfEvent(ctx context.Context, q *db.Queries, payload []byte) (uuid.UUID, error) {
	var ev struct {
		Data struct {
			Object struct {
				ID                string `json:"id"`
				ClientReferenceID string `json:"client_reference_id"`
			} `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return uuid.Nil, fmt.Errorf("%w: %v", errNotOurs, err)
	}
	row, err := q.TopupBySession(ctx, &ev.Data.Object.ID)
	if err == nil {
		return row.ID, nil
	}
	if !postgres.IsNoRows(err) {
		return uuid.Nil, fmt.Errorf("top-up of session %q: %w", ev.Data.Object.ID, err)
	}
	id, err := uuid.Parse(ev.Data.Object.ClientReferenceID)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: no top-up for session %q", errNotOurs, ev.Data.Object.ID)
	}
	if _, err := q.GetTopup(ctx, id); postgres.IsNoRows(err) {
		return uuid.Nil, fmt.Errorf("%w: top-up %s does not exist", errNotOurs, id)
	} else if err != nil {
		return uuid.Nil, fmt.Errorf("top-up %s: %w", id, err)
	}
	return id, nil
}

// ReconcileTopupsArgs is the periodic River job that settles top-ups left pending (a lost
// webhook, an abandoned checkout).
type ReconcileTopupsArgs struct{}

// Kind implements river.JobArgs.
func (ReconcileTopupsArgs) Kind() string { return "reconcile_topups" }

// ReconcileTopupsWorker visits the pending top-ups whose check is due.
type ReconcileTopupsWorker struct {
	river.WorkerDefaults[ReconcileTopupsArgs]
	Topups *Topups
	// RunTimeout bounds one run (ReconcileTimeout unless the rescue delay is shorter); a run
	// cut short leaves the rest due for the next.
	RunTimeout time.Duration
}

// ReconcileTimeout bounds one reconciler run: ReconcileBatch provider calls take far less
// on a healthy provider, and what a slow one leaves is visited by the next run.
const ReconcileTimeout = 4 * time.Minute

// Timeout implements river.Worker.
func (w *ReconcileTopupsWorker) Timeout(*river.Job[ReconcileTopupsArgs]) time.Duration {
	if w.RunTimeout > 0 {
		return w.RunTimeout
	}
	return ReconcileTimeout
}

// ReconcileBatch is how many due top-ups one reconciler run visits; the rest wait for the
// next run, in the order they became due.
const ReconcileBatch = 500

// Work implements river.Worker.
func (w *ReconcileTopupsWorker) Work(ctx context.Context, _ *river.Job[ReconcileTopupsArgs]) error {
	_, err := w.Topups.ReconcilePending(ctx, w.Topups.Now(), ReconcileBatch)
	return err
}

// ReconcilePending visits up to limit pending top-ups whose check is due at now, the longest
// due first, and returns how many it visited. A top-up with a checkout session is settled
// from the provider's state (a lost webhook, an abandoned checkout); one without — its
// creation died between the insert and the provider's answer — gets its session opened, or
// fails once its checkout would have expired. Each visit schedules the next (nextCheck), so
// every pending top-up comes up in turn however many there are, and one the provider keeps
// failing on backs off alone.
func (t *Topups) ReconcilePending(ctx context.Context, now time.Time, limit int) (int, error) {
	q := db.New(t.pool)
	due, err := q.DuePendingTopups(ctx, db.DuePendingTopupsParams{Now: now, Lim: int32(limit)})
	if err != nil {
		return 0, fmt.Errorf("reconcile top-ups: %w", err)
	}
	var errs []error
	for _, row := range due {
		if err := t.reconcile(ctx, q, row, now); err != nil {
			errs = append(errs, err)
		}
		if err := q.ScheduleTopupCheck(ctx, db.ScheduleTopupCheckParams{ID: row.ID, NextCheckAt: nextCheck(now, row.ExpiresAt, row.CheckAttempts)}); err != nil {
			errs = append(errs, err)
		}
	}
	return len(due), errors.Join(errs...)
}

func (t *Topups) reconcile(ctx context.Context, q *db.Queries, row db.Topup, now time.Time) error {
	if row.CheckoutSessionID != nil {
		return t.Settle(ctx, row.ID, nil)
	}
	if !now.Before(row.ExpiresAt) {
		// No one was ever shown a checkout to pay: nothing can have been paid.
		if _, err := q.MoveTopup(ctx, db.MoveTopupParams{ID: row.ID, Status: TopupFailed, FromStatuses: []string{TopupPending}}); err != nil && !postgres.IsNoRows(err) {
			return fmt.Errorf("fail top-up %s: %w", row.ID, err)
		}
		return nil
	}
	_, err := t.openCheckout(ctx, q, row)
	return err
}

// Refund gives a succeeded top-up's money back and claws its credits back, all or nothing:
// when the user no longer holds all of the top-up's credits (they spent some), it refuses
// with insufficient_credits and changes nothing — wallets never go below zero. The clawback
// (ledger key `topup:<id>:refund:1`) and the move to refunded commit first; then the
// provider refunds under the same key. If the provider call fails, calling Refund again
// retries only the provider (the clawback is not repeated). The clawback is recorded in
// the admin audit log as by's, in its transaction.
func (t *Topups) Refund(ctx context.Context, id uuid.UUID, by Actor) (Topup, error) {
	key := "topup:" + id.String() + ":refund:1"
	var row db.Topup
	clawed := false
	err := postgres.WithTx(ctx, t.pool, func(q *db.Queries) error {
		var err error
		row, err = q.LockTopup(ctx, id)
		if postgres.IsNoRows(err) {
			return errNoTopup
		}
		if err != nil {
			return err
		}
		switch row.Status {
		case TopupRefunded:
			return nil
		case TopupSucceeded:
		default:
			return apperr.New(apperr.Conflict, "only a succeeded top-up can be refunded; this one is %s", row.Status)
		}
		wallet, issuance, err := walletAndIssuance(ctx, q, row.UserID)
		if err != nil {
			return err
		}
		_, clawed, err = Post(ctx, q, Posting{
			Key: key, Kind: KindRefund, TopupID: &id, Memo: fmt.Sprintf("refund of the %s package", row.PackageID),
			Legs: []Leg{{Account: wallet, Amount: -row.Credits}, {Account: issuance, Amount: row.Credits}},
		})
		if errors.Is(err, ErrInsufficientCredits) {
			return apperr.New(apperr.InsufficientCredits, "the user no longer holds the %d credits of this top-up (some were spent); refunds are all or nothing", row.Credits)
		}
		if err != nil {
			return err
		}
		row, err = q.MoveTopup(ctx, db.MoveTopupParams{ID: id, Status: TopupRefunded, FromStatuses: []string{TopupSucceeded}})
		if err != nil {
			return err
		}
		return recordAdminAction(ctx, q, by, ActionTopupRefund, &row.UserID, &id, map[string]any{
			"credits": row.Credits, "amount": row.Amount, "currency": row.Currency, "ledger_key": key,
		})
	})
	if err != nil {
		return Topup{}, fmt.Errorf("refund top-up: %w", err)
	}
	if clawed {
		t.metrics.posted(KindRefund)
	}
	intent := ""
	if row.PaymentIntentID != nil {
		intent = *row.PaymentIntentID
	}
	// What is left to give back: refunds made at the provider already (in the Dashboard,
	// say, their events booked or not yet) are not asked for again, which Stripe would
	// refuse. The call runs detached and bounded: the clawback has committed, so an admin
	// hanging up must not leave the money unreturned.
	if left := row.Amount - row.AmountRefunded; left > 0 {
		call, cancel := context.WithTimeout(context.WithoutCancel(ctx), payments.CallTimeout)
		defer cancel()
		if err := t.provider.Refund(call, intent, left, key); err != nil {
			return Topup{}, &apperr.Error{Code: apperr.Unavailable, RetryAfter: 5 * time.Second, Err: err,
				Message: "the credits were taken back but the payment provider's refund failed; retry the refund"}
		}
	}
	return topupFromRow(row), nil
}
