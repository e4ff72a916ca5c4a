package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// syncBuffer collects a child process's output from its copying goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// browserPrereqs returns the repository root and the Chromium to use, failing the test (never
// skipping it) with how to install whatever is missing.
func browserPrereqs(t *testing.T) (root, chromium string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node is not on PATH: install Node.js 20 or newer")
	}
	chromium = os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, "no Chromium at "+chromium+": run scripts/dev-services.sh (it installs it), or as root `apt-get install -y chromium`, or set CHROMIUM_PATH")
	}
	if _, err := os.Stat(filepath.Join(root, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "node_modules/playwright-core is missing: run `npm ci` at the repository root (never `npx playwright install`)")
	}
	if len(missing) > 0 {
		t.Fatalf("the browser end-to-end test cannot run:\n  - %s", strings.Join(missing, "\n  - "))
	}
	return root, chromium
}

// serveForBrowser runs the real binary (`parlor serve`) on a fresh database with the sandbox
// payment provider and returns its base URL once it is ready. Its output is logged if the
// test fails.
func serveForBrowser(t *testing.T) string {
	t.Helper()
	bin := buildBinary(t)
	addr := freeAddr(t)
	base := "http://" + addr

	serverOut := &syncBuffer{}
	cmd := exec.Command(bin, "serve")
	// No Stripe key: the sandbox provider. Its checkout pages live at APP_PUBLIC_URL.
	cmd.Env = cleanEnv("APP_ADDR="+addr, "APP_PUBLIC_URL="+base, "DB_URL="+pgtest.NewURL(t),
		"STRIPE_SECRET_KEY=", "STRIPE_API_URL=")
	cmd.Stdout, cmd.Stderr = serverOut, serverOut
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("parlor serve output:\n%s", serverOut.String())
		}
	})
	require.Eventually(t, func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "parlor serve did not become ready")
	return base
}

// runBrowserScript runs a web/e2e script with node against base and fails the test with its
// output if it does not exit 0.
func runBrowserScript(t *testing.T, root, script string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	node := exec.CommandContext(ctx, "node", filepath.Join("web", "e2e", script))
	node.Dir = root
	node.Env = cleanEnv(env...)
	node.WaitDelay = 5 * time.Second
	out, err := node.CombinedOutput()
	require.NoError(t, err, "web/e2e/%s failed after %s:\n%s", script, time.Since(start).Round(time.Millisecond), out)
	t.Logf("web/e2e/%s passed in %s:\n%s", script, time.Since(start).Round(time.Millisecond), out)
}

// TestSandboxTopupInABrowser runs web/e2e/sandbox-topup.mjs: a user buys credits on the
// sandbox's checkout page in headless Chromium, pressing its Pay button, against the real
// binary; the credits must reach the wallet through the webhook path.
func TestSandboxTopupInABrowser(t *testing.T) {
	root, chromium := browserPrereqs(t)
	base := serveForBrowser(t)

	res, err := http.Post(base+"/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"buyer@example.com","password":"password1","display_name":"Buyer"}`))
	require.NoError(t, err)
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&tokens))
	res.Body.Close()
	require.Equal(t, 201, res.StatusCode)
	require.NotEmpty(t, tokens.AccessToken)

	runBrowserScript(t, root, "sandbox-topup.mjs", "PARLOR_BASE_URL="+base, "PARLOR_ACCESS_TOKEN="+tokens.AccessToken,
		"PARLOR_PACKAGE=small", "CHROMIUM_PATH="+chromium)

	// The server agrees: one top-up's credits (the "small" package: 100), no more.
	req, err := http.NewRequest("GET", base+"/v1/wallet", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tokens.AccessToken)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var w struct {
		Balance       int64 `json:"balance"`
		PendingTopups int64 `json:"pending_topups"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&w))
	require.Equal(t, int64(100), w.Balance)
	require.Equal(t, int64(0), w.PendingTopups)
}

// TestDemoClientInABrowser runs web/e2e/demo.mjs: two people use the demo web client served
// at / in two headless Chromium contexts against the real binary — register, create and join
// a room, a message arriving live, the typing indicator, buying credits through the sandbox
// checkout page, a tip moving both balances, and the history after a reload.
func TestDemoClientInABrowser(t *testing.T) {
	root, chromium := browserPrereqs(t)
	base := serveForBrowser(t)
	runBrowserScript(t, root, "demo.mjs", "PARLOR_BASE_URL="+base, "CHROMIUM_PATH="+chromium)
}
