package wallet_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
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
	// create, when set, answers CreateCheckout instead of the default open session.
	create func(ctx context.Context, in payments.CheckoutInput) (payments.Session, error)
	// price is what the last checkout was opened for: a session state that names no amount
	// charges it.
	price payments.Session
	// gets counts GetSession calls by session id.
	gets map[string]int
	// refunds are the amounts Refund was asked for.
	refunds []int64
}

func (p *fakeProvider) getsOf(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[id]
}

func (p *fakeProvider) set(s payments.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
}

func (p *fakeProvider) Name() string { return "sandbox" }

func (p *fakeProvider) CreateCheckout(ctx context.Context, in payments.CheckoutInput) (payments.Session, error) {
	p.mu.Lock()
	p.price = payments.Session{AmountTotal: in.Amount, Currency: in.Currency}
	create := p.create
	p.mu.Unlock()
	if create != nil {
		return create(ctx, in)
	}
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
	if p.gets == nil {
		p.gets = map[string]int{}
	}
	p.gets[id]++
	s := p.state
	s.ID = id
	if s.AmountTotal == 0 && s.Currency == "" {
		s.AmountTotal, s.Currency = p.price.AmountTotal, p.price.Currency
	}
	return s, nil
}

func (p *fakeProvider) Refund(_ context.Context, _ string, amount int64, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refunds = append(p.refunds, amount)
	return nil
}

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

// TestAPaymentOfAnotherPriceIsReviewed: a session the provider reports paid, but for
// another amount or currency than the package cost at purchase (199 usd), mints nothing —
// however often it is settled — and parks the top-up in review, with an error log and a
// metric for the operator.
func TestAPaymentOfAnotherPriceIsReviewed(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	for _, tc := range []struct {
		name     string
		amount   int64
		currency string
	}{
		{"a smaller amount", 99, "usd"},
		{"a larger amount", 1999, "usd"},
		{"another currency", 199, "eur"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newTopup(t, pool)
			var logs bytes.Buffer
			reg := prometheus.NewRegistry()
			metrics := wallet.NewMetrics(reg, pool)
			f.topups = wallet.NewTopups(pool, f.provider, []wallet.Package{{ID: "small", Credits: 100, Price: 199, Currency: "usd"}},
				"https://parlor.example", slog.New(slog.NewJSONHandler(&logs, nil)), metrics)
			paid := sessionPaid
			paid.AmountTotal, paid.Currency = tc.amount, tc.currency
			f.settle(t, paid)
			status, balance, mints := f.settle(t, paid)
			require.Equal(t, wallet.TopupReview, status)
			require.Zero(t, balance, "nothing is credited")
			require.Zero(t, mints)

			require.Equal(t, 1.0, counterValue(t, reg, "parlor_topup_price_mismatches_total"))
			require.Equal(t, 1, strings.Count(logs.String(), `"level":"ERROR"`), "one error log, for the move to review: %s", logs.String())
			require.Contains(t, logs.String(), f.id.String())
			require.Contains(t, logs.String(), `"paid":`+strconv.FormatInt(tc.amount, 10))

			// A later paid answer of the right price changes nothing: review is for a person.
			f.settle(t, sessionPaid)
			status, balance, _ = f.read(t)
			require.Equal(t, wallet.TopupReview, status)
			require.Zero(t, balance)
		})
	}
	requireReconciled(t, pool)
}

// TestCreatingATopupSurvivesTheClientHangingUp: the client's request ends while the
// provider is still opening the checkout; the provider call goes on (on a context of its
// own, bounded by CheckoutCreateTimeout) and the top-up is recorded whole, with its
// session, so a retry under the same Idempotency-Key finds it.
func TestCreatingATopupSurvivesTheClientHangingUp(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	f := newTopup(t, pool)
	request, hangUp := context.WithCancel(ctx)
	var deadline time.Time
	f.provider.create = func(ctx context.Context, in payments.CheckoutInput) (payments.Session, error) {
		hangUp()
		time.Sleep(50 * time.Millisecond) // the provider answers after the client left
		if err := ctx.Err(); err != nil {
			return payments.Session{}, err
		}
		deadline, _ = ctx.Deadline()
		id := "cs_fake_" + in.TopupID.String()
		return payments.Session{ID: id, URL: "https://checkout.example/" + id, Status: payments.SessionOpen}, nil
	}
	started := time.Now()
	tp, err := f.topups.Create(request, f.user, "small")
	require.NoError(t, err)
	require.Error(t, request.Err(), "the client had hung up")
	require.Equal(t, "https://checkout.example/cs_fake_"+tp.ID.String(), tp.CheckoutURL)
	require.WithinDuration(t, started.Add(wallet.CheckoutCreateTimeout), deadline, 5*time.Second, "the call is bounded")

	var session *string
	require.NoError(t, pool.QueryRow(ctx, "SELECT checkout_session_id FROM topups WHERE id = $1", tp.ID).Scan(&session))
	require.NotNil(t, session, "the session is recorded")
}

// TestTheReconcilerFinishesTopupsLeftWithoutASession: a creation that died between the
// insert and the provider's answer leaves a pending top-up without a checkout session. The
// reconciler opens its session (under the same provider idempotency key, so a session the
// provider did create is the one recorded), or fails it once its checkout would have
// expired — it is never left pending.
func TestTheReconcilerFinishesTopupsLeftWithoutASession(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	fresh, stale := newTopup(t, pool), newTopup(t, pool)
	_, err := pool.Exec(ctx, "UPDATE topups SET checkout_session_id = NULL, checkout_url = NULL WHERE id = ANY($1)", []uuid.UUID{fresh.id, stale.id})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "UPDATE topups SET expires_at = now() - interval '1 minute' WHERE id = $1", stale.id)
	require.NoError(t, err)

	later := time.Now().Add(wallet.WebhookGrace + time.Second)
	_, err = fresh.topups.ReconcilePending(ctx, later, 1000)
	require.NoError(t, err)

	var url *string
	var status string
	require.NoError(t, pool.QueryRow(ctx, "SELECT status, checkout_url FROM topups WHERE id = $1", fresh.id).Scan(&status, &url))
	require.Equal(t, wallet.TopupPending, status)
	require.NotNil(t, url, "the session is opened")
	require.Equal(t, "https://checkout.example/cs_fake_"+fresh.id.String(), *url)
	status, _, _ = stale.read(t)
	require.Equal(t, wallet.TopupFailed, status, "past its expiry, nobody can pay it")
	requireReconciled(t, pool)
}

// TestTheReconcilerVisitsEveryPendingTopupInTurn: with more due top-ups than one run
// visits, successive runs go through all of them before any comes up twice (the newest are
// not starved by the oldest), and a top-up that stays pending is asked again after a
// backoff that doubles from a minute up to an hour.
func TestTheReconcilerVisitsEveryPendingTopupInTurn(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	provider := &fakeProvider{state: sessionOpen}
	topups := wallet.NewTopups(pool, provider, []wallet.Package{{ID: "small", Credits: 100, Price: 199, Currency: "usd"}},
		"https://parlor.example", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	user := newUser(t, pool)
	var sessions []string
	for range 5 {
		tp, err := topups.Create(ctx, user, "small")
		require.NoError(t, err)
		sessions = append(sessions, "cs_fake_"+tp.ID.String())
	}
	// Other tests share the database: count only this test's visits, and visit everything
	// that is due in each run's limit by making ours due the longest.
	_, err := pool.Exec(ctx, `UPDATE topups SET next_check_at = now() - interval '10 days', expires_at = now() + interval '100 days'
		WHERE user_id = $1`, user)
	require.NoError(t, err)
	visits := func() (total int, each []int) {
		for _, s := range sessions {
			n := provider.getsOf(s)
			each = append(each, n)
			total += n
		}
		return total, each
	}

	now := time.Now()
	for run := 1; run <= 3; run++ {
		_, err := topups.ReconcilePending(ctx, now, 2)
		require.NoError(t, err)
		total, each := visits()
		require.Equal(t, min(2*run, 5), total, "run %d: %v", run, each)
		for _, n := range each {
			require.LessOrEqual(t, n, 1, "run %d: a top-up came up twice before all came up once: %v", run, each)
		}
	}
	var attempts int32
	var next time.Time
	require.NoError(t, pool.QueryRow(ctx, "SELECT check_attempts, next_check_at FROM topups WHERE checkout_session_id = $1", sessions[0]).Scan(&attempts, &next))
	require.Equal(t, int32(1), attempts)
	require.WithinDuration(t, now.Add(wallet.CheckBackoffMin), next, time.Millisecond)

	// Visited again when due: the wait doubles, and stops doubling at an hour.
	want := []time.Duration{2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for _, wait := range want {
		now = next
		_, err := pool.Exec(ctx, "UPDATE topups SET next_check_at = now() + interval '1 day' WHERE user_id = $1 AND checkout_session_id <> $2", user, sessions[0])
		require.NoError(t, err)
		_, err = topups.ReconcilePending(ctx, now, 1000)
		require.NoError(t, err)
		require.NoError(t, pool.QueryRow(ctx, "SELECT next_check_at FROM topups WHERE checkout_session_id = $1", sessions[0]).Scan(&next))
		require.WithinDuration(t, now.Add(wait), next, time.Millisecond)
	}
}

// TestPollingATopupAsksTheProviderAtMostOncePerInterval: a client polling GET on a pending
// top-up is answered from the database; the provider is asked at most once every
// ProviderCheckInterval, however often it polls.
func TestPollingATopupAsksTheProviderAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	f := newTopup(t, pool)
	now := time.Now()
	f.topups.Now = func() time.Time { return now }
	session := "cs_fake_" + f.id.String()
	for range 20 {
		tp, err := f.topups.Get(ctx, f.user, f.id)
		require.NoError(t, err)
		require.Equal(t, wallet.TopupPending, tp.Status)
	}
	require.Equal(t, 1, f.provider.getsOf(session))

	now = now.Add(wallet.ProviderCheckInterval)
	f.provider.set(sessionPaid)
	tp, err := f.topups.Get(ctx, f.user, f.id)
	require.NoError(t, err)
	require.Equal(t, wallet.TopupSucceeded, tp.Status, "the next interval's read sees the payment")
	require.Equal(t, 2, f.provider.getsOf(session))
}

// counterValue is the value of the counter name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			require.Len(t, f.GetMetric(), 1)
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestConcurrentRefundFiguresBookTheLargestOnce: Stripe reports a charge's refunds as a
// cumulative amount_refunded, and its events arrive in any order, repeated, at once. However
// they interleave, the credits taken back are exactly the share the largest figure paid for
// (rounded up), never more, and the top-up ends refunded once all its credits are taken back.
func TestConcurrentRefundFiguresBookTheLargestOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	for _, tc := range []struct {
		figures []int64 // of 199
		want    int64   // credits taken back
		status  string
	}{
		{[]int64{1}, 1, wallet.TopupPartiallyRefunded},
		{[]int64{100, 50, 100, 1, 100}, 51, wallet.TopupPartiallyRefunded},
		{[]int64{10, 20, 30, 40, 199, 60, 199, 150}, 100, wallet.TopupRefunded},
		// 99.5 credits' worth rounds up to all of them: the state follows the credits.
		{[]int64{198}, 100, wallet.TopupRefunded},
	} {
		f := newTopup(t, pool)
		paid := sessionPaid
		paid.PaymentIntent = "pi_" + uuid.NewString()
		f.settle(t, paid)
		var wg sync.WaitGroup
		for _, amount := range tc.figures {
			for range 2 {
				wg.Go(func() {
					err := f.topups.BookRefund(ctx, payments.Charge{ID: "ch_1", PaymentIntent: paid.PaymentIntent,
						Amount: 199, AmountRefunded: amount, Currency: "usd"}, nil)
					if err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
		status, balance, _ := f.read(t)
		require.Equal(t, 100-tc.want, balance, "%v", tc.figures)
		require.Equal(t, tc.status, status, "%v", tc.figures)
	}
	requireReconciled(t, pool)
}

// paidTopup is a top-up of 100 credits for 199 cents, paid and minted, with a payment
// intent of its own.
func paidTopup(t *testing.T, pool *pgxpool.Pool) (*topupFixture, string) {
	t.Helper()
	f := newTopup(t, pool)
	paid := sessionPaid
	paid.PaymentIntent = "pi_" + uuid.NewString()
	f.settle(t, paid)
	return f, paid.PaymentIntent
}

func (f *topupFixture) refund(t *testing.T, intent string, amount int64) {
	t.Helper()
	require.NoError(t, f.topups.BookRefund(ctx, payments.Charge{ID: "ch_" + intent, PaymentIntent: intent, Amount: 199, AmountRefunded: amount, Currency: "usd"}, nil))
}

func (f *topupFixture) dispute(t *testing.T, intent, id string, amount int64, status string) {
	t.Helper()
	require.NoError(t, f.topups.BookDispute(ctx, payments.Dispute{ID: id, Charge: "ch_" + intent, PaymentIntent: intent, Amount: amount, Currency: "usd", Status: status}, nil))
}

// TestARefundHeldBackByADisputeIsBookedWhenItEnds: Stripe refunds a payment while a dispute
// of it holds the credits, and the dispute is then won: the credits the dispute gives back
// go to the refund, in whatever order the events are processed — the buyer never keeps
// credits for money Stripe returned. The same holds when the shares round apart.
func TestARefundHeldBackByADisputeIsBookedWhenItEnds(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)

	f, intent := paidTopup(t, pool)
	f.dispute(t, intent, "dp_"+intent, 199, "needs_response")
	f.refund(t, intent, 199) // the dispute holds all 100 credits: nothing to take yet
	status, balance, _ := f.read(t)
	require.Equal(t, wallet.TopupDisputed, status)
	require.Zero(t, balance)
	f.dispute(t, intent, "dp_"+intent, 199, "won")
	status, balance, _ = f.read(t)
	require.Equal(t, wallet.TopupRefunded, status, "the refund takes what the won dispute gave back")
	require.Zero(t, balance)

	g, intent := paidTopup(t, pool)
	g.dispute(t, intent, "dp_"+intent, 150, "needs_response") // 76 credits held
	g.refund(t, intent, 49)                                   // owes 25, finds 24
	g.dispute(t, intent, "dp_"+intent, 150, "won")
	g.refund(t, intent, 49) // a repeat
	status, balance, _ = g.read(t)
	require.Equal(t, wallet.TopupPartiallyRefunded, status)
	require.Equal(t, int64(75), balance, "49 of 199 cents refunded: 25 credits taken, once")
	requireReconciled(t, pool)
}

// TestADisputeOnlyMovesForward: an inquiry that closes gives the top-up back its state; an
// inquiry's event arriving after its escalation changes nothing (no credits returned, the
// audit still finds the dispute booked).
func TestADisputeOnlyMovesForward(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)

	f, intent := paidTopup(t, pool)
	f.dispute(t, intent, "dp_"+intent, 199, "warning_needs_response")
	status, balance, _ := f.read(t)
	require.Equal(t, wallet.TopupDisputed, status)
	require.Equal(t, int64(100), balance, "an inquiry takes nothing")
	f.dispute(t, intent, "dp_"+intent, 199, "warning_closed")
	status, _, _ = f.read(t)
	require.Equal(t, wallet.TopupSucceeded, status, "a closed inquiry is no dispute")

	g, intent := paidTopup(t, pool)
	g.dispute(t, intent, "dp_"+intent, 199, "needs_response")
	g.dispute(t, intent, "dp_"+intent, 199, "warning_needs_response") // older, late
	status, balance, _ = g.read(t)
	require.Equal(t, wallet.TopupDisputed, status)
	require.Zero(t, balance)
	requireReconciled(t, pool)
}

// TestAnAdminRefundAsksOnlyForWhatIsLeft: part of a payment was refunded at Stripe (in the
// Dashboard); an admin's refund of the top-up then asks the provider for the rest only —
// asking for all of it would be refused by Stripe, for ever.
func TestAnAdminRefundAsksOnlyForWhatIsLeft(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	f, _ := paidTopup(t, pool)
	_, err := pool.Exec(ctx, "UPDATE topups SET amount_refunded = 50 WHERE id = $1", f.id) // its event not processed yet
	require.NoError(t, err)
	admin := wallet.Actor{AdminID: newUser(t, pool), Reason: "asked by the buyer"}
	_, err = f.topups.Refund(ctx, f.id, admin)
	require.NoError(t, err)
	require.Equal(t, []int64{149}, f.provider.refunds)

	g, _ := paidTopup(t, pool)
	_, err = g.topups.Refund(ctx, g.id, admin)
	require.NoError(t, err)
	require.Equal(t, []int64{199}, g.provider.refunds)
}

// TestReversalsOfATopupInReviewAreRecordedNotBooked: a payment of another price parked its
// top-up in review with nothing credited; a refund or dispute of it at the provider takes
// nothing, but is recorded (amount_refunded, the dispute) for the operator who decides, and
// the books still reconcile.
func TestReversalsOfATopupInReviewAreRecordedNotBooked(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	f := newTopup(t, pool)
	paid := sessionPaid
	paid.PaymentIntent, paid.AmountTotal, paid.Currency = "pi_"+uuid.NewString(), 99, "usd"
	f.settle(t, paid)
	f.refund(t, paid.PaymentIntent, 99)
	f.dispute(t, paid.PaymentIntent, "dp_"+paid.PaymentIntent, 99, "needs_response")

	status, balance, _ := f.read(t)
	require.Equal(t, wallet.TopupReview, status)
	require.Zero(t, balance)
	var refunded int64
	var disputes int
	require.NoError(t, pool.QueryRow(ctx, `SELECT amount_refunded, (SELECT count(*) FROM topup_disputes d WHERE d.topup_id = t.id)
		FROM topups t WHERE id = $1`, f.id).Scan(&refunded, &disputes))
	require.Equal(t, int64(99), refunded)
	require.Equal(t, 1, disputes)
	requireReconciled(t, pool)
}
