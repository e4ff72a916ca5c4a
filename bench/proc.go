package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A server under test that must be measured on its own (its RSS, its CPU time) runs as a
// subprocess: `parlor serve` built from this checkout (startup, memory, fanout), or
// Centrifugo (fanout).

// buildParlor builds ./cmd/parlor into dir.
func buildParlor(ctx context.Context, bench, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "parlor")
	progress(bench, "building ./cmd/parlor")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/parlor")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/parlor: %w\n%s", err, out)
	}
	return bin, nil
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

// parlorEnv is the environment of a `parlor serve` on addr and the benchmark's database:
// the benchmark's own environment (so DB_MAX_CONNS and the like can be tuned as in
// production), then the database, Redis under a prefix of its own, the run's signing key
// (so access tokens work on every server of the run) and the sign-up and login throttles
// out of the way; extra ("K=V") comes last and wins.
func parlorEnv(addr, dbURL string, extra ...string) ([]string, error) {
	key, err := signingKey()
	if err != nil {
		return nil, err
	}
	lots := "1000000/1m"
	env := append(os.Environ(),
		"APP_ENV=development", "APP_ADDR="+addr, "APP_PUBLIC_URL=http://"+addr,
		"APP_JWT_KEYS="+key, "APP_LOG_LEVEL=info",
		"APP_LOGIN_RATE_IP="+lots, "APP_LOGIN_RATE_IP_EMAIL="+lots, "APP_REGISTER_RATE_IP="+lots,
		"APP_RATE_SYNC="+lots, "APP_RATE_READ="+lots, "APP_RATE_WRITE="+lots, "APP_RATE_PUBLIC="+lots,
		"DB_URL="+dbURL, "DB_MIGRATE_ON_START=false", "APP_METRICS_ADDR=",
		"REDIS_URL="+redisURL(), "REDIS_KEY_PREFIX=parlorbench:"+randomHex(8)+":")
	return append(env, extra...), nil
}

// serveSetup is what a benchmark of `parlor serve` processes starts from: a folder of its
// own (the binary, the servers' logs), the binary built into it, and a migrated database of
// its own. close drops the database and removes the folder.
type serveSetup struct {
	dir, bin string
	db       *database
}

func newServeSetup(ctx context.Context, bench string) (*serveSetup, error) {
	dir, err := os.MkdirTemp("", "parlor-bench-"+bench+"-")
	if err != nil {
		return nil, err
	}
	bin, err := buildParlor(ctx, bench, dir)
	if err == nil {
		var d *database
		if d, err = newDatabase(ctx, bench); err == nil {
			progress(bench, "database %s ready (migrated)", d.name)
			return &serveSetup{dir: dir, bin: bin, db: d}, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, err
}

func (s *serveSetup) close() {
	s.db.drop()
	_ = os.RemoveAll(s.dir)
}

// process is a server running as a subprocess; its stdout and stderr go to a file.
type process struct {
	name    string
	cmd     *exec.Cmd
	exited  chan error
	logPath string
}

// startProcess starts bin with args and env, logging to logPath.
func startProcess(name, bin string, args, env []string, logPath string) (*process, error) {
	logs, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logs.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan error, 1), logPath: logPath}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitReady polls url every interval until it answers 200, the process exits, or timeout.
func (p *process) waitReady(ctx context.Context, url string, interval, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		res, err := client.Get(url)
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%s exited before it was ready: %v\n%s", p.name, err, p.logTail(20))
		case <-deadline:
			return fmt.Errorf("%s not ready after %s\n%s", p.name, timeout, p.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits up to timeout, then kills.
func (p *process) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		p.exited <- <-p.exited
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, timeout)
	}
}

// logTail is the last n lines the process logged.
func (p *process) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// rssKiB is the resident set of a process (VmRSS), in KiB.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuSeconds is the CPU time (user + system) a process has used so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: fields count from after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / userHZ
}

// raiseFileLimit raises this process's RLIMIT_NOFILE soft limit to its hard limit (children,
// such as the server under test, inherit it) and reports whether need descriptors fit. When
// the hard limit is below need it first tries to raise that too, which only a privileged
// process (root, CAP_SYS_RESOURCE) may; what it did or could not do is in the returned note.
func raiseFileLimit(need uint64) (lim syscall.Rlimit, note string, err error) {
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim, "", err
	}
	if lim.Max < need {
		want := syscall.Rlimit{Cur: need, Max: need}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			note = fmt.Sprintf("could not raise the hard RLIMIT_NOFILE from %d to %d: %v (it takes root with CAP_SYS_RESOURCE)", lim.Max, need, err)
		} else {
			note = fmt.Sprintf("raised the hard RLIMIT_NOFILE from %d to %d", lim.Max, need)
			lim = want
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim, note, err
	}
	if lim.Cur < need {
		return lim, note, fmt.Errorf("RLIMIT_NOFILE allows %d open files, the benchmark needs about %d (%s): raise the hard limit "+
			"in the shell that runs it (as root: ulimit -Hn %d; ulimit -n %d) or in the service manager (LimitNOFILE=)", lim.Cur, need, note, need, need)
	}
	return lim, note, nil
}
