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
