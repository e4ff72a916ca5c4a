package wallet

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Top-up states after a success, as the provider takes money back (see Topups.BookRefund
// and Topups.BookDispute).
const (
	TopupPartiallyRefunded = "partially_refunded"
	TopupDisputed          = "disputed"
	TopupChargedBack       = "charged_back"
)

// credited are the states of a top-up whose credits were minted: the ones a reversal moves
// between.
var credited = []string{TopupSucceeded, TopupPartiallyRefunded, TopupRefunded, TopupDisputed, TopupChargedBack}

// Dispute states as Parlor keeps them (topup_disputes.status).
const (
	disputeInquiry = "inquiry" // Stripe's warning_needs_response, warning_under_review: no funds withdrawn
	disputeOpen    = "open"    // funds withdrawn, awaiting the outcome
	disputeClosed  = "closed"  // an inquiry closed (warning_closed): nothing was withdrawn
	disputeWon     = "won"     // funds reinstated
	disputeLost    = "lost"    // funds gone for good
)

// disputeState maps Stripe's dispute status to Parlor's; "" for one it does not know.
func disputeState(stripeStatus string) string {
	switch stripeStatus {
	case "warning_needs_response", "warning_under_review":
		return disputeInquiry
	case "warning_closed":
		return disputeClosed
	case "needs_response", "under_review":
		return disputeOpen
	case "won":
		return disputeWon
	case "lost":
		return disputeLost
	}
	return ""
}

// creditsFor is the share of a top-up's credits that amount (minor units) of its payment
// bought, rounded up so a refund never leaves a fraction of a credit it paid for; at most
// all of them.
func creditsFor(row db.Topup, amount int64) int64 {
	if amount >= row.Amount {
		return row.Credits
	}
	return min((row.Credits*amount+row.Amount-1)/row.Amount, row.Credits)
}

// ErrUnknownPayment means a refund or dispute is about a payment of no top-up (yet): its
// job is retried a few times, for the checkout's own webhook may not have been processed.
var ErrUnknownPayment = errors.New("no top-up has this payment")

// topupOfPayment finds the top-up a charge or dispute is about, by its PaymentIntent.
func (t *Topups) topupOfPayment(ctx context.Context, paymentIntent string) (db.Topup, error) {
	if paymentIntent == "" {
		return db.Topup{}, fmt.Errorf("%w: the event names no payment intent", ErrUnknownPayment)
	}
	row, err := db.New(t.pool).TopupByPaymentIntent(ctx, &paymentIntent)
	if postgres.IsNoRows(err) {
		return db.Topup{}, fmt.Errorf("%w: %s", ErrUnknownPayment, paymentIntent)
	}
	return row, err
}

// BookRefund books what the provider reports refunded of a top-up's payment (a refund made
// in the Stripe Dashboard, or Parlor's own): the credits its share bought are taken back,
// once, even when the buyer spent them (the wallet then goes into debt). The charge's
// amount_refunded is cumulative, so events repeated, in any order, book each refund once:
// the figure only rises, and only what it owes beyond the refunds booked is posted
// (owedRefund). The top-up moves to partially_refunded or refunded. also runs in the same
// transaction (completing the job).
func (t *Topups) BookRefund(ctx context.Context, c payments.Charge, also func(tx pgx.Tx) error) error {
	err := t.reverse(ctx, c.PaymentIntent, "refund", also, func(q *db.Queries, row db.Topup, _ bool) error {
		_, err := q.RaiseTopupAmountRefunded(ctx, db.RaiseTopupAmountRefundedParams{ID: row.ID, AmountRefunded: c.AmountRefunded})
		return err
	})
	if err != nil {
		return fmt.Errorf("book refund of %s: %w", c.ID, err)
	}
	return nil
}

// bookOwedRefund posts what the provider's refunded figure owes beyond the refunds booked,
// within what disputes left: after every reversal step, so a refund that found the credits
// held by a dispute is booked once the dispute gives them back. Its key names the refunded
// credits in total after it (`topup:<id>:refund:credits:<total>`), so a later figure that
// owes one credit more gets a posting of its own.
func (t *Topups) bookOwedRefund(ctx context.Context, q *db.Queries, id uuid.UUID) error {
	row, err := q.GetTopup(ctx, id)
	if err != nil {
		return err
	}
	taken, err := q.SumTopupReversals(ctx, row.ID)
	if err != nil {
		return err
	}
	owed := min(creditsFor(row, row.AmountRefunded)-taken.Refunded, row.Credits-taken.Refunded-taken.Disputed)
	if owed <= 0 {
		return nil
	}
	key := "topup:" + row.ID.String() + ":refund:credits:" + strconv.FormatInt(taken.Refunded+owed, 10)
	posted, err := t.takeBack(ctx, q, row, key, KindRefund, owed,
		fmt.Sprintf("refund of %d of %d %s at the provider", row.AmountRefunded, row.Amount, row.Currency))
	if posted {
		t.metrics.posted(KindRefund)
	}
	return err
}

// reverse runs book on the top-up paying paymentIntent, locked, in one transaction with
// booking what refunds owe, moving the top-up to the state its reversals say, and also. A
// top-up never credited (failed, review) has nothing to take back: book only records what
// the provider reported (credited false), for the operator who decides about it, and it is
// logged.
func (t *Topups) reverse(ctx context.Context, paymentIntent, what string, also func(tx pgx.Tx) error, book func(q *db.Queries, row db.Topup, credited bool) error) error {
	found, err := t.topupOfPayment(ctx, paymentIntent)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		q := db.New(tx)
		row, err := q.LockTopup(ctx, found.ID)
		if err != nil {
			return err
		}
		if !isCredited(row.Status) {
			t.logger.WarnContext(ctx, "a "+what+" of a top-up that was never credited; recorded, nothing to take back",
				"topup_id", row.ID, "status", row.Status, "payment_intent", paymentIntent)
			if err := book(q, row, false); err != nil {
				return err
			}
		} else {
			if err := book(q, row, true); err != nil {
				return err
			}
			if err := t.bookOwedRefund(ctx, q, row.ID); err != nil {
				return err
			}
			if err := t.followReversals(ctx, q, row); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
}

// BookDispute books a dispute of a top-up's payment as the provider reports it: opened
// (needs_response, under_review), the disputed share of the credits is withdrawn (ledger key
// `topup:<id>:dispute:<dispute>:withdrawn`), into debt if they were spent; won, it is given
// back (`…:reinstated`); lost, it stays withdrawn; an inquiry (warning_*) moves nothing. A
// dispute's final state (won, lost) is never changed by a later or repeated event, so events
// in any order book the dispute once. The top-up moves to disputed while one is open, then
// back, or to charged_back when one is lost.
func (t *Topups) BookDispute(ctx context.Context, d payments.Dispute, also func(tx pgx.Tx) error) error {
	state := disputeState(d.Status)
	if state == "" {
		t.logger.WarnContext(ctx, "a dispute in a state Parlor does not know; ignored", "dispute", d.ID, "status", d.Status)
		return t.complete(ctx, also)
	}
	posted := 0
	err := t.reverse(ctx, d.PaymentIntent, "dispute", also, func(q *db.Queries, row db.Topup, credited bool) error {
		dispute, err := q.UpsertTopupDispute(ctx, db.UpsertTopupDisputeParams{ID: d.ID, TopupID: row.ID, Amount: d.Amount, Status: state})
		if postgres.IsNoRows(err) {
			return nil // decided already: a late or repeated event
		}
		if err != nil || !credited {
			return err
		}
		prefix := "topup:" + row.ID.String() + ":dispute:" + d.ID
		if (dispute.Status == disputeOpen || dispute.Status == disputeLost) && dispute.Credits == 0 {
			taken, err := q.SumTopupReversals(ctx, row.ID)
			if err != nil {
				return err
			}
			if credits := min(creditsFor(row, d.Amount), row.Credits-taken.Refunded-taken.Disputed); credits > 0 {
				if _, err := t.takeBack(ctx, q, row, prefix+":withdrawn", KindDispute, credits,
					fmt.Sprintf("dispute %s of %d %s opened at the provider", d.ID, d.Amount, row.Currency)); err != nil {
					return err
				}
				if err := q.SetTopupDisputeCredits(ctx, db.SetTopupDisputeCreditsParams{ID: d.ID, Credits: credits}); err != nil {
					return err
				}
				posted++
			}
		}
		if dispute.Status == disputeWon && dispute.Credits > 0 {
			wallet, issuance, err := walletAndIssuance(ctx, q, row.UserID)
			if err != nil {
				return err
			}
			id := row.ID
			_, created, err := Post(ctx, q, Posting{
				Key: prefix + ":reinstated", Kind: KindDispute, TopupID: &id,
				Memo: fmt.Sprintf("dispute %s won: credits given back", d.ID),
				Legs: []Leg{{Account: issuance, Amount: -dispute.Credits}, {Account: wallet, Amount: dispute.Credits}},
			})
			if created {
				posted++
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("book dispute %s: %w", d.ID, err)
	}
	for range posted {
		t.metrics.posted(KindDispute)
	}
	return nil
}

// takeBack posts credits from a top-up's buyer back to issuance as a reversal: it may take
// the wallet into debt.
func (t *Topups) takeBack(ctx context.Context, q *db.Queries, row db.Topup, key, kind string, credits int64, memo string) (bool, error) {
	wallet, issuance, err := walletAndIssuance(ctx, q, row.UserID)
	if err != nil {
		return false, err
	}
	id := row.ID
	_, created, err := Post(ctx, q, Posting{
		Key: key, Kind: kind, TopupID: &id, Memo: memo, Reversal: true,
		Legs: []Leg{{Account: wallet, Amount: -credits}, {Account: issuance, Amount: credits}},
	})
	if created {
		if a, err := q.GetUserAccount(ctx, row.UserID); err == nil && a.Balance < 0 {
			t.logger.WarnContext(ctx, "a reversal took a wallet into debt", "user_id", row.UserID, "topup_id", row.ID,
				"balance", a.Balance, "key", key)
		}
	}
	return created, err
}

// followReversals moves a credited top-up to the state its reversals say: charged_back once a
// dispute is lost, disputed while one is open (or an inquiry runs), else refunded,
// partially_refunded or succeeded by what was refunded.
func (t *Topups) followReversals(ctx context.Context, q *db.Queries, row db.Topup) error {
	disputes, err := q.ListTopupDisputes(ctx, row.ID)
	if err != nil {
		return err
	}
	taken, err := q.SumTopupReversals(ctx, row.ID)
	if err != nil {
		return err
	}
	status := TopupSucceeded
	switch {
	case hasDispute(disputes, disputeLost):
		status = TopupChargedBack
	case hasDispute(disputes, disputeOpen) || hasDispute(disputes, disputeInquiry): // closed and won ones count as none
		status = TopupDisputed
	case taken.Refunded >= row.Credits:
		status = TopupRefunded
	case taken.Refunded > 0:
		status = TopupPartiallyRefunded
	}
	if status == row.Status {
		return nil
	}
	_, err = q.MoveTopup(ctx, db.MoveTopupParams{ID: row.ID, Status: status, FromStatuses: credited})
	return err
}

func hasDispute(ds []db.TopupDispute, status string) bool {
	for _, d := range ds {
		if d.Status == status {
			return true
		}
	}
	return false
}

func isCredited(status string) bool {
	for _, s := range credited {
		if s == status {
			return true
		}
	}
	return false
}

// complete runs also in a transaction of its own: an event that needs no booking.
func (t *Topups) complete(ctx context.Context, also func(tx pgx.Tx) error) error {
	if also == nil {
		return nil
	}
	return pgx.BeginFunc(ctx, t.pool, also)
}
