package wallet_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// fakeProvider answers GetSession with whatever session state the test sets, so Settle can
// be driven through states the sandbox reaches only in order.
type fakeProvider struct {
	mu    sync.Mutex
	state payments.Session
	// beforeGet, when set, runs once at the start of the next GetSession: what happens
	// between Settle reading the top-up and asking the provider.
	beforeGet func()
}

func (p *fakeProvider) set(s payments.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
}

func (p *fakeProvider) Name() string { return "sandbox" }

func (p *fakeProvider) CreateCheckout(_ context.Context, in payments.CheckoutInput) (payments.Session, error) {
	id := "cs_fake_" + in.TopupID.String()
	return payments.Session{ID: id, URL: "https://checkout.example/" + id, Status: payments.SessionOpen,
		PaymentStatus: payments.PaymentUnpaid, ExpiresAt: in.ExpiresAt}, nil
}

func (p *fakeProvider) GetSession(_ context.Context, id string) (payments.Session, error) {
	p.mu.Lock()
	hook := p.beforeGet
	p.beforeGet = nil
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state
	s.ID = id
	return s, nil
}

func (p *fakeProvider) Refund(context.Context, string, int64, string) error { return nil }

// Provider states, as the Stripe provider reads them from a session with its intent expanded.
var (
	sessionOpen       = payments.Session{Status: payments.SessionOpen, PaymentStatus: payments.PaymentUnpaid}
	sessionPaid       = payments.Session{Status: payments.SessionComplete, PaymentStatus: payments.PaymentPaid, PaymentIntent: "pi_1", PaymentIntentStatus: payments.IntentSucceeded}
	sessionProcessing = payments.Session{Status: payments.SessionComplete, PaymentStatus: payments.PaymentUnpaid, PaymentIntent: "pi_1", PaymentIntentStatus: payments.IntentProcessing}
	sessionFailed     = payments.Session{Status: payments.SessionComplete, PaymentStatus: payments.PaymentUnpaid, PaymentIntent: "pi_1", PaymentIntentStatus: payments.IntentRequiresPaymentMethod}
	sessionCanceled   = payments.Session{Status: payments.SessionComplete, PaymentStatus: payments.PaymentUnpaid, PaymentIntent: "pi_1", PaymentIntentStatus: payments.IntentCanceled}
	sessionExpired    = payments.Session{Status: payments.SessionExpired, PaymentStatus: payments.PaymentUnpaid}
)

// topupFixture is a pending top-up of 100 credits behind a fake provider.
type topupFixture struct {
	pool     *pgxpool.Pool
	provider *fakeProvider
	topups   *wallet.Topups
	user, id uuid.UUID
}

func newTopup(t *testing.T, pool *pgxpool.Pool) *topupFixture {
	t.Helper()
	f := &topupFixture{pool: pool, provider: &fakeProvider{state: sessionOpen}, user: newUser(t, pool)}
	f.topups = wallet.NewTopups(pool, f.provider, []wallet.Package{{ID: "small", Credits: 100, Price: 199, Currency: "usd"}},
		"https://parlor.example", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	tp, err := f.topups.Create(ctx, f.user, "small")
	require.NoError(t, err)
	f.id = tp.ID
	return f
}

// settle runs Settle with the provider in state s and returns the top-up's status, the
// user's balance and how many mints the top-up has.
func (f *topupFixture) settle(t *testing.T, s payments.Session) (status string, balance int64, mints int) {
	t.Helper()
	f.provider.set(s)
	require.NoError(t, f.topups.Settle(ctx, f.id, nil))
	return f.read(t)
}

func (f *topupFixture) read(t *testing.T) (status string, balance int64, mints int) {
	t.Helper()
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT t.status,
		coalesce((SELECT a.balance FROM ledger_accounts a WHERE a.user_id = t.user_id), 0),
		(SELECT count(*) FROM ledger_transactions l WHERE l.idempotency_key = 'topup:' || t.id || ':mint')
		FROM topups t WHERE t.id = $1`, f.id).Scan(&status, &balance, &mints))
	return status, balance, mints
}

// TestSettleFollowsTheProvider: each sequence of provider states a pending top-up goes
// through, settled after each step (twice, as repeated webhooks do), ends in the right
// state with the credits minted at most once — and only when paid.
func TestSettleFollowsTheProvider(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	for _, tc := range []struct {
		name    string
		states  []payments.Session
		status  string
		balance int64
	}{
		{"paid by card", []payments.Session{sessionOpen, sessionPaid}, wallet.TopupSucceeded, 100},
		{"delayed payment still processing", []payments.Session{sessionOpen, sessionProcessing}, wallet.TopupPending, 0},
		{"delayed payment that succeeds", []payments.Session{sessionProcessing, sessionPaid}, wallet.TopupSucceeded, 100},
		{"delayed payment that fails", []payments.Session{sessionProcessing, sessionFailed}, wallet.TopupFailed, 0},
		{"delayed payment canceled", []payments.Session{sessionProcessing, sessionCanceled}, wallet.TopupFailed, 0},
		{"failed is final", []payments.Session{sessionFailed, sessionPaid}, wallet.TopupFailed, 0},
		{"a failure after the success changes nothing", []payments.Session{sessionPaid, sessionFailed}, wallet.TopupSucceeded, 100},
		{"checkout expired", []payments.Session{sessionOpen, sessionExpired}, wallet.TopupExpired, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newTopup(t, pool)
			for _, s := range tc.states {
				f.settle(t, s)
				f.settle(t, s)
			}
			status, balance, mints := f.read(t)
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.balance, balance)
			require.Equal(t, int(tc.balance/100), mints, "minted at most once, and only when paid")
		})
	}
	requireReconciled(t, pool)
}

// TestStaleFailureNeverUndoesASuccess: Settle reads the top-up as pending, and while it
// asks the provider another Settle credits the payment; the "failed" answer that arrives
// afterwards (a stale read, a late async_payment_failed) must not move the succeeded
// top-up. Only the conditional update (from pending) stands in its way.
func TestStaleFailureNeverUndoesASuccess(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	f := newTopup(t, pool)
	f.provider.set(sessionFailed)
	f.provider.beforeGet = func() {
		f.provider.set(sessionPaid)
		require.NoError(t, f.topups.Settle(ctx, f.id, nil))
		status, balance, _ := f.read(t)
		require.Equal(t, wallet.TopupSucceeded, status)
		require.Equal(t, int64(100), balance)
		f.provider.set(sessionFailed)
	}
	require.NoError(t, f.topups.Settle(ctx, f.id, nil))
	status, balance, mints := f.read(t)
	require.Equal(t, wallet.TopupSucceeded, status)
	require.Equal(t, int64(100), balance)
	require.Equal(t, 1, mints)
	requireReconciled(t, pool)
}
