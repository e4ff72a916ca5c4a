package httpapi

import (
	"context"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// adminHandlers serve the `admin` tag: operators named by APP_ADMIN_USER_IDS, everyone else
// 403 (401 without a token, from the validator).
type adminHandlers struct {
	svc    *wallet.Admin
	admins map[uuid.UUID]bool
}

// actor is the caller as an admin, or forbidden.
func (h adminHandlers) actor(ctx context.Context, reason string) (wallet.Actor, error) {
	p, err := principal(ctx)
	if err != nil {
		return wallet.Actor{}, err
	}
	if !h.admins[p.UserID] {
		return wallet.Actor{}, apperr.New(apperr.Forbidden, "this operation needs the admin role")
	}
	return wallet.Actor{AdminID: p.UserID, Reason: reason}, nil
}

func (h adminHandlers) RefundTopup(ctx context.Context, req api.RefundTopupRequestObject) (api.RefundTopupResponseObject, error) {
	reason := ""
	if req.Body != nil {
		reason = deref(req.Body.Reason)
	}
	by, err := h.actor(ctx, reason)
	if err != nil {
		return nil, err
	}
	t, err := h.svc.Refund(ctx, by, req.TopupId)
	if err != nil {
		return nil, err
	}
	return api.RefundTopup200JSONResponse{Body: toAPITopup(t)}, nil
}

func (h adminHandlers) ListAdminActions(ctx context.Context, req api.ListAdminActionsRequestObject) (api.ListAdminActionsResponseObject, error) {
	if _, err := h.actor(ctx, ""); err != nil {
		return nil, err
	}
	page, err := h.svc.AuditLog(ctx, deref(req.Params.Cursor), limitOf(req.Params.Limit))
	if err != nil {
		return nil, err
	}
	out := api.AdminActionPage{Items: make([]api.AdminAction, len(page.Items)), NextCursor: optional(page.NextCursor)}
	for i, a := range page.Items {
		out.Items[i] = api.AdminAction{
			Id: a.ID, AdminId: a.AdminID, Action: api.AdminActionAction(a.Action), TargetUserId: a.TargetUserID,
			TargetTopupId: a.TargetTopupID, Reason: a.Reason, Detail: a.Detail, CreatedAt: a.CreatedAt,
		}
	}
	return api.ListAdminActions200JSONResponse(out), nil
}

func (h adminHandlers) GetUserWalletAdmin(ctx context.Context, req api.GetUserWalletAdminRequestObject) (api.GetUserWalletAdminResponseObject, error) {
	if _, err := h.actor(ctx, ""); err != nil {
		return nil, err
	}
	w, err := h.svc.Wallet(ctx, req.UserId)
	if err != nil {
		return nil, err
	}
	out := api.AdminWallet{
		UserId: w.UserID, Balance: w.Balance, Debt: w.Debt, LedgerBalance: w.LedgerBalance, Floor: w.Floor,
		PendingTopups: w.PendingTopups, Topups: make([]api.AdminTopup, len(w.Topups)),
	}
	for i, t := range w.Topups {
		out.Topups[i] = toAPIAdminTopup(t)
	}
	return api.GetUserWalletAdmin200JSONResponse(out), nil
}

func toAPIAdminTopup(t wallet.TopupRecord) api.AdminTopup {
	out := api.AdminTopup{
		Id: t.ID, UserId: t.UserID, Status: api.AdminTopupStatus(t.Status), PackageId: t.PackageID, Credits: t.Credits,
		Amount: t.Amount, Currency: t.Currency, CheckoutUrl: t.CheckoutURL, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		AmountRefunded: t.AmountRefunded, CheckoutSessionId: optional(t.CheckoutSessionID), PaymentIntentId: optional(t.PaymentIntentID),
		Disputes: make([]api.TopupDispute, len(t.Disputes)),
	}
	for i, d := range t.Disputes {
		out.Disputes[i] = api.TopupDispute{Id: d.ID, Amount: d.Amount, Status: api.TopupDisputeStatus(d.Status), Credits: d.Credits,
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	}
	return out
}

func (h adminHandlers) AdjustUserWallet(ctx context.Context, req api.AdjustUserWalletRequestObject) (api.AdjustUserWalletResponseObject, error) {
	by, err := h.actor(ctx, req.Body.Reason)
	if err != nil {
		return nil, err
	}
	adj, err := h.svc.Adjust(ctx, by, req.UserId, wallet.RequestName(ctx, req.Params.IdempotencyKey), req.Body.Amount)
	if err != nil {
		return nil, err
	}
	return api.AdjustUserWallet201JSONResponse{Body: api.WalletAdjustment{
		Id: adj.ID, UserId: adj.UserID, Amount: adj.Amount, Reason: adj.Reason, TransactionId: adj.TransactionID,
		BalanceAfter: adj.BalanceAfter, CreatedAt: adj.CreatedAt,
	}}, nil
}

func (h adminHandlers) GetTopupAdmin(ctx context.Context, req api.GetTopupAdminRequestObject) (api.GetTopupAdminResponseObject, error) {
	if _, err := h.actor(ctx, ""); err != nil {
		return nil, err
	}
	v, err := h.svc.Topup(ctx, req.TopupId)
	if err != nil {
		return nil, err
	}
	out := api.AdminTopupDetail{Topup: toAPIAdminTopup(v.Topup), Provider: api.ProviderCheck{State: api.ProviderCheckState(v.Provider)}}
	if s := v.Session; s != nil {
		out.Provider.Session = &api.ProviderSession{
			Id: s.ID, Status: s.Status, PaymentStatus: s.PaymentStatus, PaymentIntent: optional(s.PaymentIntent),
			PaymentIntentStatus: optional(s.PaymentIntentStatus), AmountTotal: s.AmountTotal, Currency: s.Currency,
		}
		if !s.ExpiresAt.IsZero() {
			out.Provider.Session.ExpiresAt = &s.ExpiresAt
		}
	}
	return api.GetTopupAdmin200JSONResponse(out), nil
}

func (h adminHandlers) AuditLedger(ctx context.Context, _ api.AuditLedgerRequestObject) (api.AuditLedgerResponseObject, error) {
	by, err := h.actor(ctx, "")
	if err != nil {
		return nil, err
	}
	audit, err := h.svc.AuditLedger(ctx, by)
	if err != nil {
		return nil, err
	}
	out := api.LedgerAuditReport{Ok: audit.Total == 0, Total: audit.Total, Problems: make([]api.LedgerProblem, len(audit.Problems))}
	for i, d := range audit.Problems {
		out.Problems[i] = api.LedgerProblem{Problem: d.Problem, Fields: d.JSONFields()}
	}
	return api.AuditLedger200JSONResponse(out), nil
}
