package wallet

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Admin actions, as the audit log names them.
const (
	ActionTopupRefund      = "topup.refund"
	ActionWalletAdjustment = "wallet.adjustment"
	ActionLedgerAudit      = "ledger.audit"
)

// MaxAdminReason bounds an operator's reason, in characters.
const MaxAdminReason = 500

// Actor is the operator behind an admin action and why they took it.
type Actor struct {
	AdminID uuid.UUID
	Reason  string
}

// AdminAction is one row of the admin audit log: who did what to what, why, and the
// particulars.
type AdminAction struct {
	ID            int64
	AdminID       uuid.UUID
	Action        string
	TargetUserID  *uuid.UUID
	TargetTopupID *uuid.UUID
	Reason        string
	Detail        map[string]any
	CreatedAt     time.Time
}

// recordAdminAction appends a to the audit log inside the caller's transaction q: the
// record commits with the action or not at all.
func recordAdminAction(ctx context.Context, q *db.Queries, by Actor, action string, user, topup *uuid.UUID, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	if _, err := q.InsertAdminAction(ctx, db.InsertAdminActionParams{
		AdminID: by.AdminID, Action: action, TargetUserID: user, TargetTopupID: topup, Reason: by.Reason, Detail: raw,
	}); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

func validReason(reason string, required bool) error {
	n := utf8.RuneCountInString(reason)
	switch {
	case !utf8.ValidString(reason) || n > MaxAdminReason:
		return invalidField("reason", fmt.Sprintf("must be at most %d characters", MaxAdminReason))
	case required && n == 0:
		return invalidField("reason", "is required")
	}
	return nil
}

// Admin serves the operators' side of the wallet: the audit log, a user's wallet as the
// books hold it, adjustments, a top-up with its provider's view and the ledger audit.
// Every action it takes is recorded in the audit log in the action's own transaction.
type Admin struct {
	pool    *pgxpool.Pool
	topups  *Topups
	cursors *cursor.Signer
	metrics *Metrics
}

// NewAdmin returns the admin service over the wallet svc and its top-ups.
func NewAdmin(svc *Service, topups *Topups) *Admin {
	return &Admin{pool: svc.pool, topups: topups, cursors: svc.cursors, metrics: svc.metrics}
}

// AuditPage is a page of the audit log, newest first.
type AuditPage struct {
	Items      []AdminAction
	NextCursor string
}

const auditCursorKind = "admin-audit-log"

// AuditLog pages through the admin audit log, newest first.
func (a *Admin) AuditLog(ctx context.Context, token string, limit int) (AuditPage, error) {
	before := int64(1<<63 - 1)
	if token != "" {
		var c historyCursor
		if err := a.cursors.Decode(auditCursorKind, token, &c); err != nil {
			return AuditPage{}, &apperr.Error{Code: apperr.Invalid, Message: "the cursor is invalid",
				Fields: []apperr.FieldError{{Field: "query.cursor", Message: "is invalid"}}}
		}
		before = c.Before
	}
	rows, err := db.New(a.pool).ListAdminActions(ctx, db.ListAdminActionsParams{BeforeID: before, Lim: int32(limit + 1)})
	if err != nil {
		return AuditPage{}, fmt.Errorf("admin audit log: %w", err)
	}
	page := AuditPage{Items: []AdminAction{}}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextCursor = a.cursors.Encode(auditCursorKind, historyCursor{Before: rows[limit-1].ID})
	}
	for _, r := range rows {
		detail := map[string]any{}
		if err := json.Unmarshal(r.Detail, &detail); err != nil {
			return AuditPage{}, fmt.Errorf("admin audit log: action %d: %w", r.ID, err)
		}
		page.Items = append(page.Items, AdminAction{
			ID: r.ID, AdminID: r.AdminID, Action: r.Action, TargetUserID: r.TargetUserID, TargetTopupID: r.TargetTopupID,
			Reason: r.Reason, Detail: detail, CreatedAt: r.CreatedAt,
		})
	}
	return page, nil
}

// Refund refunds a top-up as by (Topups.Refund), recording it in the audit log.
func (a *Admin) Refund(ctx context.Context, by Actor, id uuid.UUID) (Topup, error) {
	if err := validReason(by.Reason, false); err != nil {
		return Topup{}, err
	}
	return a.topups.Refund(ctx, id, by)
}

// Dispute is a dispute of a top-up's payment as booked: its provider id, the disputed
// amount (minor units), its state (inquiry, open, won, lost) and the credits it withdrew.
type Dispute struct {
	ID        string
	Amount    int64
	Status    string
	Credits   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TopupRecord is a top-up as the books hold it, for an operator: what the buyer sees, and
// who bought it, what the provider refunded, its provider ids and its disputes.
type TopupRecord struct {
	Topup
	UserID            uuid.UUID
	AmountRefunded    int64
	CheckoutSessionID string
	PaymentIntentID   string
	Disputes          []Dispute
}

func topupRecordOf(r db.Topup, disputes []db.TopupDispute) TopupRecord {
	out := TopupRecord{Topup: topupFromRow(r), UserID: r.UserID, AmountRefunded: r.AmountRefunded, Disputes: []Dispute{}}
	if r.CheckoutSessionID != nil {
		out.CheckoutSessionID = *r.CheckoutSessionID
	}
	if r.PaymentIntentID != nil {
		out.PaymentIntentID = *r.PaymentIntentID
	}
	for _, d := range disputes {
		if d.TopupID == r.ID {
			out.Disputes = append(out.Disputes, Dispute{ID: d.ID, Amount: d.Amount, Status: d.Status, Credits: d.Credits,
				CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt})
		}
	}
	return out
}

// MaxAdminTopups bounds the top-ups the admin view of a wallet lists (the newest).
const MaxAdminTopups = 100

// WalletView is a user's wallet as an operator sees it: what the user sees (Balance, Debt,
// PendingTopups), the ledger balance itself (below zero in debt) and the floor a reversal
// took it to, and the user's newest top-ups with their reversals.
type WalletView struct {
	UserID        uuid.UUID
	Balance       int64
	Debt          int64
	LedgerBalance int64
	Floor         int64
	PendingTopups int64
	Topups        []TopupRecord
}

var errNoUser = apperr.New(apperr.NotFound, "no such user")

// Wallet returns user's wallet as the books hold it, in one snapshot.
func (a *Admin) Wallet(ctx context.Context, user uuid.UUID) (WalletView, error) {
	view := WalletView{UserID: user, Topups: []TopupRecord{}}
	err := postgres.WithSnapshot(ctx, a.pool, func(q *db.Queries) error {
		exists, err := q.UserExists(ctx, user)
		if err != nil {
			return err
		}
		if !exists {
			return errNoUser
		}
		acct, err := q.GetUserAccount(ctx, user)
		switch {
		case postgres.IsNoRows(err): // no credit yet: an empty wallet
		case err != nil:
			return err
		default:
			view.LedgerBalance, view.Floor = acct.Balance, acct.Floor
			seen := walletOf(acct.Balance)
			view.Balance, view.Debt = seen.Balance, seen.Debt
		}
		if view.PendingTopups, err = q.CountPendingTopups(ctx, user); err != nil {
			return err
		}
		rows, err := q.ListUserTopups(ctx, db.ListUserTopupsParams{UserID: user, Lim: MaxAdminTopups})
		if err != nil {
			return err
		}
		ids := make([]uuid.UUID, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		disputes, err := q.ListDisputesOfTopups(ctx, ids)
		if err != nil {
			return err
		}
		for _, r := range rows {
			view.Topups = append(view.Topups, topupRecordOf(r, disputes))
		}
		return nil
	})
	if err != nil {
		return WalletView{}, fmt.Errorf("admin view of a wallet: %w", err)
	}
	return view, nil
}

// MaxAdjustment bounds one adjustment's credits, either way.
const MaxAdjustment = 1_000_000_000

// Adjustment is credits an operator added to (positive) or took from (negative) a wallet,
// against issuance.
type Adjustment struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	Amount        int64
	Reason        string
	TransactionID uuid.UUID
	BalanceAfter  int64
	CreatedAt     time.Time
}

// adjustmentNamespace derives an adjustment's id from its admin and the request's name
// (RequestName), so a retry of the request names the same adjustment.
var adjustmentNamespace = uuid.MustParse("0b3e9f52-8c1d-4d7a-b6e2-5a9c4f1e7d30")

// Adjust posts amount credits to user's wallet from issuance (a negative amount goes back
// to issuance) as by, with by's reason required, and records it in the audit log in the
// same transaction. A debit follows Post's rule: it may not take the wallet below zero
// (insufficient_credits), nor touch a wallet in debt. requestName (RequestName of the
// Idempotency-Key) names the adjustment: adjusting again under the same name returns the
// first and moves nothing.
func (a *Admin) Adjust(ctx context.Context, by Actor, user uuid.UUID, requestName string, amount int64) (Adjustment, error) {
	if err := validReason(by.Reason, true); err != nil {
		return Adjustment{}, err
	}
	if amount == 0 || amount < -MaxAdjustment || amount > MaxAdjustment {
		return Adjustment{}, invalidField("amount", fmt.Sprintf("must be between -%d and %d credits, and not 0", MaxAdjustment, MaxAdjustment))
	}
	id := uuid.NewSHA1(adjustmentNamespace, []byte(by.AdminID.String()+"\x00"+requestName))
	key := "adjustment:" + id.String()
	out := Adjustment{ID: id, UserID: user, Amount: amount, Reason: by.Reason}
	created := false
	err := postgres.WithTx(ctx, a.pool, func(q *db.Queries) error {
		exists, err := q.UserExists(ctx, user)
		if err != nil {
			return err
		}
		if !exists {
			return errNoUser
		}
		wallet, issuance, err := walletAndIssuance(ctx, q, user)
		if err != nil {
			return err
		}
		txn, posted, err := Post(ctx, q, Posting{
			Key: key, Kind: KindAdjustment, Memo: "an operator's adjustment",
			Legs: []Leg{{Account: wallet, Amount: amount}, {Account: issuance, Amount: -amount}},
		})
		if err != nil {
			return err
		}
		created = posted
		out.TransactionID, out.CreatedAt = txn.ID, txn.CreatedAt
		acct, err := q.GetUserAccount(ctx, user)
		if err != nil {
			return err
		}
		out.BalanceAfter = acct.Balance
		if !posted {
			return nil
		}
		return recordAdminAction(ctx, q, by, ActionWalletAdjustment, &user, nil, map[string]any{
			"amount": amount, "transaction_id": txn.ID, "ledger_key": key, "balance_after": acct.Balance,
		})
	})
	if err != nil {
		return Adjustment{}, fmt.Errorf("adjust a wallet: %w", err)
	}
	if created {
		a.metrics.posted(KindAdjustment)
	}
	return out, nil
}

// Provider check states: what asking the payment provider about a top-up gave.
const (
	ProviderOK          = "ok"          // the provider answered; Session is its word
	ProviderNoSession   = "no_session"  // the top-up has no checkout session to ask about
	ProviderUnavailable = "unavailable" // the provider could not be asked, or did not answer
)

// ProviderAskTimeout bounds asking the provider about a top-up for an operator: one
// attempt's worth, so the stored state comes back in good time when the provider is slow.
const ProviderAskTimeout = 10 * time.Second

// TopupView is a top-up as the books hold it beside what the provider says of its
// checkout session now. Reading it changes nothing (unlike the buyer's read of a pending
// top-up, which settles it).
type TopupView struct {
	Topup    TopupRecord
	Provider string // ProviderOK, ProviderNoSession or ProviderUnavailable
	Session  *payments.Session
}

// Topup returns the top-up id with its provider's current session state. A provider that
// fails or is slow is not an error: the view says ProviderUnavailable (and the error is
// logged).
func (a *Admin) Topup(ctx context.Context, id uuid.UUID) (TopupView, error) {
	q := db.New(a.pool)
	row, err := q.GetTopup(ctx, id)
	if postgres.IsNoRows(err) {
		return TopupView{}, errNoTopup
	}
	if err != nil {
		return TopupView{}, fmt.Errorf("admin view of a top-up: %w", err)
	}
	disputes, err := q.ListTopupDisputes(ctx, id)
	if err != nil {
		return TopupView{}, fmt.Errorf("admin view of a top-up: %w", err)
	}
	view := TopupView{Topup: topupRecordOf(row, disputes), Provider: ProviderNoSession}
	if row.CheckoutSessionID == nil {
		return view, nil
	}
	askCtx, cancel := context.WithTimeout(ctx, ProviderAskTimeout)
	defer cancel()
	session, err := a.topups.provider.GetSession(askCtx, *row.CheckoutSessionID)
	if err != nil {
		if ctx.Err() != nil {
			return TopupView{}, fmt.Errorf("admin view of a top-up: %w", ctx.Err())
		}
		a.topups.logger.WarnContext(ctx, "ask the payment provider about a top-up for an admin", "topup_id", id,
			"session_id", *row.CheckoutSessionID, "error", err.Error())
		view.Provider = ProviderUnavailable
		return view, nil
	}
	view.Provider, view.Session = ProviderOK, &session
	return view, nil
}

// MaxAuditProblems bounds the problems a ledger audit returns (Total counts them all).
const MaxAuditProblems = 1000

// LedgerAudit is the outcome of a ledger audit: the problems found, the first
// MaxAuditProblems of them in the script's order.
type LedgerAudit struct {
	Problems []Discrepancy
	Total    int
}

// AuditLedger runs the ledger reconciliation (Reconcile's checks, in one snapshot) as by,
// and records that it ran and what it found in the audit log in the same transaction.
func (a *Admin) AuditLedger(ctx context.Context, by Actor) (LedgerAudit, error) {
	var out LedgerAudit
	err := pgx.BeginTxFunc(ctx, a.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		found, err := reconcileIn(ctx, tx)
		if err != nil {
			return err
		}
		out.Total = len(found)
		out.Problems = found[:min(len(found), MaxAuditProblems)]
		names := map[string]int{}
		for _, d := range found {
			names[d.Problem]++
		}
		return recordAdminAction(ctx, db.New(tx), by, ActionLedgerAudit, nil, nil, map[string]any{
			"ok": len(found) == 0, "problems": len(found), "by_problem": names,
		})
	})
	if err != nil {
		return LedgerAudit{}, fmt.Errorf("audit the ledger: %w", err)
	}
	return out, nil
}
