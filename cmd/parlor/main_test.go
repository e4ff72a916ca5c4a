package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
	"github.com/parlor-dev/parlor/migrations"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary compiles parlor once for the tests of this package.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "parlor-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "parlor")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// cleanEnv is the environment without any APP_/DB_/REDIS_ variable of the machine.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "APP_") || strings.HasPrefix(kv, "DB_") || strings.HasPrefix(kv, "REDIS_") {
			continue
		}
		env = append(env, kv)
	}
	// Metrics off unless a test asks: the default address is one per host, and tests run
	// servers side by side.
	return append(append(env, "APP_METRICS_ADDR="), extra...)
}

func TestServeMigratesAnEmptyDatabaseAndStopsCleanlyOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = cleanEnv("APP_ADDR="+addr, "APP_METRICS_ADDR="+metricsAddr, "DB_URL="+pgtest.NewEmptyURL(t))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// Ready once the schema is in place.
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond)

	res, err := http.Post("http://"+addr+"/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"a@example.com","password":"password1","display_name":"A"}`))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 201, res.StatusCode, "the migrated schema accepts a registration")

	// /metrics is served on its own listener, not on the public port.
	res, err = http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, string(body), `parlor_http_requests_total{method="POST",route="/v1/auth/register",status="201"} 1`)
	res, err = http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 404, res.StatusCode, "the public port does not serve /metrics")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "parlor must exit 0 on SIGTERM")

	var all []string
	for l := range lines {
		all = append(all, l)
	}
	joined := strings.Join(all, "\n")
	require.Contains(t, joined, "00001_accounts.sql", "migrations are reported as they run")
	require.Contains(t, joined, "APP_JWT_KEYS is not set", "development warns about the throwaway key")
	require.Contains(t, joined, "parlor stopped")
	for _, l := range all {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "every log line is JSON: %s", l)
	}
}

func TestProductionRefusesToStartWithoutSecrets(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = cleanEnv("APP_ENV=production", "APP_PUBLIC_URL=http://parlor.example")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "APP_JWT_KEYS is required in production")
	require.Contains(t, string(out), "APP_PUBLIC_URL must be https in production")
	require.Contains(t, string(out), "REDIS_URL is required in production")
}

// TestAMistypedSettingStopsTheStart: `serve` exits non-zero naming the variable and the
// values it takes, before it connects to anything, rather than logging at info.
func TestAMistypedSettingStopsTheStart(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = cleanEnv("APP_LOG_LEVEL=inf")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `APP_LOG_LEVEL must be one of debug, info, warn, error, not "inf"`)
}

func TestMigrateCommands(t *testing.T) {
	bin := buildBinary(t)
	env := cleanEnv("DB_URL=" + pgtest.NewEmptyURL(t))
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)

	require.Equal(t, len(files), strings.Count(run("migrate", "status"), "pending"))
	up := run("migrate", "up")
	for _, f := range files {
		require.Contains(t, up, "migrated up   "+f)
	}
	require.Contains(t, run("migrate", "up"), "nothing pending")
	require.Equal(t, len(files), strings.Count(run("migrate", "status"), "applied"))
	// Every migration rolls back, newest first, down to an empty schema.
	for i := len(files) - 1; i >= 0; i-- {
		require.Contains(t, run("migrate", "down"), "migrated down "+files[i])
	}
	require.Equal(t, len(files), strings.Count(run("migrate", "status"), "pending"))
}

func TestKeygenPrintsAUsableKey(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "keygen").Output()
	require.NoError(t, err)
	entry := strings.TrimSpace(string(out))
	kid, seed, ok := strings.Cut(entry, ":")
	require.True(t, ok, entry)
	require.NotEmpty(t, kid)
	require.Len(t, seed, 43, "32 bytes, base64url without padding")

	// A production server starts with it (and the healthcheck command agrees).
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = cleanEnv("APP_ENV=production", "APP_PUBLIC_URL=https://parlor.example", "APP_ADDR="+addr,
		"APP_JWT_KEYS="+entry, "DB_URL="+pgtest.NewURL(t), "APP_SINGLE_INSTANCE=true", "APP_SHUTDOWN_DRAIN=0s")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	healthy := func() bool {
		health := exec.Command(bin, "healthcheck")
		health.Env = cleanEnv("APP_ADDR=" + addr)
		return health.Run() == nil
	}
	require.Eventually(t, healthy, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	require.False(t, healthy(), "healthcheck fails once the server is gone")
}

func TestUnknownCommand(t *testing.T) {
	err := run([]string{"frobnicate"})
	require.Error(t, err)
	require.Equal(t, `unknown command "frobnicate"`, err.Error())
	require.EqualError(t, run(nil), "no command given")
}
