package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runStartup builds the parlor binary and times o.starts fresh `parlor serve` processes
// against an already migrated database: from exec to the first 200 from /readyz.
func runStartup(ctx context.Context, o options, rep *report) error {
	const bench = "startup"
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "parlor-bench-startup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "parlor")
	progress(bench, "building ./cmd/parlor")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/parlor")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/parlor: %w\n%s", err, out)
	}
	key, err := exec.CommandContext(ctx, bin, "keygen").Output()
	if err != nil {
		return fmt.Errorf("parlor keygen: %w", err)
	}

	d, err := newDatabase(ctx, bench)
	if err != nil {
		return err
	}
	defer d.drop()
	progress(bench, "database %s ready (migrated)", d.name)

	var ready, logged []time.Duration
	for i := range o.starts {
		toReady, selfReported, err := timeStart(ctx, bin, d.url, strings.TrimSpace(string(key)))
		if err != nil {
			return fmt.Errorf("start %d: %w", i+1, err)
		}
		progress(bench, "start %d/%d: /readyz 200 after %s ms (the process logged startup_ms %s)", i+1, o.starts, ms(toReady), ms(selfReported))
		ready = append(ready, toReady)
		logged = append(logged, selfReported)
	}
	slices.Sort(ready)
	slices.Sort(logged)
	median := ready[len(ready)/2]
	rep.add(bench, fmt.Sprintf("exec → first /readyz 200, min / median / max of %d", len(ready)),
		fmt.Sprintf("%s / %s / %s ms", ms(ready[0]), ms(median), ms(ready[len(ready)-1])), "< 1 s", verdict(ready[len(ready)-1] < time.Second))
	rep.add(bench, "  startup_ms logged by parlor serve (config → listening), median", ms(logged[len(logged)/2])+" ms", "", "")
	rep.note("startup: `go build ./cmd/parlor`, then each start: parlor serve with DB_MIGRATE_ON_START=false on a migrated database, "+
		"APP_JWT_KEYS from `parlor keygen`, Redis %s; /readyz polled every 2 ms; the process is then sent SIGTERM.", onOff(redisURL() != ""))
	return nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the benchmark from inside the parlor module")
	}
	return filepath.Dir(gomod), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// timeStart runs one `parlor serve` and returns the time from exec to the first 200 from
// /readyz, and the startup_ms the process itself logged.
func timeStart(ctx context.Context, bin, dbURL, key string) (time.Duration, time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"APP_ENV=development", "APP_ADDR="+addr, "APP_JWT_KEYS="+key, "APP_LOG_LEVEL=info",
		"DB_URL="+dbURL, "DB_MIGRATE_ON_START=false",
		"REDIS_URL="+redisURL(), "REDIS_KEY_PREFIX=parlorbench:"+randomHex(8)+":")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("did not stop within 10 s of SIGTERM; killed")
		}
	}

	var toReady time.Duration
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
poll:
	for {
		select {
		case err := <-exited:
			return 0, 0, fmt.Errorf("parlor serve exited before it was ready: %v\n%s%s", err, stdout.String(), stderr.String())
		case <-deadline:
			_ = stop()
			return 0, 0, fmt.Errorf("not ready after 30 s\n%s%s", stdout.String(), stderr.String())
		case <-ctx.Done():
			_ = stop()
			return 0, 0, ctx.Err()
		case <-tick.C:
		}
		res, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			continue
		}
		_ = res.Body.Close()
		if res.StatusCode == http.StatusOK {
			toReady = time.Since(start)
			break poll
		}
	}
	if err := stop(); err != nil {
		return 0, 0, fmt.Errorf("stop: %w\n%s", err, stderr.String())
	}
	return toReady, loggedStartup(stdout.Bytes()), nil
}

// loggedStartup finds startup_ms in the "parlor is serving" log record.
func loggedStartup(logs []byte) time.Duration {
	sc := bufio.NewScanner(bytes.NewReader(logs))
	for sc.Scan() {
		var rec struct {
			Msg       string  `json:"msg"`
			StartupMs float64 `json:"startup_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "parlor is serving" {
			return time.Duration(rec.StartupMs * float64(time.Millisecond))
		}
	}
	return 0
}
