package faults_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
)

// bundleSDKScript bundles a script of clients/typescript/test (with the SDK it imports) into
// one ES module that node runs, failing the test (never skipping it) with what is missing.
func bundleSDKScript(t *testing.T, name string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	esbuild := filepath.Join(root, "node_modules", ".bin", "esbuild")
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not on PATH: install Node.js 20 or newer")
	}
	if _, err := os.Stat(esbuild); err != nil {
		t.Fatal("node_modules/.bin/esbuild is missing: run `npm ci` at the repository root")
	}
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(name, ".ts")+".mjs")
	build := exec.Command(esbuild, filepath.Join("clients", "typescript", "test", name),
		"--bundle", "--platform=node", "--format=esm", "--target=node20", "--log-level=warning", "--outfile="+out)
	build.Dir = root
	msg, err := build.CombinedOutput()
	require.NoError(t, err, "esbuild: %s", msg)
	return out
}

// Issue 12, hole 6, for the SDK: with PostgreSQL down, the TypeScript client tries a request
// that is safe to repeat again after each 503 until the database is back, and hands a request
// that is not (a room create) back at once, so it never makes a second room.
func TestTheSDKRetriesA503UntilTheDatabaseIsBack(t *testing.T) {
	t.Parallel()
	script := bundleSDKScript(t, "retry-outage.ts")
	db, s := startOnOwnCluster(t)
	ann := s.Register(t, "ann")
	created, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "outage"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, created.StatusCode(), string(created.Body))

	db.Stop(t)
	runCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	node := exec.CommandContext(runCtx, "node", script, s.URL, ann.AccessToken, created.JSON201.Id.String())
	node.WaitDelay = 5 * time.Second
	stdout, err := node.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	node.Stderr = &stderr
	require.NoError(t, node.Start())

	var lines []string
	var summary map[string]struct {
		Status   int   `json:"status"`
		Attempts []int `json:"attempts"`
	}
	restarted := false
	scan := bufio.NewScanner(stdout)
	for scan.Scan() {
		line := scan.Text()
		lines = append(lines, line)
		// The first refused send: bring the database back while the SDK waits to retry.
		if !restarted && line == "attempt send 503" {
			db.Restart(t)
			restarted = true
		}
		if strings.HasPrefix(line, "{") {
			require.NoError(t, json.Unmarshal([]byte(line), &summary), line)
		}
	}
	require.NoError(t, node.Wait(), "node: %s\n%s", strings.Join(lines, "\n"), stderr.String())
	t.Logf("the SDK's attempts:\n%s", strings.Join(lines, "\n"))
	require.True(t, restarted, "the send was never refused with a 503")

	require.Equal(t, http.StatusServiceUnavailable, summary["create-room"].Status, "a create is handed back")
	require.Equal(t, []int{http.StatusServiceUnavailable}, summary["create-room"].Attempts, "and sent once")
	send := summary["send"]
	require.Equal(t, http.StatusCreated, send.Status, "the send went through once the database was back")
	require.GreaterOrEqual(t, len(send.Attempts), 2)
	for _, status := range send.Attempts[:len(send.Attempts)-1] {
		require.Equal(t, http.StatusServiceUnavailable, status, "only 503s were retried: %v", send.Attempts)
	}
	require.Equal(t, http.StatusOK, summary["me"].Status)

	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM messages WHERE client_msg_id = '3f1e2d4c-5b6a-4978-8c9d-0e1f2a3b4c5d'"), "sent once, stored once")
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM rooms WHERE owner_id = $1", ann.ID), "no room was made in the outage")
}
