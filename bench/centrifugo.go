package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Centrifugo, the reference of the fan-out ceiling (DESIGN.md): a dedicated real-time
// server that writes no database. It is built from the Go module proxy into a cache
// directory outside the repository on first use; none of its code is in this module.
const (
	centrifugoModule  = "github.com/centrifugal/centrifugo/v6"
	centrifugoVersion = "v6.9.1"
	centrifugoChannel = "bench"
)

// centrifugoBinDir is where the Centrifugo binary is kept between runs: beside the Go build
// cache ($(go env GOCACHE)/../parlor-bench-bin).
func centrifugoBinDir() string {
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return filepath.Join(os.TempDir(), "parlor-bench-bin")
	}
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "parlor-bench-bin")
}

// centrifugoBinary returns the Centrifugo binary: BENCH_CENTRIFUGO, or the cached build of
// centrifugoVersion, building it on first use.
func centrifugoBinary(ctx context.Context, bench string) (string, error) {
	switch p := os.Getenv("BENCH_CENTRIFUGO"); p {
	case "":
	case "none", "off":
		return "", errors.New("skipped (BENCH_CENTRIFUGO=" + p + ")")
	default:
		return p, nil
	}
	dir := centrifugoBinDir()
	bin := filepath.Join(dir, "centrifugo")
	if binaryVersion(ctx, bin) == centrifugoVersion {
		return bin, nil
	}
	progress(bench, "building Centrifugo %s into %s (go install from the module proxy; first run only, may take several minutes)", centrifugoVersion, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	install := exec.CommandContext(ctx, "go", "install", centrifugoModule+"@"+centrifugoVersion)
	install.Dir = dir // outside this module: go.mod is not touched
	install.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
	if out, err := install.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", centrifugoModule, centrifugoVersion, err, tail(out, 20))
	}
	progress(bench, "built Centrifugo in %s", time.Since(start).Round(time.Second))
	return bin, nil
}

// binaryVersion is the version of Centrifugo's module that bin was built from, read from
// the build information (`centrifugo version` says v0.0.0 in a go install build), or "".
func binaryVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == centrifugoModule {
			return f[2]
		}
	}
	return ""
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// centrifugoFan is Centrifugo under the fan-out benchmark (and, its sockets idle, the
// memory benchmark).
type centrifugoFan struct {
	bench  string
	origin string // where the binary came from
	proc   *process
	addr   string
	apiKey string
	secret []byte
	http   *http.Client
	dialer *websocket.Dialer
}

// startCentrifugoFan builds (if needed) and starts Centrifugo with a generated config, and
// returns it with its version.
func startCentrifugoFan(ctx context.Context, bench, dir string) (*centrifugoFan, string, error) {
	bin, err := centrifugoBinary(ctx, bench)
	if err != nil {
		return nil, "", err
	}
	version := binaryVersion(ctx, bin)
	switch {
	case strings.HasPrefix(version, "v") && !strings.HasPrefix(version, "v6."):
		return nil, "", fmt.Errorf("%s is Centrifugo %s; the benchmark compares with v6", bin, version)
	case !strings.HasPrefix(version, "v"):
		version = "v6 (" + bin + ")"
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	origin := "built with go install into " + filepath.Dir(bin)
	if os.Getenv("BENCH_CENTRIFUGO") != "" {
		origin = "BENCH_CENTRIFUGO=" + bin
	}
	c := &centrifugoFan{
		bench:  bench,
		origin: origin,
		addr:   "127.0.0.1:" + strconv.Itoa(port), apiKey: randomHex(16), secret: []byte(randomHex(32)),
		http:   newHTTPClient(),
		dialer: &websocket.Dialer{HandshakeTimeout: 10 * time.Second},
	}
	config := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"usage_stats": map[string]any{"disabled": true},
		"http_api":    map[string]any{"key": c.apiKey},
		"client": map[string]any{
			"token":           map[string]any{"hmac_secret_key": string(c.secret)},
			"allowed_origins": []string{"*"},
		},
		"channel": map[string]any{"without_namespace": map[string]any{"allow_subscribe_for_client": true}},
	}
	b, _ := json.MarshalIndent(config, "", "  ")
	configPath := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(configPath, b, 0o600); err != nil {
		return nil, "", err
	}
	c.proc, err = startProcess("centrifugo", bin, []string{"--config", configPath}, os.Environ(), filepath.Join(dir, "centrifugo.log"))
	if err != nil {
		return nil, "", err
	}
	if err := c.waitReady(ctx); err != nil {
		c.close()
		return nil, "", err
	}
	progress(bench, "Centrifugo %s is ready (pid %d)", version, c.proc.pid())
	return c, version, nil
}

// waitReady calls the server API's info method until it answers.
func (c *centrifugoFan) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.call(ctx, "info", map[string]any{}); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("centrifugo not ready after 30 s: %v\n%s", err, c.proc.logTail(20))
		}
		select {
		case err := <-c.proc.exited:
			c.proc.exited <- err
			return fmt.Errorf("centrifugo exited: %v\n%s", err, c.proc.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// call runs a server API method over HTTP (POST /api/<method> with the API key).
func (c *centrifugoFan) call(ctx context.Context, method string, params any) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+"/api/"+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", c.apiKey)
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d: %.200s", method, res.StatusCode, b)
	}
	var reply struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &reply); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if reply.Error != nil {
		return fmt.Errorf("%s: error %d: %s", method, reply.Error.Code, reply.Error.Message)
	}
	return nil
}

func (c *centrifugoFan) close() {
	if c.proc == nil {
		return
	}
	if err := c.proc.stop(15 * time.Second); err != nil && !strings.Contains(err.Error(), "signal: terminated") {
		progress(c.bench, "centrifugo: %v", err)
	}
	c.proc = nil
	c.http.CloseIdleConnections()
}

func (c *centrifugoFan) pid() int           { return c.proc.pid() }
func (c *centrifugoFan) answersPings() bool { return true }

func (c *centrifugoFan) sendTarget(context.Context) (sendTarget, error) {
	return sendTarget{Kind: "centrifugo", URL: "http://" + c.addr, Room: centrifugoChannel, APIKey: c.apiKey}, nil
}

// token is a connection JWT for user, HS256-signed with the configured secret.
func (c *centrifugoFan) token(user string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": user, "exp": time.Now().Add(24 * time.Hour).Unix()})
	signing := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, c.secret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// subscribe connects subscriber i (user bench-i) and subscribes it to the channel.
func (c *centrifugoFan) subscribe(ctx context.Context, i int) (*websocket.Conn, error) {
	return c.connect(ctx, c.dialer, c.token("bench-"+strconv.Itoa(i)), centrifugoChannel)
}

// connect dials with d, connects with token and subscribes to channel, over the JSON
// protocol: commands and replies are JSON objects, several to a frame separated by newlines.
func (c *centrifugoFan) connect(ctx context.Context, d *websocket.Dialer, token, channel string) (*websocket.Conn, error) {
	conn, _, err := d.DialContext(ctx, "ws://"+c.addr+"/connection/websocket", nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	steps := []struct {
		id  int
		cmd map[string]any
	}{
		{1, map[string]any{"connect": map[string]any{"token": token, "name": "parlor-bench"}}},
		{2, map[string]any{"subscribe": map[string]any{"channel": channel}}},
	}
	for _, s := range steps {
		s.cmd["id"] = s.id
		b, _ := json.Marshal(s.cmd)
		if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
			_ = conn.Close()
			return nil, err
		}
		if err := awaitReply(conn, s.id); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

// awaitReply reads until the reply to command id, failing on an error reply.
func awaitReply(conn *websocket.Conn, id int) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for reply %d: %w", id, err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var r struct {
				ID    int             `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &r) != nil || r.ID != id {
				continue
			}
			if len(r.Error) > 0 {
				return fmt.Errorf("reply %d: error %s", id, r.Error)
			}
			return nil
		}
	}
}
