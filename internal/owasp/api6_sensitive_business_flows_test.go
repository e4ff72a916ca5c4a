// API6:2023 Unrestricted Access to Sensitive Business Flows.
//
// For Parlor the flows worth automating against are signing up (fake accounts, spam), and
// everything that moves money: buying credits (a top-up opens a payment-provider checkout
// session), paid-room entry and tips. Unrestricted would mean a script could open accounts
// or checkout sessions without bound, replay a purchase, or be credited without paying.
//
// This file proves: TestSignUpIsThrottledPerClientIP holds sign-ups to APP_REGISTER_RATE_IP
// (a spoofed X-Forwarded-For buys no new budget); TestATopupCannotBeReplayedOrCreditedByTheRedirect
// replays a top-up under its Idempotency-Key, reuses the key for another package, omits it,
// and follows the success redirect without paying; TestTopupsAreBoundedByTheWriteRate holds
// top-up creation to APP_RATE_WRITE, with a refused one opening no checkout session.
// Elsewhere, where those rules live: tips per sender (APP_TIP_RATE) and their size
// (APP_TIP_MAX) are internal/httpapi's TestTipRules; a paid room charges once,
// TestPaidRoomEntryChargesOnce; rooms per account, TestRoomLimitPerAccount; paying twice
// credits once, TestSandboxTopupEndToEnd.
package owasp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

func TestSignUpIsThrottledPerClientIP(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.RegisterRateIP = config.Rate{N: 3, Window: 10 * time.Minute}
	s := parlortest.Start(t, cfg)
	register := func(header http.Header) (*http.Response, []byte, string) {
		email := "bot-" + uuid.NewString()[:8] + "@example.com"
		body := parlortest.JSON(map[string]string{"email": email, "password": "password1", "display_name": "Bot"})
		res, b := s.Do(t, http.MethodPost, "/v1/auth/register", "application/json", strings.NewReader(body), header)
		return res, b, email
	}
	var first string
	for i := range 3 {
		res, b, email := register(nil)
		require.Equal(t, http.StatusCreated, res.StatusCode, "sign-up %d: %s", i+1, b)
		if i == 0 {
			first = email
		}
	}
	for _, h := range []http.Header{nil, {"X-Forwarded-For": {"203.0.113.7"}}, {"X-Real-Ip": {"203.0.113.8"}}} {
		res, b, email := register(h)
		requireRateLimited(t, res, b, 10*time.Minute)
		require.Zero(t, s.Count(t, "SELECT count(*) FROM users WHERE email = $1", email), "a throttled sign-up created an account")
	}
	require.Equal(t, 3, s.Count(t, "SELECT count(*) FROM users"))
	// The accounts made still sign in: sign-up and sign-in are counted apart.
	login, err := s.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: first, Password: "password1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, login.StatusCode(), string(login.Body))
}

func TestATopupCannotBeReplayedOrCreditedByTheRedirect(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob := s.Register(t, "bob")
	create := func(key, pkg string) (*http.Response, []byte) {
		h := http.Header{"Authorization": {"Bearer " + bob.AccessToken}}
		if key != "" {
			h.Set("Idempotency-Key", key)
		}
		return s.Do(t, http.MethodPost, "/v1/wallet/topups", "application/json", strings.NewReader(parlortest.JSON(map[string]string{"package_id": pkg})), h)
	}
	topups := func() int { return s.Count(t, "SELECT count(*) FROM topups WHERE user_id = $1", bob.ID) }

	res, b := create("", "small")
	parlortest.RequireProblem(t, res, b, http.StatusBadRequest, "idempotency_key_required")
	require.Zero(t, topups())

	key := uuid.NewString()
	res, first := create(key, "small")
	require.Equal(t, http.StatusCreated, res.StatusCode, string(first))
	for range 3 {
		res, again := create(key, "small")
		require.Equal(t, http.StatusCreated, res.StatusCode, string(again))
		require.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
		require.JSONEq(t, string(first), string(again), "a replay is the first answer")
	}
	res, b = create(key, "large")
	parlortest.RequireProblem(t, res, b, http.StatusUnprocessableEntity, "idempotency_key_reused")
	require.Equal(t, 1, topups(), "a replayed purchase opened another")
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM sandbox_sessions"), "a replayed purchase opened another checkout")

	// Coming back on the success URL without paying credits nothing.
	var tp apiclient.Topup
	require.NoError(t, json.Unmarshal(first, &tp))
	res, _ = s.Do(t, http.MethodGet, "/?topup="+url.QueryEscape(tp.Id.String())+"&result=success", "", nil, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, apiclient.TopupStatusPending, parlortest.GetTopup(t, bob, tp.Id).Status)
	require.Zero(t, parlortest.BalanceOf(t, bob))
}

// TestTopupsAreBoundedByTheWriteRate: opening checkout sessions is held to the documented
// write budget per user (APP_RATE_WRITE); the refused request writes no top-up and opens no
// checkout session. (No bound on how many top-ups may be pending at once beyond this rate
// and the one-hour checkout expiry is documented, nor enforced.)
func TestTopupsAreBoundedByTheWriteRate(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.RateWrite = config.Rate{N: 3, Window: time.Minute}
	s := parlortest.Start(t, cfg)
	bob := s.Register(t, "bob")
	for range 3 {
		parlortest.CreateTopup(t, bob, "small")
	}
	res, b := s.As(t, bob, http.MethodPost, "/v1/wallet/topups", `{"package_id":"small"}`)
	requireRateLimited(t, res, b, time.Minute)
	require.Equal(t, 3, s.Count(t, "SELECT count(*) FROM topups"))
	require.Equal(t, 3, s.Count(t, "SELECT count(*) FROM sandbox_sessions"))
	w, err := bob.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), w.JSON200.PendingTopups)
}
