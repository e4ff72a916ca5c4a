package payments_test

import (
	"bufio"
	"errors"
	"go/build"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82"

	"github.com/parlor-dev/parlor/internal/payments"
)

// stripeMockModule is the stripe-mock the tests run; Taskfile.yml's stripe-mock task
// installs the same version.
const stripeMockModule = "github.com/stripe/stripe-mock@v0.203.0"

// stripeMockBinary finds stripe-mock on PATH, else where `go install` puts it.
func stripeMockBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	var dirs []string
	add := func(d string) {
		if d != "" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		if lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n"); len(lines) == 2 {
			add(lines[0])
			for _, gp := range filepath.SplitList(lines[1]) {
				add(filepath.Join(gp, "bin"))
			}
		}
	}
	add(os.Getenv("GOBIN"))
	add(filepath.Join(build.Default.GOPATH, "bin"))
	for _, d := range dirs {
		p := filepath.Join(d, "stripe-mock")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("stripe-mock is not installed (looked on PATH and in %s).\n"+
		"Install it with:  go install %s\n"+
		"(`go tool task test` and .ci/run install it when missing.)", strings.Join(dirs, ", "), stripeMockModule)
	return ""
}

// startStripeMock runs stripe-mock on a loopback port the system picks (its HTTPS listener
// too, which it would otherwise open on every interface at :12112) until the test ends, and
// returns its base URL.
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin := stripeMockBinary(t)
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "start %s", bin)
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	addr := make(chan string, 1)
	var outMu sync.Mutex
	var out strings.Builder
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			outMu.Lock()
			out.WriteString(line + "\n")
			outMu.Unlock()
			if a, ok := strings.CutPrefix(line, "Listening for HTTP at address: "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-exited:
	case <-time.After(30 * time.Second):
	}
	outMu.Lock()
	defer outMu.Unlock()
	t.Fatalf("%s did not start listening:\n%s", bin, out.String())
	return ""
}

// recordedCall is one request the provider sent stripe-mock, and its answer.
type recordedCall struct {
	Method, Path, Query, IdempotencyKey, StripeVersion string
	Status                                             int
}

// recordingProxy sits between the provider and stripe-mock and records each exchange.
func recordingProxy(t *testing.T, target string) (string, func() []recordedCall) {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	var mu sync.Mutex
	var calls []recordedCall
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(res *http.Response) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, recordedCall{Method: res.Request.Method, Path: res.Request.URL.Path, Query: res.Request.URL.RawQuery,
			IdempotencyKey: res.Request.Header.Get("Idempotency-Key"), StripeVersion: res.Request.Header.Get("Stripe-Version"),
			Status: res.StatusCode})
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL, func() []recordedCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]recordedCall(nil), calls...)
	}
}

// TestStripeProviderAgainstStripeMock sends the stripe provider's three requests — create a
// Checkout Session under the top-up's idempotency key, retrieve a session with its payment
// intent expanded, refund a payment intent under the refund's key — to stripe-mock v0.203.0, which validates each request
// against Stripe's OpenAPI spec (a malformed or unknown parameter is refused with 400) and
// answers with its fixtures. stripe-mock is stateless, so this checks request shape and
// that the provider parses Stripe's responses; what the provider sends, field by field, is
// TestStripeCheckoutRequestShape's job.
func TestStripeProviderAgainstStripeMock(t *testing.T) {
	t.Parallel()
	mock := startStripeMock(t)
	proxy, calls := recordingProxy(t, mock)
	ctx := t.Context()

	// stripe-mock does refuse a malformed request: the check below means something.
	sc := stripe.NewClient("sk_test_parlor", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(mock), MaxNetworkRetries: stripe.Int64(0), LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})))
	_, err := sc.V1CheckoutSessions.Create(ctx, &stripe.CheckoutSessionCreateParams{Mode: stripe.String("bogus")})
	var serr *stripe.Error
	require.True(t, errors.As(err, &serr), "stripe-mock accepted mode=bogus: %v", err)
	require.Equal(t, http.StatusBadRequest, serr.HTTPStatusCode, "stripe-mock refuses an invalid parameter")

	p := payments.NewStripe("sk_test_parlor", proxy)
	topup, user := uuid.New(), uuid.New()
	in := payments.CheckoutInput{
		TopupID: topup, UserID: user, Credits: 550, Amount: 999, Currency: "usd", ProductName: "550 Parlor credits",
		SuccessURL: "https://parlor.example/?topup=" + topup.String() + "&result=success",
		CancelURL:  "https://parlor.example/?topup=" + topup.String() + "&result=cancel",
		ExpiresAt:  time.Now().Add(time.Hour),
	}
	created, err := p.CreateCheckout(ctx, in)
	require.NoError(t, err, "stripe-mock refused the checkout session the provider creates")
	require.True(t, strings.HasPrefix(created.ID, "cs_"), "session id %q", created.ID)
	require.True(t, strings.HasPrefix(created.URL, "https://checkout.stripe.com/"), "checkout url %q", created.URL)
	require.Equal(t, payments.SessionOpen, created.Status)
	require.Equal(t, payments.PaymentUnpaid, created.PaymentStatus)
	require.False(t, created.Paid())
	require.False(t, created.ExpiresAt.IsZero())

	// Retrieving echoes the id asked for; the rest is the fixture: an open, unpaid session
	// with a payment intent, which the provider reads as neither paid nor failed. The
	// intent comes expanded (stripe-mock expands what it is asked to), status included.
	got, err := p.GetSession(ctx, "cs_test_parlor_1")
	require.NoError(t, err)
	require.Equal(t, "cs_test_parlor_1", got.ID)
	require.Equal(t, payments.SessionOpen, got.Status)
	require.Equal(t, payments.PaymentUnpaid, got.PaymentStatus)
	require.False(t, got.Paid())
	require.False(t, got.Failed())
	require.True(t, strings.HasPrefix(got.PaymentIntent, "pi_"), "payment intent %q", got.PaymentIntent)
	require.NotEmpty(t, got.PaymentIntentStatus, "the payment intent was not expanded")
	require.Equal(t, int64(1234567890), got.ExpiresAt.Unix())
	require.NotEmpty(t, got.URL)

	refundKey := "topup:" + topup.String() + ":refund:1"
	require.NoError(t, p.Refund(ctx, got.PaymentIntent, 999, refundKey), "stripe-mock refused the provider's refund")

	// Each request reached stripe-mock once, was accepted, and every POST carried its
	// deterministic idempotency key.
	rec := calls()
	require.Len(t, rec, 3, "%+v", rec)
	require.Equal(t, recordedCall{Method: "POST", Path: "/v1/checkout/sessions", IdempotencyKey: in.IdempotencyKey(),
		StripeVersion: stripe.APIVersion, Status: 200}, rec[0])
	require.Equal(t, "GET", rec[1].Method)
	require.Equal(t, "/v1/checkout/sessions/cs_test_parlor_1", rec[1].Path)
	query, err := url.ParseQuery(rec[1].Query)
	require.NoError(t, err)
	require.Equal(t, []string{"payment_intent"}, query["expand[0]"], "GetSession must expand the payment intent: %q", rec[1].Query)
	require.Equal(t, 200, rec[1].Status)
	require.Equal(t, recordedCall{Method: "POST", Path: "/v1/refunds", IdempotencyKey: refundKey,
		StripeVersion: stripe.APIVersion, Status: 200}, rec[2])
}
