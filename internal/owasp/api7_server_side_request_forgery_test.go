// API7:2023 Server Side Request Forgery.
//
// Parlor makes outgoing requests in one place: the payment provider's API (Stripe, at the
// configured STRIPE_API_URL or Stripe's own host), to open and re-read checkout sessions and
// to refund. The URLs in play are the checkout's return URLs, which Stripe sends the
// buyer's browser to, the realtime URL handed to clients, and the server's own redirects;
// and a token or a webhook could name a URL for the server to fetch (jku, x5u, a link in an
// event). SSRF would be a caller steering any of these: making the server fetch a URL of
// theirs, or Stripe and the server redirect a buyer to their site (an open redirect
// through the return URLs).
//
// This file proves no caller can: TestCheckoutReturnURLsComeFromThePublicURLOnly runs the
// real Stripe provider against a recording stand-in for Stripe's API and sends top-ups with
// hostile Host, X-Forwarded-Host, Origin and Referer headers and return-URL fields;
// TestTheRealtimeURLComesFromThePublicURLOnly does the same for the ticket's URL;
// TestTokensAndWebhooksNeverMakeTheServerFetch counts requests to a URL that forged
// tokens (jku, x5u, a URL as kid) and a signed webhook event name; TestRedirectsStayOnSite
// follows every redirect the server answers with.
package owasp_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// hostile are the request headers a caller could use to steer a URL the server builds.
var hostile = http.Header{
	"X-Forwarded-Host":  {"evil.example"},
	"X-Forwarded-Proto": {"https"},
	"Forwarded":         {"host=evil.example;proto=https"},
	"Origin":            {"https://evil.example"},
	"Referer":           {"https://evil.example/return"},
}

// hostileRequest sends an authenticated request as u with every hostile header and Host:
// evil.example.
func hostileRequest(t *testing.T, s *parlortest.Server, u *parlortest.User, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	h := hostile.Clone()
	h.Set("Authorization", "Bearer "+u.AccessToken)
	h.Set("Idempotency-Key", uuid.NewString())
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	req.Host = "evil.example"
	res, err := s.HTTPClient().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, res.Body)
	require.NoError(t, err)
	return res, []byte(b.String())
}

// fakeStripe stands in for Stripe's API: it records the checkout sessions opened and
// answers as Stripe would.
type fakeStripe struct {
	mu    sync.Mutex
	forms []url.Values
}

func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id := "cs_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if r.Method == http.MethodPost && r.URL.Path == "/v1/checkout/sessions" {
		f.mu.Lock()
		f.forms = append(f.forms, r.PostForm)
		f.mu.Unlock()
	} else {
		id = strings.TrimPrefix(r.URL.Path, "/v1/checkout/sessions/")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": id, "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/" + id,
		"status": "open", "payment_status": "unpaid", "expires_at": time.Now().Add(time.Hour).Unix(),
	})
}

func TestCheckoutReturnURLsComeFromThePublicURLOnly(t *testing.T) {
	t.Parallel()
	stripe := &fakeStripe{}
	api := httptest.NewServer(stripe)
	t.Cleanup(api.Close)
	cfg := parlortest.Config(t)
	cfg.PublicURL = "https://parlor.example"
	cfg.StripeSecretKey, cfg.StripeAPIURL = "sk_test_owasp", api.URL
	s := parlortest.Start(t, cfg)
	bob := s.Register(t, "bob")

	res, body := hostileRequest(t, s, bob, http.MethodPost, "/v1/wallet/topups", `{"package_id":"small"}`)
	require.Equal(t, http.StatusCreated, res.StatusCode, string(body))
	var tp apiclient.Topup
	require.NoError(t, json.Unmarshal(body, &tp))
	require.True(t, strings.HasPrefix(tp.CheckoutUrl, "https://checkout.stripe.com/"), tp.CheckoutUrl)

	stripe.mu.Lock()
	require.Len(t, stripe.forms, 1)
	form := stripe.forms[0]
	stripe.mu.Unlock()
	back := "https://parlor.example/?topup=" + tp.Id.String()
	require.Equal(t, back+"&result=success", form.Get("success_url"))
	require.Equal(t, back+"&result=cancel", form.Get("cancel_url"))

	// Return URLs cannot be sent at all.
	for _, field := range []string{"success_url", "cancel_url", "return_url", "redirect_url"} {
		res, body := hostileRequest(t, s, bob, http.MethodPost, "/v1/wallet/topups",
			parlortest.JSON(map[string]string{"package_id": "small", field: "https://evil.example/"}))
		parlortest.RequireProblem(t, res, body, http.StatusBadRequest, "invalid_request")
	}
	stripe.mu.Lock()
	defer stripe.mu.Unlock()
	require.Len(t, stripe.forms, 1, "a refused top-up opened a checkout session")
}

func TestTheRealtimeURLComesFromThePublicURLOnly(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.PublicURL = "https://parlor.example"
	s := parlortest.Start(t, cfg)
	bob := s.Register(t, "bob")
	res, body := hostileRequest(t, s, bob, http.MethodPost, "/v1/realtime/tickets", "")
	require.Equal(t, http.StatusCreated, res.StatusCode, string(body))
	var ticket apiclient.RealtimeTicket
	require.NoError(t, json.Unmarshal(body, &ticket))
	require.True(t, strings.HasPrefix(ticket.Url, "wss://parlor.example/v1/realtime?"), ticket.Url)
}

func TestTokensAndWebhooksNeverMakeTheServerFetch(t *testing.T) {
	t.Parallel()
	var fetched atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetched.Add(1)
		http.Error(w, "nothing here", http.StatusNotFound)
	}))
	t.Cleanup(attacker.Close)
	s := parlortest.New(t)
	bob := s.Register(t, "bob")

	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	claims := jwt.MapClaims{"iss": s.Config.PublicURL, "aud": "parlor-api", "sub": bob.ID.String(), "sid": uuid.NewString(),
		"jti": uuid.NewString(), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	for name, header := range map[string]map[string]any{
		"jku":        {"jku": attacker.URL + "/jwks.json", "kid": "attacker"},
		"x5u":        {"x5u": attacker.URL + "/cert.pem", "kid": "attacker"},
		"kid as URL": {"kid": attacker.URL + "/key"},
	} {
		header["typ"] = "at+jwt"
		tok := forge(t, jwt.SigningMethodEdDSA, key, header, claims)
		res, body := s.Do(t, http.MethodGet, "/v1/me", "", nil, http.Header{"Authorization": {"Bearer " + tok}})
		parlortest.RequireProblem(t, res, body, http.StatusUnauthorized, "unauthorized")
		require.Zero(t, fetched.Load(), "a token's %s made the server fetch", name)
	}

	// A signed event full of links to the attacker: processed, and none followed.
	tp := parlortest.CreateTopup(t, bob, "small")
	var ev map[string]any
	require.NoError(t, json.Unmarshal(s.PaidCheckoutEvent(t, tp.Id), &ev))
	obj := ev["data"].(map[string]any)["object"].(map[string]any)
	for _, field := range []string{"url", "success_url", "cancel_url", "return_url", "receipt_url", "hosted_invoice_url"} {
		obj[field] = attacker.URL + "/" + field
	}
	payload, err := json.Marshal(ev)
	require.NoError(t, err)
	status, body := s.DeliverWebhook(t, payload, time.Now(), parlortest.WebhookSecret)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Eventually(t, func() bool { return parlortest.BalanceOf(t, bob) == tp.Credits }, 15*time.Second, 20*time.Millisecond)
	require.Zero(t, fetched.Load(), "a webhook's links made the server fetch")
}

// TestRedirectsStayOnSite: every redirect the server answers with points at a path of its
// own, whatever the Host header says and whatever an id in the path holds.
func TestRedirectsStayOnSite(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	tp := parlortest.CreateTopup(t, bob, "small")
	page, err := url.Parse(tp.CheckoutUrl)
	require.NoError(t, err)
	noFollow := s.HTTPClient()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	send := func(method, path string) *http.Response {
		req, err := http.NewRequest(method, s.URL+path, nil)
		require.NoError(t, err)
		req.Host = "evil.example"
		req.Header = hostile.Clone()
		res, err := noFollow.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		return res
	}
	for _, tc := range []struct{ method, path, location string }{
		{"GET", "/docs", "/docs/"},
		{"POST", page.Path + "/cancel", page.Path},
	} {
		res := send(tc.method, tc.path)
		require.Contains(t, []int{301, 302, 303, 307, 308}, res.StatusCode, tc.path)
		require.Equal(t, tc.location, res.Header.Get("Location"), tc.path)
	}
	// Ids that would make the Location leave the site are no session, and no redirect.
	for _, id := range []string{"%2F%2Fevil.example", "..%2F..%2F%2Fevil.example", "%5C%5Cevil.example", "cs_sbx_x%0D%0ALocation:%20https:%2F%2Fevil.example"} {
		for _, button := range []string{"/pay", "/cancel", "/pay-delayed-fail"} {
			res := send("POST", "/sandbox/checkout/"+id+button)
			require.Equal(t, http.StatusNotFound, res.StatusCode, id+button)
			require.Empty(t, res.Header.Get("Location"), id+button)
		}
	}
	for _, path := range []string{"//evil.example", "//evil.example/docs", "/\\evil.example"} {
		res := send("GET", path)
		require.Empty(t, res.Header.Get("Location"), path)
	}
}
