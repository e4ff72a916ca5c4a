package httpapi_test

import (
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
	return adminStack{Server: s, adminID: adminID, admin: s.NewClient(parlortest.Bearer(token))}
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
