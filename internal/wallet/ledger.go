package wallet

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// Transaction kinds: what a ledger transaction was for.
const (
	KindTopup      = "topup"
	KindRefund     = "refund"
	KindRoomEntry  = "room_entry"
	KindTip        = "tip"
	KindAdjustment = "adjustment"
	KindDispute    = "dispute"
)

// System accounts (created by the migration).
const (
	Issuance     = "issuance"
	PlatformFees = "platform_fees"
)

// ErrInsufficientCredits is returned when a posting would take a user's wallet below zero.
var ErrInsufficientCredits = apperr.New(apperr.InsufficientCredits, "not enough credits in the wallet")

// ErrInDebt is returned for a debit from a wallet in debt: a refund or dispute took back
// credits its owner had spent, and nothing can be spent until credits received (a top-up,
// a tip) bring the balance back to zero.
var ErrInDebt = apperr.New(apperr.InsufficientCredits, "the wallet is in debt: a refund or a dispute took back credits that had been spent; top up to settle it before spending")

// Leg is one side of a posting: an amount added to (positive) or taken from (negative) an
// account.
type Leg struct {
	Account uuid.UUID
	Amount  int64
	// Counterparty is the user on the other side, shown in the account's history.
	Counterparty *uuid.UUID
}

// Posting is a ledger transaction to make: its legs must sum to zero.
type Posting struct {
	// Key is deterministic for the money path (`tip:<id>`, `entry:<room>:<user>`, …): a
	// posting whose key exists already is not made again.
	Key     string
	Kind    string
	RoomID  *uuid.UUID
	TopupID *uuid.UUID
	TipID   *uuid.UUID
	Memo    string
	Legs    []Leg
	// Reversal marks the provider taking money back (a refund, a dispute): it takes the
	// credits back even when the user spent them, so it may take a wallet below zero (into
	// debt), and nothing else may.
	Reversal bool
}

// Post makes p inside the caller's transaction q, exactly once per key: when a transaction
// with p.Key exists already, nothing is written and that transaction is returned with
// created = false. Otherwise it locks the accounts p touches (in id order, so concurrent
// postings never deadlock), refuses with ErrInsufficientCredits when a debit would take a
// user's wallet below zero (ErrInDebt when it is below zero already) unless p is a
// Reversal, and appends the entries. Every money path goes through here.
func Post(ctx context.Context, q *db.Queries, p Posting) (txn db.LedgerTransaction, created bool, err error) {
	if err := validate(p); err != nil {
		return db.LedgerTransaction{}, false, err
	}
	txn, err = q.InsertLedgerTransaction(ctx, db.InsertLedgerTransactionParams{
		IdempotencyKey: p.Key, Kind: p.Kind, RoomID: p.RoomID, TopupID: p.TopupID, TipID: p.TipID, Memo: p.Memo,
	})
	if postgres.IsNoRows(err) {
		// Posted before (or by a concurrent transaction that has just committed: the
		// insert waited for it on the unique index).
		txn, err = q.GetLedgerTransactionByKey(ctx, p.Key)
		if err != nil {
			return db.LedgerTransaction{}, false, fmt.Errorf("post %s: read the earlier posting: %w", p.Key, err)
		}
		return txn, false, nil
	}
	if err != nil {
		return db.LedgerTransaction{}, false, fmt.Errorf("post %s: %w", p.Key, err)
	}

	ids := make([]uuid.UUID, len(p.Legs))
	for i, l := range p.Legs {
		ids[i] = l.Account
	}
	locked, err := q.LockAccounts(ctx, ids)
	if err != nil {
		return db.LedgerTransaction{}, false, fmt.Errorf("post %s: lock accounts: %w", p.Key, err)
	}
	if len(locked) != len(ids) {
		return db.LedgerTransaction{}, false, fmt.Errorf("post %s: %d of %d accounts exist", p.Key, len(locked), len(ids))
	}
	kind := make(map[uuid.UUID]db.LedgerAccount, len(locked))
	for _, a := range locked {
		kind[a.ID] = a
	}
	for _, l := range p.Legs {
		if a := kind[l.Account]; a.Kind == "user" && l.Amount < 0 && a.Balance+l.Amount < 0 && !p.Reversal {
			if a.Balance < 0 {
				return db.LedgerTransaction{}, false, ErrInDebt
			}
			return db.LedgerTransaction{}, false, ErrInsufficientCredits
		}
	}
	for _, l := range p.Legs {
		add := q.AddToBalance
		if p.Reversal && l.Amount < 0 {
			add = func(ctx context.Context, arg db.AddToBalanceParams) (int64, error) {
				return q.AddToBalanceBelowZero(ctx, db.AddToBalanceBelowZeroParams(arg))
			}
		}
		balance, err := add(ctx, db.AddToBalanceParams{ID: l.Account, Amount: l.Amount})
		if err != nil {
			// The CHECK constraint is the backstop should the check above ever be wrong.
			return db.LedgerTransaction{}, false, fmt.Errorf("post %s: %w", p.Key, err)
		}
		if err := q.InsertLedgerEntry(ctx, db.InsertLedgerEntryParams{
			TransactionID: txn.ID, AccountID: l.Account, Amount: l.Amount, BalanceAfter: balance,
			CounterpartyUserID: l.Counterparty,
		}); err != nil {
			return db.LedgerTransaction{}, false, fmt.Errorf("post %s: %w", p.Key, err)
		}
	}
	return txn, true, nil
}

func validate(p Posting) error {
	if p.Key == "" || len(p.Key) > 255 {
		return errors.New("posting: the key must be 1 to 255 bytes")
	}
	if len(p.Legs) < 2 {
		return fmt.Errorf("posting %s: needs at least two legs", p.Key)
	}
	var sum int64
	seen := make([]uuid.UUID, 0, len(p.Legs))
	for _, l := range p.Legs {
		if l.Amount == 0 {
			return fmt.Errorf("posting %s: a leg of zero", p.Key)
		}
		if slices.Contains(seen, l.Account) {
			return fmt.Errorf("posting %s: account %s appears twice", p.Key, l.Account)
		}
		seen = append(seen, l.Account)
		sum += l.Amount
	}
	if sum != 0 {
		return fmt.Errorf("posting %s: legs sum to %d, not zero", p.Key, sum)
	}
	return nil
}

// UserAccount returns the id of user's wallet account, creating it on first use.
func UserAccount(ctx context.Context, q *db.Queries, user uuid.UUID) (uuid.UUID, error) {
	if err := q.EnsureUserAccount(ctx, user); err != nil {
		return uuid.Nil, fmt.Errorf("wallet of %s: %w", user, err)
	}
	a, err := q.GetUserAccount(ctx, user)
	if err != nil {
		return uuid.Nil, fmt.Errorf("wallet of %s: %w", user, err)
	}
	return a.ID, nil
}

// walletAndIssuance returns user's wallet (created on first use) and the issuance account:
// the two sides of every mint, refund, dispute, grant and adjustment.
func walletAndIssuance(ctx context.Context, q *db.Queries, user uuid.UUID) (wallet, issuance uuid.UUID, err error) {
	if wallet, err = UserAccount(ctx, q, user); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	issuance, err = SystemAccount(ctx, q, Issuance)
	return wallet, issuance, err
}

// SystemAccount returns the id of the system account named code.
func SystemAccount(ctx context.Context, q *db.Queries, code string) (uuid.UUID, error) {
	a, err := q.GetSystemAccount(ctx, code)
	if err != nil {
		return uuid.Nil, fmt.Errorf("system account %s: %w", code, err)
	}
	return a.ID, nil
}

// Grant credits user with amount from issuance, once per key: an operator's adjustment (and
// how tests fund wallets). Payments mint through the top-up flow instead.
func Grant(ctx context.Context, pool *pgxpool.Pool, key string, user uuid.UUID, amount int64, memo string) error {
	if amount <= 0 {
		return errors.New("grant: the amount must be positive")
	}
	return postgres.WithTx(ctx, pool, func(q *db.Queries) error {
		wallet, issuance, err := walletAndIssuance(ctx, q, user)
		if err != nil {
			return err
		}
		_, _, err = Post(ctx, q, Posting{
			Key: key, Kind: KindAdjustment, Memo: memo,
			Legs: []Leg{{Account: issuance, Amount: -amount}, {Account: wallet, Amount: amount}},
		})
		return err
	})
}
