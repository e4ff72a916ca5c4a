package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// adminStack is a running Parlor with one admin, an account the operator named in the
// config before starting.
type adminStack struct {
	*parlortest.Server
	adminID uuid.UUID
	admin   *apiclient.ClientWithResponses
	token   string
}

func startWithAdmin(t *testing.T) adminStack {
	t.Helper()
	cfg := parlortest.Config(t)
	conn, err := pgx.Connect(ctx, cfg.DBURL)
	require.NoError(t, err)
	var adminID uuid.UUID
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO users (email, password_hash, display_name) VALUES ('admin@example.com', 'x', 'Admin') RETURNING id`).Scan(&adminID))
	require.NoError(t, conn.Close(ctx))
	cfg.AdminUserIDs = []uuid.UUID{adminID}
	s := parlortest.Start(t, cfg)
	token, err := auth.NewAccessTokens(s.Keys, cfg.PublicURL, time.Minute).Issue(adminID, uuid.New())
	require.NoError(t, err)
	return adminStack{Server: s, adminID: adminID, admin: s.NewClient(parlortest.Bearer(token)), token: token}
}

func refundAs(t *testing.T, c *apiclient.ClientWithResponses, id uuid.UUID, reason string) *apiclient.RefundTopupResponse {
	t.Helper()
	body := apiclient.RefundTopupJSONRequestBody{}
	if reason != "" {
		body.Reason = &reason
	}
	res, err := c.RefundTopupWithResponse(ctx, id, &apiclient.RefundTopupParams{IdempotencyKey: uuid.NewString()}, body)
	require.NoError(t, err)
	return res
}

// auditLog reads the whole audit log as the admin, two records a page, newest first.
func (a adminStack) auditLog(t *testing.T) []apiclient.AdminAction {
	t.Helper()
	var all []apiclient.AdminAction
	var cursor *string
	for {
		limit := 2
		res, err := a.admin.ListAdminActionsWithResponse(ctx, &apiclient.ListAdminActionsParams{Limit: &limit, Cursor: cursor})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		require.LessOrEqual(t, len(res.JSON200.Items), limit)
		all = append(all, res.JSON200.Items...)
		if res.JSON200.NextCursor == nil {
			return all
		}
		cursor = res.JSON200.NextCursor
	}
}

// TestAdminAuditLog: every admin action that happened is in the audit log with its admin,
// target and reason, newest first across pages; a refused action is not; bad paging input
// is a 400 problem.
func TestAdminAuditLog(t *testing.T) {
	t.Parallel()
	a := startWithAdmin(t)
	require.Empty(t, a.auditLog(t))
	bob, dan := a.Register(t, "bob"), a.Register(t, "dan")
	first, second := a.BuyCredits(t, bob, "small"), a.BuyCredits(t, bob, "small")
	third := a.BuyCredits(t, dan, "small")

	res := refundAs(t, a.admin, first.Id, "")
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	res = refundAs(t, a.admin, second.Id, "duplicate purchase, ticket #4411")
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	// A repeat moves nothing and records nothing; a refused refund records nothing either.
	res = refundAs(t, a.admin, second.Id, "again")
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	room := parlortest.CreateRoom(t, dan, "dan's", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	require.Equal(t, 201, tip(t, dan, room, "spend", bob.ID, 1).StatusCode())
	res = refundAs(t, a.admin, third.Id, "refused")
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")

	log := a.auditLog(t)
	require.Len(t, log, 2)
	for i, want := range []struct {
		topup  uuid.UUID
		reason string
	}{{second.Id, "duplicate purchase, ticket #4411"}, {first.Id, ""}} {
		got := log[i]
		require.Equal(t, apiclient.AdminActionTopupRefund, got.Action)
		require.Equal(t, a.adminID, got.AdminId)
		require.Equal(t, want.topup, *got.TargetTopupId)
		require.Equal(t, bob.ID, *got.TargetUserId)
		require.Equal(t, want.reason, got.Reason)
		require.EqualValues(t, 100, got.Detail["credits"])
		require.Equal(t, "topup:"+want.topup.String()+":refund:1", got.Detail["ledger_key"])
	}
	require.Greater(t, log[0].Id, log[1].Id, "newest first")

	// Bad input: a forged cursor, a page over the documented maximum, a reason too long.
	bad := "not-a-cursor"
	page, err := a.admin.ListAdminActionsWithResponse(ctx, &apiclient.ListAdminActionsParams{Cursor: &bad})
	require.NoError(t, err)
	parlortest.RequireProblem(t, page.HTTPResponse, page.Body, 400, "invalid_request")
	over := 101
	page, err = a.admin.ListAdminActionsWithResponse(ctx, &apiclient.ListAdminActionsParams{Limit: &over})
	require.NoError(t, err)
	parlortest.RequireProblem(t, page.HTTPResponse, page.Body, 400, "invalid_request")
	kept := a.BuyCredits(t, dan, "small")
	res = refundAs(t, a.admin, kept.Id, strings.Repeat("é", 501))
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 400, "invalid_request")
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, dan, kept.Id).Status)
	require.Len(t, a.auditLog(t), 2)
	requireBooksBalance(t, a.Server)
}

// TestAdminWalletViewOfAWalletInDebt: after a refund and a dispute at the provider took
// back credits the buyer had spent, the admin sees what the user sees (balance 0, the debt)
// and what is behind it — the ledger balance below zero, the floor, the pending top-up, and
// each top-up with what the provider refunded and its dispute.
func TestAdminWalletViewOfAWalletInDebt(t *testing.T) {
	t.Parallel()
	a := startWithAdmin(t)
	ann, bob, dan := a.Register(t, "ann"), a.Register(t, "bob"), a.Register(t, "dan")
	room := parlortest.CreateRoom(t, ann, "debts", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	refunded, disputed := newReversals(t, a.Server, bob), newReversals(t, a.Server, bob)
	require.Equal(t, 201, tip(t, bob, room, uuid.NewString(), ann.ID, 160).StatusCode())
	refunded.deliver(refunded.refunded(199))
	disputed.deliver(disputed.dispute("dp_admin", "charge.dispute.created", "needs_response"))
	pending := parlortest.CreateTopup(t, bob, "small")

	get := func(user uuid.UUID) *apiclient.GetUserWalletAdminResponse {
		t.Helper()
		res, err := a.admin.GetUserWalletAdminWithResponse(ctx, user)
		require.NoError(t, err)
		return res
	}
	res := get(bob.ID)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	w := res.JSON200
	require.Equal(t, walletOf(t, bob), apiclient.Wallet{Balance: w.Balance, Debt: w.Debt, PendingTopups: w.PendingTopups})
	require.Equal(t, []int64{0, 160, -160, -160, 1}, []int64{w.Balance, w.Debt, w.LedgerBalance, w.Floor, w.PendingTopups})
	require.Len(t, w.Topups, 3)
	byID := map[uuid.UUID]apiclient.AdminTopup{}
	for _, tp := range w.Topups {
		require.Equal(t, bob.ID, tp.UserId)
		byID[tp.Id] = tp
	}
	require.Equal(t, pending.Id, w.Topups[0].Id, "newest first")
	require.Equal(t, apiclient.AdminTopupStatusPending, byID[pending.Id].Status)
	require.Empty(t, byID[pending.Id].Disputes)
	require.Nil(t, byID[pending.Id].PaymentIntentId)

	r := byID[refunded.topup.Id]
	require.Equal(t, apiclient.AdminTopupStatusRefunded, r.Status)
	require.Equal(t, int64(199), r.AmountRefunded)
	require.Equal(t, refunded.intent, *r.PaymentIntentId)
	require.Empty(t, r.Disputes)

	d := byID[disputed.topup.Id]
	require.Equal(t, apiclient.AdminTopupStatusDisputed, d.Status)
	require.Equal(t, int64(0), d.AmountRefunded)
	require.Len(t, d.Disputes, 1)
	require.Equal(t, "dp_admin", d.Disputes[0].Id)
	require.Equal(t, apiclient.DisputeOpen, d.Disputes[0].Status)
	require.Equal(t, []int64{199, 100}, []int64{d.Disputes[0].Amount, d.Disputes[0].Credits})

	// A user who never had credits has an empty wallet; one who does not exist is a 404;
	// an id that is not one is a 400.
	res = get(dan.ID)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, apiclient.AdminWallet{UserId: dan.ID, Topups: []apiclient.AdminTopup{}}, *res.JSON200)
	res = get(uuid.New())
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 404, "not_found")
	raw, body := a.Do(t, "GET", "/v1/admin/users/not-a-uuid/wallet", "", nil, http.Header{"Authorization": {"Bearer " + a.token}})
	parlortest.RequireProblem(t, raw, body, 400, "invalid_request")
	require.Empty(t, a.auditLog(t), "reading is not an action")
	requireBooksBalance(t, a.Server)
}

// TestAdminAdjustment: an admin adds and takes back credits with a reason; a debit may not
// take the wallet below zero nor touch one in debt, a credit pays a debt off; the
// Idempotency-Key makes a retry safe; bad input is a 400 and moves nothing; every
// adjustment made, and only those, is in the audit log.
func TestAdminAdjustment(t *testing.T) {
	t.Parallel()
	a := startWithAdmin(t)
	ann, bob, dan := a.Register(t, "ann"), a.Register(t, "bob"), a.Register(t, "dan")
	adjust := func(user uuid.UUID, key string, amount int64, reason string) *apiclient.AdjustUserWalletResponse {
		t.Helper()
		res, err := a.admin.AdjustUserWalletWithResponse(ctx, user, &apiclient.AdjustUserWalletParams{IdempotencyKey: key},
			apiclient.AdjustUserWalletJSONRequestBody{Amount: amount, Reason: reason})
		require.NoError(t, err)
		return res
	}

	key := uuid.NewString()
	res := adjust(bob.ID, key, 50, "goodwill for outage #12")
	require.Equal(t, 201, res.StatusCode(), string(res.Body))
	first := *res.JSON201
	require.Equal(t, []int64{50, 50}, []int64{first.Amount, first.BalanceAfter})
	require.Equal(t, int64(50), parlortest.BalanceOf(t, bob))
	h := history(t, bob)
	require.Len(t, h, 1)
	require.Equal(t, apiclient.KindAdjustment, h[0].Kind)
	require.Equal(t, first.TransactionId, h[0].Id)
	// A retry replays the first answer and moves nothing; the key with another body is 422.
	res = adjust(bob.ID, key, 50, "goodwill for outage #12")
	require.Equal(t, 201, res.StatusCode(), string(res.Body))
	require.Equal(t, "true", res.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.Id, res.JSON201.Id)
	res = adjust(bob.ID, key, 60, "goodwill for outage #12")
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "idempotency_key_reused")
	require.Equal(t, int64(50), parlortest.BalanceOf(t, bob))

	// A debit may not take the wallet below zero; down to zero it may.
	res = adjust(bob.ID, uuid.NewString(), -51, "chargeback of goodwill")
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")
	res = adjust(bob.ID, uuid.NewString(), -50, "granted twice")
	require.Equal(t, 201, res.StatusCode(), string(res.Body))
	require.Equal(t, int64(0), res.JSON201.BalanceAfter)
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))

	// A wallet in debt: no debit at all; a credit pays the debt off.
	room := parlortest.CreateRoom(t, ann, "debts", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, dan, room, "").StatusCode())
	r := newReversals(t, a.Server, dan)
	require.Equal(t, 201, tip(t, dan, room, uuid.NewString(), ann.ID, 60).StatusCode())
	r.deliver(r.refunded(199))
	require.Equal(t, apiclient.Wallet{Balance: 0, Debt: 60}, walletOf(t, dan))
	res = adjust(dan.ID, uuid.NewString(), -1, "take one")
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")
	res = adjust(dan.ID, uuid.NewString(), 70, "debt forgiven, ticket #77")
	require.Equal(t, 201, res.StatusCode(), string(res.Body))
	require.Equal(t, int64(10), res.JSON201.BalanceAfter)
	require.Equal(t, apiclient.Wallet{Balance: 10, Debt: 0}, walletOf(t, dan))

	// Bad input changes nothing.
	for name, tc := range map[string]struct {
		user   uuid.UUID
		body   string
		status int
		code   string
	}{
		"zero":             {bob.ID, `{"amount":0,"reason":"x"}`, 400, "invalid_request"},
		"too much":         {bob.ID, `{"amount":1000000001,"reason":"x"}`, 400, "invalid_request"},
		"too little":       {bob.ID, `{"amount":-1000000001,"reason":"x"}`, 400, "invalid_request"},
		"no reason":        {bob.ID, `{"amount":5}`, 400, "invalid_request"},
		"empty reason":     {bob.ID, `{"amount":5,"reason":""}`, 400, "invalid_request"},
		"reason too long":  {bob.ID, parlortest.JSON(map[string]any{"amount": 5, "reason": strings.Repeat("é", 501)}), 400, "invalid_request"},
		"a fraction":       {bob.ID, `{"amount":1.5,"reason":"x"}`, 400, "invalid_request"},
		"an unknown field": {bob.ID, `{"amount":5,"reason":"x","user_id":"` + dan.ID.String() + `"}`, 400, "invalid_request"},
		"nobody":           {uuid.New(), `{"amount":5,"reason":"x"}`, 404, "not_found"},
	} {
		t.Run(name, func(t *testing.T) {
			res, body := a.Do(t, "POST", "/v1/admin/users/"+tc.user.String()+"/wallet/adjustments", "application/json",
				strings.NewReader(tc.body), http.Header{"Authorization": {"Bearer " + a.token}, "Idempotency-Key": {uuid.NewString()}})
			parlortest.RequireProblem(t, res, body, tc.status, tc.code)
		})
	}
	res2, body := a.Do(t, "POST", "/v1/admin/users/"+bob.ID.String()+"/wallet/adjustments", "application/json",
		strings.NewReader(`{"amount":5,"reason":"x"}`), http.Header{"Authorization": {"Bearer " + a.token}})
	parlortest.RequireProblem(t, res2, body, 400, "idempotency_key_required")
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))

	// The audit log: the three adjustments made, newest first, each with its admin and reason.
	log := a.auditLog(t)
	require.Len(t, log, 3)
	for i, want := range []struct {
		user   uuid.UUID
		amount int64
		reason string
	}{{dan.ID, 70, "debt forgiven, ticket #77"}, {bob.ID, -50, "granted twice"}, {bob.ID, 50, "goodwill for outage #12"}} {
		require.Equal(t, apiclient.AdminActionWalletAdjustment, log[i].Action)
		require.Equal(t, a.adminID, log[i].AdminId)
		require.Equal(t, want.user, *log[i].TargetUserId)
		require.Nil(t, log[i].TargetTopupId)
		require.Equal(t, want.reason, log[i].Reason)
		require.EqualValues(t, want.amount, log[i].Detail["amount"])
	}
	require.Equal(t, first.TransactionId.String(), log[2].Detail["transaction_id"])
	requireBooksBalance(t, a.Server)
}

// TestAdminTopupDetail: the admin sees any top-up as stored beside the provider's session
// now — where the two disagree (paid at the provider, the webhook not in yet) it shows
// both and changes nothing; a provider that cannot answer leaves the stored state and says
// so, never a 5xx.
func TestAdminTopupDetail(t *testing.T) {
	t.Parallel()
	a := startWithAdmin(t)
	bob := a.Register(t, "bob")
	get := func(id uuid.UUID) *apiclient.GetTopupAdminResponse {
		t.Helper()
		res, err := a.admin.GetTopupAdminWithResponse(ctx, id)
		require.NoError(t, err)
		return res
	}

	bought := a.BuyCredits(t, bob, "small")
	res := get(bought.Id)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	d := res.JSON200
	require.Equal(t, []any{bob.ID, apiclient.AdminTopupStatusSucceeded, int64(100), int64(199)}, []any{d.Topup.UserId, d.Topup.Status, d.Topup.Credits, d.Topup.Amount})
	require.Equal(t, apiclient.ProviderOK, d.Provider.State)
	require.Equal(t, a.SessionOf(t, bought.Id), d.Provider.Session.Id)
	require.Equal(t, []any{"complete", "paid", int64(199), "usd"}, []any{d.Provider.Session.Status, d.Provider.Session.PaymentStatus, d.Provider.Session.AmountTotal, d.Provider.Session.Currency})
	require.Equal(t, *d.Topup.PaymentIntentId, *d.Provider.Session.PaymentIntent)

	// Paid at the provider, the webhook not delivered: stored pending, provider paid. The
	// admin's read settles nothing; the buyer's read does.
	paidLate := parlortest.CreateTopup(t, bob, "small")
	_, err := a.Topups.Provider().(*payments.Sandbox).Settle(ctx, a.SessionOf(t, paidLate.Id), true)
	require.NoError(t, err)
	res = get(paidLate.Id)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, apiclient.AdminTopupStatusPending, res.JSON200.Topup.Status)
	require.Equal(t, apiclient.ProviderOK, res.JSON200.Provider.State)
	require.Equal(t, "paid", res.JSON200.Provider.Session.PaymentStatus)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob), "the admin's read credited nothing")
	require.Equal(t, apiclient.TopupStatusSucceeded, parlortest.GetTopup(t, bob, paidLate.Id).Status)

	// The provider cannot answer (here: it does not know the session): the stored state
	// and "unavailable". A top-up whose checkout never opened has no session to ask about.
	lost, unopened := parlortest.CreateTopup(t, bob, "small"), parlortest.CreateTopup(t, bob, "small")
	_, err = a.Pool.Exec(ctx, `UPDATE topups SET checkout_session_id = 'cs_unknown_to_the_provider' WHERE id = $1`, lost.Id)
	require.NoError(t, err)
	_, err = a.Pool.Exec(ctx, `UPDATE topups SET checkout_session_id = NULL WHERE id = $1`, unopened.Id)
	require.NoError(t, err)
	res = get(lost.Id)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, apiclient.AdminTopupStatusPending, res.JSON200.Topup.Status)
	require.Equal(t, apiclient.ProviderUnavailable, res.JSON200.Provider.State)
	require.Nil(t, res.JSON200.Provider.Session)
	res = get(unopened.Id)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, apiclient.ProviderNoSession, res.JSON200.Provider.State)
	require.Nil(t, res.JSON200.Topup.CheckoutSessionId)

	res = get(uuid.New())
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 404, "not_found")
	raw, body := a.Do(t, "GET", "/v1/admin/topups/42", "", nil, http.Header{"Authorization": {"Bearer " + a.token}})
	parlortest.RequireProblem(t, raw, body, 400, "invalid_request")
	require.Empty(t, a.auditLog(t), "reading is not an action")
}

// TestAdminLedgerAudit: the audit over the API finds what `parlor ledger check` finds —
// nothing in books written through the money paths, and a succeeded top-up without its
// mint once one is forged in the tables, located by its fields — and each run is in the
// audit log with what it found.
func TestAdminLedgerAudit(t *testing.T) {
	t.Parallel()
	a := startWithAdmin(t)
	bob := a.Register(t, "bob")
	a.BuyCredits(t, bob, "small")
	audit := func() apiclient.LedgerAuditReport {
		t.Helper()
		res, err := a.admin.AuditLedgerWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		return *res.JSON200
	}
	require.Equal(t, apiclient.LedgerAuditReport{Ok: true, Total: 0, Problems: []apiclient.LedgerProblem{}}, audit())

	forged := parlortest.CreateTopup(t, bob, "small")
	_, err := a.Pool.Exec(ctx, `UPDATE topups SET status = 'succeeded', succeeded_at = now() WHERE id = $1`, forged.Id)
	require.NoError(t, err)
	got := audit()
	require.False(t, got.Ok)
	require.Equal(t, 1, got.Total)
	require.Len(t, got.Problems, 1)
	p := got.Problems[0]
	require.Equal(t, "succeeded_without_mint", p.Problem)
	require.Equal(t, forged.Id.String(), p.Fields["topup_id"])
	require.Equal(t, bob.ID.String(), p.Fields["user_id"])
	require.EqualValues(t, 100, p.Fields["credits"])
	require.NotContains(t, p.Fields, "problem")
	// The same problem the reconciliation (and so `parlor ledger check`) reports.
	direct, err := wallet.Reconcile(ctx, a.Pool)
	require.NoError(t, err)
	require.Len(t, direct, 1)
	require.Equal(t, direct[0].Problem, p.Problem)

	log := a.auditLog(t)
	require.Len(t, log, 2)
	for i, ok := range []bool{false, true} {
		require.Equal(t, apiclient.AdminActionLedgerAudit, log[i].Action)
		require.Equal(t, a.adminID, log[i].AdminId)
		require.Nil(t, log[i].TargetUserId)
		require.Equal(t, ok, log[i].Detail["ok"])
	}
	require.EqualValues(t, 1, log[0].Detail["problems"])
	require.Equal(t, map[string]any{"succeeded_without_mint": float64(1)}, log[0].Detail["by_problem"])
}
