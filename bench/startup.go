package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// runStartup builds the parlor binary and times o.starts fresh `parlor serve` processes
// against an already migrated database: from exec to the first 200 from /readyz.
func runStartup(ctx context.Context, o options, rep *report) error {
	const bench = "startup"
	setup, err := newServeSetup(ctx, bench)
	if err != nil {
		return err
	}
	defer setup.close()
	dir, bin, d := setup.dir, setup.bin, setup.db

	var ready, logged []time.Duration
	for i := range o.starts {
		toReady, selfReported, err := timeStart(ctx, bin, d.url, filepath.Join(dir, fmt.Sprintf("start%d.log", i+1)))
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
		"APP_JWT_KEYS set, Redis %s; /readyz polled every 2 ms; the process is then sent SIGTERM.", onOff(redisURL() != ""))
	return nil
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
func timeStart(ctx context.Context, bin, dbURL, logPath string) (time.Duration, time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env, err := parlorEnv(addr, dbURL)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	p, err := startProcess("parlor serve", bin, []string{"serve"}, env, logPath)
	if err != nil {
		return 0, 0, err
	}
	if err := p.waitReady(ctx, "http://"+addr+"/readyz", 2*time.Millisecond, 30*time.Second); err != nil {
		_ = p.stop(10 * time.Second)
		return 0, 0, err
	}
	toReady := time.Since(start)
	if err := p.stop(10 * time.Second); err != nil {
		return 0, 0, fmt.Errorf("stop: %w\n%s", err, p.logTail(20))
	}
	logs, err := os.ReadFile(logPath)
	if err != nil {
		return 0, 0, err
	}
	return toReady, loggedStartup(logs), nil
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
