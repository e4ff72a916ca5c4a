package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// walletHandlers serve the `wallet` tag.
type walletHandlers struct {
	svc    *wallet.Service
	topups *wallet.Topups
}

func (h walletHandlers) GetWallet(ctx context.Context, _ api.GetWalletRequestObject) (api.GetWalletResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	w, err := h.svc.Get(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	pending, err := h.topups.PendingCount(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	return api.GetWallet200JSONResponse{Balance: w.Balance, Debt: w.Debt, PendingTopups: pending}, nil
}

func (h walletHandlers) ListWalletTransactions(ctx context.Context, req api.ListWalletTransactionsRequestObject) (api.ListWalletTransactionsResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	page, err := h.svc.History(ctx, p.UserID, deref(req.Params.Cursor), limitOf(req.Params.Limit))
	if err != nil {
		return nil, err
	}
	out := api.WalletTransactionPage{Items: make([]api.WalletTransaction, len(page.Items)), NextCursor: optional(page.NextCursor)}
	for i, e := range page.Items {
		out.Items[i] = api.WalletTransaction{
			Id: e.TransactionID, Kind: api.WalletTransactionKind(e.Kind), Amount: e.Amount, BalanceAfter: e.BalanceAfter,
			RoomId: e.RoomID, CounterpartyId: e.Counterparty, TopupId: e.TopupID, TipId: e.TipID,
			Memo: optional(e.Memo), CreatedAt: e.CreatedAt,
		}
	}
	return api.ListWalletTransactions200JSONResponse(out), nil
}

func (h walletHandlers) ListCreditPackages(context.Context, api.ListCreditPackagesRequestObject) (api.ListCreditPackagesResponseObject, error) {
	pkgs := h.svc.Packages()
	out := api.CreditPackageList{Items: make([]api.CreditPackage, len(pkgs))}
	for i, p := range pkgs {
		out.Items[i] = api.CreditPackage{Id: p.ID, Credits: p.Credits, Price: p.Price, Currency: p.Currency}
	}
	return api.ListCreditPackages200JSONResponse(out), nil
}

func (h walletHandlers) SendTip(ctx context.Context, req api.SendTipRequestObject) (api.SendTipResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	tip, _, err := h.svc.SendTip(ctx, req.RoomId, p.UserID, wallet.RequestName(ctx, req.Params.IdempotencyKey), wallet.TipInput{
		RecipientID: req.Body.RecipientId, Amount: req.Body.Amount, Message: deref(req.Body.Message),
	})
	if err != nil {
		return nil, err
	}
	return api.SendTip201JSONResponse{Body: api.RoomTip{
		Id: tip.ID, RoomId: tip.RoomID, SenderId: tip.SenderID, RecipientId: tip.RecipientID,
		Amount: tip.Amount, Message: tip.Message, Seq: tip.Seq, CreatedAt: tip.CreatedAt,
	}}, nil
}

// idempotentRoutes lists the operations of the contract that take an Idempotency-Key
// header, as echo routes ("POST /v1/rooms/:room_id/tips").
func idempotentRoutes(spec *openapi3.T) map[string]bool {
	return routesWhere(spec, func(op *openapi3.Operation) bool {
		for _, p := range op.Parameters {
			if p.Value != nil && p.Value.In == openapi3.ParameterInHeader && strings.EqualFold(p.Value.Name, "Idempotency-Key") {
				return true
			}
		}
		return false
	})
}

// routesWhere returns the routes ("METHOD /echo/:path") of the contract's operations that
// keep says to.
func routesWhere(spec *openapi3.T, keep func(*openapi3.Operation) bool) map[string]bool {
	routes := map[string]bool{}
	for route, op := range operations(spec) {
		if keep(op) {
			routes[route] = true
		}
	}
	return routes
}

// operations maps each operation of the contract by its echo route ("POST /v1/rooms/:room_id/tips").
func operations(spec *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	param := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+param.ReplaceAllString(path, ":$1")] = op
		}
	}
	return ops
}

// idempotency implements the Idempotency-Key of the money-moving POSTs: it runs after the
// request validator (the key is present and well-formed, the caller authenticated) and
// answers a repeat from the store — the first response replayed, 422 for a different
// request under the same key, 409 while the first is still running. The first request's
// response, problems included, is recorded as written; 5xx and 429 are not, so the client
// can retry them with the same key.
func idempotency(keys *wallet.IdempotencyKeys, routes map[string]bool, logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if !routes[req.Method+" "+c.Path()] {
				return next(c)
			}
			p, ok := auth.PrincipalFrom(req.Context())
			key := req.Header.Get("Idempotency-Key")
			if !ok || key == "" {
				return next(c)
			}
			hash, err := fingerprint(c)
			if err != nil {
				return err
			}
			ctx := req.Context()
			// Claimed whether or not the client is still there: a claim committed as the
			// client hangs up must end Finished or Released below, never left locked until
			// it goes stale (the handlers that matter run detached from the request anyway).
			stored, claim, err := keys.Begin(context.WithoutCancel(ctx), p.UserID, key, hash)
			if err != nil {
				return err
			}
			if stored != nil {
				c.Response().Header().Set("Idempotent-Replayed", "true")
				return c.Blob(stored.Status, stored.ContentType, replayBody(ctx, stored))
			}
			c.SetRequest(req.WithContext(wallet.WithClaim(ctx, claim)))

			rec := &recorder{ResponseWriter: c.Response().Writer}
			c.Response().Writer = rec
			if err := next(c); err != nil {
				c.Error(err) // render the problem now, through the recorder
			}
			status := c.Response().Status
			done := context.WithoutCancel(ctx)
			if status >= 500 || status == http.StatusTooManyRequests || !c.Response().Committed {
				err = keys.Release(done, p.UserID, key)
			} else {
				err = keys.Finish(done, p.UserID, key, wallet.StoredResponse{
					Status: status, ContentType: c.Response().Header().Get(echo.HeaderContentType), Body: rec.body.Bytes(),
				})
			}
			if err != nil {
				// The response is out; the key stays in flight until it goes stale.
				logger.ErrorContext(ctx, "store the response of an idempotent request", "error", err.Error())
			}
			return nil
		}
	}
}

// replayBody is a stored response's body; a problem gets this request's id, so it can be
// matched with the X-Request-Id and the log line of the request that received it.
func replayBody(ctx context.Context, stored *wallet.StoredResponse) []byte {
	if stored.ContentType != "application/problem+json" {
		return stored.Body
	}
	var p map[string]any
	if json.Unmarshal(stored.Body, &p) != nil {
		return stored.Body
	}
	p["request_id"] = requestIDFrom(ctx)
	var buf bytes.Buffer
	if jsonEncode(&buf, p) != nil {
		return stored.Body
	}
	return buf.Bytes()
}

// fingerprint identifies a request for its Idempotency-Key: method, route, path parameters
// and the body as canonical JSON (so key order and spacing do not matter).
func fingerprint(c echo.Context) ([]byte, error) {
	req := c.Request()
	raw, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(raw))
	body := raw
	var v any
	if json.Unmarshal(raw, &v) == nil {
		if canon, err := json.Marshal(v); err == nil {
			body = canon
		}
	}
	h := sha256.New()
	h.Write([]byte(req.Method + "\x00" + c.Path() + "\x00"))
	for i, name := range c.ParamNames() {
		h.Write([]byte(name + "=" + c.ParamValues()[i] + "\x00"))
	}
	h.Write(body)
	return h.Sum(nil), nil
}

// recorder keeps a copy of what a handler writes.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (h walletHandlers) CreateTopup(ctx context.Context, req api.CreateTopupRequestObject) (api.CreateTopupResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	t, err := h.topups.Create(ctx, p.UserID, req.Body.PackageId)
	if err != nil {
		return nil, err
	}
	return api.CreateTopup201JSONResponse{Body: toAPITopup(t)}, nil
}

func (h walletHandlers) GetTopup(ctx context.Context, req api.GetTopupRequestObject) (api.GetTopupResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	t, err := h.topups.Get(ctx, p.UserID, req.TopupId)
	if err != nil {
		return nil, err
	}
	return api.GetTopup200JSONResponse(toAPITopup(t)), nil
}

func toAPITopup(t wallet.Topup) api.Topup {
	return api.Topup{
		Id: t.ID, Status: api.TopupStatus(t.Status), PackageId: t.PackageID, Credits: t.Credits, Amount: t.Amount,
		Currency: t.Currency, CheckoutUrl: t.CheckoutURL, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
	}
}

// stripeWebhookPath is where Stripe (and the sandbox) delivers events.
const stripeWebhookPath = "/v1/webhooks/stripe"

// maxWebhookBody caps a webhook's body in place of the API's body limit (APP_BODY_LIMIT,
// which the webhook skips): Stripe's events are far smaller, but a checkout session with
// many line items or long metadata exceeds the API's 64 KiB.
const maxWebhookBody = 256 << 10

// stripeWebhook receives provider events on the raw body (the signature covers its exact
// bytes, so it bypasses the JSON validator): a bad signature or stale timestamp is a 400
// and stores nothing; a new event is stored with its processing job in one transaction.
// An event of another API version is stored like any other, unless it is about a checkout
// session that cannot be read from it: then 422 unsupported_api_version, naming both
// versions, and nothing is stored (Stripe retries it once the endpoint's version is fixed).
func stripeWebhook(topups *wallet.Topups, secret string, metrics *webhookMetrics) echo.HandlerFunc {
	return func(c echo.Context) error {
		tooLarge := func() error {
			metrics.received.WithLabelValues("too_large").Inc()
			return apperr.New(apperr.PayloadTooLarge, "the event is larger than %d KiB", maxWebhookBody>>10)
		}
		if c.Request().ContentLength > maxWebhookBody {
			return tooLarge()
		}
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxWebhookBody+1))
		if err != nil {
			return err
		}
		if len(body) > maxWebhookBody {
			return tooLarge() // sent without a Content-Length, or a false one
		}
		ev, err := payments.VerifyWebhook(body, c.Request().Header.Get("Stripe-Signature"), secret)
		var version *payments.APIVersionError
		switch {
		case errors.As(err, &version):
			metrics.apiVersionMismatches.Inc()
			metrics.received.WithLabelValues("unsupported_api_version").Inc()
			return &apperr.Error{Code: apperr.UnsupportedAPIVersion, Err: err, Message: fmt.Sprintf(
				"the %s event is of Stripe API version %s and its checkout session cannot be read in %s, the version Parlor expects: "+
					"set the webhook endpoint's API version to %s in Stripe", version.Type, version.Got, version.Want, version.Want)}
		case errors.Is(err, payments.ErrNotAnEvent):
			metrics.received.WithLabelValues("invalid").Inc()
			return &apperr.Error{Code: apperr.Invalid, Message: "the body is correctly signed but is not a Stripe event (no id or type)", Err: err}
		case err != nil:
			metrics.received.WithLabelValues("invalid").Inc()
			return &apperr.Error{Code: apperr.Invalid, Message: "the Stripe-Signature does not verify (wrong secret, altered body or a timestamp over five minutes old)", Err: err}
		}
		if ev.OtherAPIVersion() {
			metrics.apiVersionMismatches.Inc()
		}
		dup, err := topups.ReceiveWebhook(c.Request().Context(), ev)
		if err != nil {
			return &apperr.Error{Code: apperr.Unavailable, Message: "the event could not be stored; retry later", RetryAfter: 10 * time.Second, Err: err}
		}
		outcome := "stored"
		if dup {
			outcome = "duplicate"
		}
		metrics.received.WithLabelValues(outcome).Inc()
		return c.JSON(http.StatusOK, api.WebhookReceipt{Received: true, Duplicate: &dup})
	}
}

type webhookMetrics struct {
	received             *prometheus.CounterVec
	apiVersionMismatches prometheus.Counter
}

func newWebhookMetrics(reg prometheus.Registerer) *webhookMetrics {
	m := &webhookMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parlor_webhook_events_received_total",
			Help: "Payment provider webhook deliveries, by outcome (stored, duplicate, invalid, unsupported_api_version, too_large).",
		}, []string{"outcome"}),
		apiVersionMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parlor_webhook_api_version_mismatches_total",
			Help: "Verified webhook events of another Stripe API version than the one Parlor expects, stored or refused.",
		}),
	}
	reg.MustRegister(m.received, m.apiVersionMismatches)
	return m
}

// sandboxPage is the sandbox provider's checkout page: plain HTML, no script.
var sandboxPage = template.Must(template.New("checkout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parlor sandbox checkout</title></head>
<body>
<h1>Sandbox checkout</h1>
<p>This page plays Stripe Checkout offline. No real money moves.</p>
<p>Session <code>{{.ID}}</code>: <strong id="status">{{.Status}}</strong>, payment <strong id="payment">{{.PaymentStatus}}</strong>{{with .PaymentIntentStatus}}, payment intent <strong id="intent">{{.}}</strong>{{end}}.</p>
{{if eq .Status "open"}}
<form method="post" action="/sandbox/checkout/{{.ID}}/pay"><button type="submit">Pay</button></form>
<form method="post" action="/sandbox/checkout/{{.ID}}/pay-delayed-fail"><button type="submit">Pay with a delayed method that fails</button></form>
<form method="post" action="/sandbox/checkout/{{.ID}}/cancel"><button type="submit">Cancel</button></form>
<p>A delayed method (SEPA Debit, ACH, …) completes the checkout unpaid while the payment is
processing, then fails: the top-up ends <code>failed</code>, with no credits.</p>
{{else}}
<p><a href="/">Back to Parlor</a></p>
{{end}}
</body></html>
`))

// sandboxStep is one thing the payer does on the sandbox page, or that follows it.
type sandboxStep func(ctx context.Context, id string) (payments.SandboxOutcome, error)

// sandboxRoutes serve the sandbox's checkout page. Each button runs its steps in order and
// delivers each step's Stripe-shaped, signed event to the real webhook endpoint (in
// process) before the next: "Pay with a delayed method that fails" sends
// checkout.session.completed (unpaid, the payment processing), then
// checkout.session.async_payment_failed, as Stripe does.
func sandboxRoutes(e *echo.Echo, sandbox *payments.Sandbox, secret string) {
	show := func(c echo.Context) error {
		s, err := sandbox.GetSession(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err // 404 for an unknown session, 500 when the database fails
		}
		c.Response().Header().Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
		c.Response().WriteHeader(http.StatusOK)
		return sandboxPage.Execute(c.Response(), s)
	}
	deliver := func(ctx context.Context, event []byte) error {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, stripeWebhookPath, bytes.NewReader(event))
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		req.Header.Set("Stripe-Signature", payments.SignWebhook(event, secret, time.Now()))
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("sandbox webhook delivery answered %d: %s", rec.Code, rec.Body.String())
		}
		return nil
	}
	press := func(steps ...sandboxStep) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx, id := c.Request().Context(), c.Param("id")
			for _, step := range steps {
				out, err := step(ctx, id)
				if err != nil {
					return err
				}
				if out.Event != nil {
					if err := deliver(ctx, out.Event); err != nil {
						return err
					}
				}
			}
			return c.Redirect(http.StatusSeeOther, "/sandbox/checkout/"+id)
		}
	}
	settle := func(pay bool) sandboxStep {
		return func(ctx context.Context, id string) (payments.SandboxOutcome, error) {
			return sandbox.Settle(ctx, id, pay)
		}
	}
	failDelayed := func(ctx context.Context, id string) (payments.SandboxOutcome, error) {
		return sandbox.FinishDelayedPayment(ctx, id, false)
	}
	e.GET("/sandbox/checkout/:id", show)
	e.POST("/sandbox/checkout/:id/pay", press(settle(true)))
	e.POST("/sandbox/checkout/:id/pay-delayed-fail", press(sandbox.BeginDelayedPayment, failDelayed))
	e.POST("/sandbox/checkout/:id/cancel", press(settle(false)))
}
