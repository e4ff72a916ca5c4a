// Package wallet holds the credit wallet: a double-entry ledger with one posting function
// for every money path, wallet balances and history, paid-room entry, tips, and the store
// behind the API's Idempotency-Key.
package wallet

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/ratelimit"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// Package is a credit package a user can buy: credits for a price in minor units.
type Package struct {
	ID       string
	Credits  int64
	Price    int64
	Currency string
}

// Settings are the wallet's knobs, from config.
type Settings struct {
	Packages []Package
	// EntryFeeBasisPoints is the platform's cut of a paid-room entry, in 1/100 of a percent
	// (1000 = 10 %); the owner gets the rest.
	EntryFeeBasisPoints int
	// TipMax bounds one tip; TipRate limits tips per sender.
	TipMax        int64
	TipRateN      int
	TipRateWindow time.Duration
}

// Service implements the wallet.
type Service struct {
	pool     *pgxpool.Pool
	rooms    *rooms.Service
	limiter  ratelimit.Limiter
	cursors  *cursor.Signer
	settings Settings
	metrics  *Metrics
}

// NewService wires the wallet. metrics may be nil.
func NewService(pool *pgxpool.Pool, roomsSvc *rooms.Service, limiter ratelimit.Limiter, cursors *cursor.Signer, settings Settings, metrics *Metrics) *Service {
	return &Service{pool: pool, rooms: roomsSvc, limiter: limiter, cursors: cursors, settings: settings, metrics: metrics}
}

// Packages lists the credit packages on sale.
func (s *Service) Packages() []Package { return s.settings.Packages }

// Wallet is a user's wallet as they see it: the credits they may spend, or what they owe
// after a reversal took back credits they had spent (the ledger balance below zero).
type Wallet struct {
	Balance int64
	Debt    int64
}

// Get returns user's wallet (empty until their first credit).
func (s *Service) Get(ctx context.Context, user uuid.UUID) (Wallet, error) {
	a, err := db.New(s.pool).GetUserAccount(ctx, user)
	if postgres.IsNoRows(err) {
		return Wallet{}, nil
	}
	if err != nil {
		return Wallet{}, fmt.Errorf("get wallet: %w", err)
	}
	return walletOf(a.Balance), nil
}

// walletOf is a wallet as its user sees it from its ledger balance: what may be spent, or
// what is owed.
func walletOf(balance int64) Wallet {
	return Wallet{Balance: max(balance, 0), Debt: max(-balance, 0)}
}

// Entry is one line of a wallet's history: what changed the balance, and why.
type Entry struct {
	TransactionID uuid.UUID
	Kind          string
	Amount        int64
	BalanceAfter  int64
	RoomID        *uuid.UUID
	Counterparty  *uuid.UUID
	TopupID       *uuid.UUID
	TipID         *uuid.UUID
	Memo          string
	CreatedAt     time.Time
}

// HistoryPage is a page of a wallet's history, newest first.
type HistoryPage struct {
	Items      []Entry
	NextCursor string
}

const historyCursorKind = "wallet-history"

type historyCursor struct {
	Before int64 `json:"b"`
}

// History pages through user's wallet history, newest first.
func (s *Service) History(ctx context.Context, user uuid.UUID, token string, limit int) (HistoryPage, error) {
	before := int64(1<<63 - 1)
	if token != "" {
		var c historyCursor
		if err := s.cursors.Decode(historyCursorKind, token, &c); err != nil {
			return HistoryPage{}, &apperr.Error{Code: apperr.Invalid, Message: "the cursor is invalid",
				Fields: []apperr.FieldError{{Field: "query.cursor", Message: "is invalid"}}}
		}
		before = c.Before
	}
	q := db.New(s.pool)
	page := HistoryPage{Items: []Entry{}}
	a, err := q.GetUserAccount(ctx, user)
	if postgres.IsNoRows(err) {
		return page, nil
	}
	if err != nil {
		return HistoryPage{}, fmt.Errorf("wallet history: %w", err)
	}
	rows, err := q.ListAccountEntries(ctx, db.ListAccountEntriesParams{AccountID: a.ID, BeforeID: before, Lim: int32(limit + 1)})
	if err != nil {
		return HistoryPage{}, fmt.Errorf("wallet history: %w", err)
	}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextCursor = s.cursors.Encode(historyCursorKind, historyCursor{Before: rows[limit-1].ID})
	}
	for _, r := range rows {
		page.Items = append(page.Items, Entry{
			TransactionID: r.TransactionID, Kind: r.Kind, Amount: r.Amount, BalanceAfter: r.BalanceAfter,
			RoomID: r.RoomID, Counterparty: r.CounterpartyUserID, TopupID: r.TopupID, TipID: r.TipID,
			Memo: r.Memo, CreatedAt: r.CreatedAt,
		})
	}
	return page, nil
}

// ChargeEntry takes a paid room's entry price from user inside the join's transaction q
// (rooms.EntryCharger): the owner gets the price minus the platform fee. Keyed by room and
// user, so a user pays for a room once, however often the join is retried — and rejoining
// after leaving is free.
func (s *Service) ChargeEntry(ctx context.Context, q *db.Queries, room db.Room, user uuid.UUID) error {
	price := room.EntryPrice
	fee := price * int64(s.settings.EntryFeeBasisPoints) / 10000
	payer, err := UserAccount(ctx, q, user)
	if err != nil {
		return err
	}
	owner, err := UserAccount(ctx, q, room.OwnerID)
	if err != nil {
		return err
	}
	legs := []Leg{{Account: payer, Amount: -price, Counterparty: &room.OwnerID}}
	if price-fee > 0 {
		legs = append(legs, Leg{Account: owner, Amount: price - fee, Counterparty: &user})
	}
	if fee > 0 {
		fees, err := SystemAccount(ctx, q, PlatformFees)
		if err != nil {
			return err
		}
		legs = append(legs, Leg{Account: fees, Amount: fee})
	}
	_, created, err := Post(ctx, q, Posting{
		Key: fmt.Sprintf("entry:%s:%s", room.ID, user), Kind: KindRoomEntry, RoomID: &room.ID,
		Memo: "entry to " + room.Name, Legs: legs,
	})
	if err != nil {
		return err
	}
	if created {
		s.metrics.posted(KindRoomEntry)
	}
	return nil
}

// Tip is credits one member gave another in a room.
type Tip struct {
	ID          uuid.UUID
	RoomID      uuid.UUID
	SenderID    uuid.UUID
	RecipientID uuid.UUID
	Amount      int64
	Message     string
	Seq         int64
	CreatedAt   time.Time
}

// TipInput describes a tip to send.
type TipInput struct {
	RecipientID uuid.UUID
	Amount      int64
	Message     string
}

// MaxTipMessage bounds a tip's message, in characters.
const MaxTipMessage = 280

// tipNamespace derives a tip's id from its sender and the request's name (RequestName: its
// Idempotency-Key and when the key was claimed), so a retry of the request names the same
// tip even when its response was lost, and a reuse of the key after its retention names a
// new one.
var tipNamespace = uuid.MustParse("6f1d4b0e-3a52-4c1e-9a8e-2f8d0c7b5a10")

func tipID(sender uuid.UUID, requestName string) uuid.UUID {
	return uuid.NewSHA1(tipNamespace, []byte(sender.String()+"\x00"+requestName))
}

func invalidField(field, msg string) *apperr.Error {
	return &apperr.Error{Code: apperr.Invalid, Message: field + " " + msg, Fields: []apperr.FieldError{{Field: "body." + field, Message: msg}}}
}

// SendTip moves in.Amount credits from sender to a fellow member of the room and records it
// as a tip event in the room, in one transaction. requestName (RequestName of the
// Idempotency-Key) names the tip: sending again under the same name returns the first tip
// (created = false) and moves nothing.
func (s *Service) SendTip(ctx context.Context, roomID, sender uuid.UUID, requestName string, in TipInput) (tip Tip, created bool, err error) {
	in.Message = strings.TrimSpace(in.Message)
	switch {
	case in.RecipientID == sender:
		return Tip{}, false, invalidField("recipient_id", "must be another member, not yourself")
	case in.Amount < 1 || in.Amount > s.settings.TipMax:
		return Tip{}, false, invalidField("amount", fmt.Sprintf("must be between 1 and %d credits", s.settings.TipMax))
	case !utf8.ValidString(in.Message) || utf8.RuneCountInString(in.Message) > MaxTipMessage:
		return Tip{}, false, invalidField("message", fmt.Sprintf("must be at most %d characters", MaxTipMessage))
	}
	id := tipID(sender, requestName)
	if existing, err := db.New(s.pool).GetTip(ctx, id); err == nil {
		return tipFromRow(existing), false, nil
	} else if !postgres.IsNoRows(err) {
		return Tip{}, false, fmt.Errorf("send tip: %w", err)
	}
	if s.settings.TipRateN > 0 {
		ok, retry, err := s.limiter.Allow(ctx, "tip:"+sender.String(), s.settings.TipRateN, s.settings.TipRateWindow)
		if err != nil {
			return Tip{}, false, err
		}
		if !ok {
			return Tip{}, false, apperr.RateLimit(retry, "too many tips; try again later")
		}
	}
	_, appended, err := s.rooms.Write(ctx, roomID, sender, func(tx *rooms.Tx) (*events.Event, error) {
		if tx.Member == nil {
			return nil, rooms.ErrRoomNotFound
		}
		if row, err := tx.Q.GetTip(ctx, id); err == nil {
			// A concurrent repeat got here first.
			tip = tipFromRow(row)
			return nil, nil
		} else if !postgres.IsNoRows(err) {
			return nil, err
		}
		if err := tx.RequireWritable(); err != nil {
			return nil, err
		}
		if _, err := tx.Q.GetMember(ctx, db.GetMemberParams{RoomID: roomID, UserID: in.RecipientID}); postgres.IsNoRows(err) {
			return nil, &apperr.Error{Code: apperr.NotFound, Message: "the recipient is not a member of this room",
				Fields: []apperr.FieldError{{Field: "body.recipient_id", Message: "is not a member of this room"}}}
		} else if err != nil {
			return nil, err
		}
		from, err := UserAccount(ctx, tx.Q, sender)
		if err != nil {
			return nil, err
		}
		to, err := UserAccount(ctx, tx.Q, in.RecipientID)
		if err != nil {
			return nil, err
		}
		txn, _, err := Post(ctx, tx.Q, Posting{
			Key: "tip:" + id.String(), Kind: KindTip, RoomID: &roomID, TipID: &id, Memo: in.Message,
			Legs: []Leg{
				{Account: from, Amount: -in.Amount, Counterparty: &in.RecipientID},
				{Account: to, Amount: in.Amount, Counterparty: &sender},
			},
		})
		if err != nil {
			return nil, err
		}
		row, err := tx.Q.InsertTip(ctx, db.InsertTipParams{
			ID: id, RoomID: roomID, SenderID: sender, RecipientID: in.RecipientID, Amount: in.Amount,
			Message: in.Message, TransactionID: txn.ID, Seq: tx.Seq,
		})
		if err != nil {
			return nil, err
		}
		tip = tipFromRow(row)
		return &events.Event{Type: events.Tip, UserID: &in.RecipientID, Data: events.Data{TipID: &id, Amount: in.Amount, Message: in.Message}}, nil
	})
	if err != nil {
		return Tip{}, false, fmt.Errorf("send tip: %w", err)
	}
	if appended {
		s.metrics.posted(KindTip)
	}
	return tip, appended, nil
}

func tipFromRow(r db.Tip) Tip {
	return Tip{ID: r.ID, RoomID: r.RoomID, SenderID: r.SenderID, RecipientID: r.RecipientID, Amount: r.Amount,
		Message: r.Message, Seq: r.Seq, CreatedAt: r.CreatedAt}
}
