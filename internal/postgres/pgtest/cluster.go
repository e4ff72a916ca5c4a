package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a PostgreSQL server of a test's own (initdb, pg_ctl), for tests that must do
// what the shared server cannot: fail over to a standby, restore into another cluster, stop
// the database under a running app. Its superuser is "postgres", trusted on 127.0.0.1.
//
// Tests run as root in CI and initdb/postgres refuse root: then every server program runs as
// the `postgres` OS user (through runuser), in a directory owned by it.
type Cluster struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// DataDir is the data directory; LogFile what the server logged.
	DataDir string
	LogFile string

	base     string // holds DataDir and LogFile; removed when the test ends
	bin      string
	runAs    *osUser
	running  bool
	logShown bool // a failure already printed the log's tail
}

type osUser struct {
	name     string
	uid, gid int
	runuser  string
}

// waitTimeout bounds every wait of the kit (server start, streaming, replay, promotion).
const waitTimeout = 30 * time.Second

// clusterConf is appended to postgresql.conf: fast and throwaway (no fsync), but able to
// stream to a standby. Standbys copy it with the base backup. The port is given on the
// command line so a standby can take another one.
const clusterConf = `
# pgtest
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 50
shared_buffers = 16MB
fsync = off
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = 128MB
hot_standby = on
wal_receiver_status_interval = 1s
jit = off
log_min_messages = info
`

// StartCluster runs a PostgreSQL server of the test's own: initdb into a temp dir, on a free
// 127.0.0.1 port, trust auth, stopped and removed when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	began := time.Now()
	c := newCluster(t)
	out, err := c.run("initdb", "-D", c.DataDir, "-U", "postgres", "--auth=trust", "--no-sync",
		"--encoding=UTF8", "--locale=C")
	if err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(clusterConf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("pgtest: configure %s: %v", c.DataDir, err)
	}
	c.start(t)
	t.Logf("pgtest: cluster on port %d started in %s", c.Port, time.Since(began).Round(time.Millisecond))
	return c
}

// URL is a connection URL for dbname as the superuser:
// postgres://postgres@127.0.0.1:port/dbname?sslmode=disable.
func (c *Cluster) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates an empty database, for the app to migrate into.
func (c *Cluster) CreateDatabase(t testing.TB, name string) {
	t.Helper()
	c.exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// StartStandby takes a base backup of c (pg_basebackup -R, WAL streamed alongside) and starts
// it as a streaming replica on a port of its own; it returns once the standby streams from c.
// Stop c and Promote the standby to fail over.
func (c *Cluster) StartStandby(t testing.TB) *Cluster {
	t.Helper()
	began := time.Now()
	s := newCluster(t) // pg_basebackup fills the empty data dir
	out, err := s.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-D", s.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w")
	if err != nil {
		c.fatalf(t, "pg_basebackup from port %d: %v\n%s", c.Port, err, out)
	}
	s.start(t)
	s.poll(t, "the standby to stream from its primary", func(conn *pgx.Conn) (bool, error) {
		var streaming bool
		err := conn.QueryRow(context.Background(),
			"SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')").Scan(&streaming)
		return streaming, err
	})
	t.Logf("pgtest: standby of port %d on port %d streaming after %s", c.Port, s.Port, time.Since(began).Round(time.Millisecond))
	return s
}

// WaitReplayed waits until the standby c has replayed the primary's current WAL position:
// everything committed on from before the call is then visible on c.
func (c *Cluster) WaitReplayed(t testing.TB, from *Cluster) {
	t.Helper()
	var target string
	conn := from.connect(t, "postgres")
	err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&target)
	_ = conn.Close(context.Background())
	if err != nil {
		from.fatalf(t, "current WAL position: %v", err)
	}
	c.poll(t, "the standby to replay up to "+target, func(conn *pgx.Conn) (bool, error) {
		var done bool
		err := conn.QueryRow(context.Background(),
			"SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)", target).Scan(&done)
		return done, err
	})
}

// Promote turns a standby into a primary (pg_ctl promote) on a new timeline, and returns once
// it accepts writes (pg_is_in_recovery() is false).
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	began := time.Now()
	if out, err := c.run("pg_ctl", "-D", c.DataDir, "-w", "-t", strconv.Itoa(int(waitTimeout.Seconds())), "promote"); err != nil {
		c.fatalf(t, "pg_ctl promote: %v\n%s", err, out)
	}
	c.poll(t, "the promoted standby to leave recovery", func(conn *pgx.Conn) (bool, error) {
		var recovering bool
		err := conn.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&recovering)
		return !recovering, err
	})
	t.Logf("pgtest: port %d promoted in %s", c.Port, time.Since(began).Round(time.Millisecond))
}

// Stop shuts the server down (fast: clients are disconnected, nothing waits for them) — the
// old primary dies. Its files stay until the test ends.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if !c.running {
		return
	}
	if out, err := c.run("pg_ctl", "-D", c.DataDir, "-m", "fast", "-w", "-t", strconv.Itoa(int(waitTimeout.Seconds())), "stop"); err != nil {
		c.fatalf(t, "pg_ctl stop: %v\n%s", err, out)
	}
	c.running = false
}

// Restart starts a stopped server again on the same port, so that clients that kept its
// address reconnect by themselves — PostgreSQL coming back after an outage.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if c.running {
		return
	}
	if out, err := c.run("pg_ctl", "-D", c.DataDir, "-l", c.LogFile, "-w", "-t", strconv.Itoa(int(waitTimeout.Seconds())),
		"-o", "-p "+strconv.Itoa(c.Port), "start"); err != nil {
		c.fatalf(t, "pg_ctl start on port %d: %v\n%s", c.Port, err, out)
	}
	c.running = true
}

// CopyDatabase dumps database name of c (pg_dump) and restores it into a new database of the
// same name on to (pg_restore): a restore into another cluster, whose system identifier
// differs while every row is the same.
func (c *Cluster) CopyDatabase(t testing.TB, name string, to *Cluster) {
	t.Helper()
	dump := filepath.Join(c.base, "dump-"+name)
	if out, err := c.run("pg_dump", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-w",
		"-Fc", "-f", dump, name); err != nil {
		c.fatalf(t, "pg_dump %s: %v\n%s", name, err, out)
	}
	to.CreateDatabase(t, name)
	if out, err := c.run("pg_restore", "-h", "127.0.0.1", "-p", strconv.Itoa(to.Port), "-U", "postgres", "-w",
		"--no-owner", "--exit-on-error", "-d", name, dump); err != nil {
		to.fatalf(t, "pg_restore %s: %v\n%s", name, err, out)
	}
}

// newCluster prepares an empty home for a server (base dir owned by the OS user the server
// runs as) and removes it, server stopped, when t ends.
func newCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBinDir()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	runAs, err := serverUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c := &Cluster{base: base, bin: bin, runAs: runAs,
		DataDir: filepath.Join(base, "data"), LogFile: filepath.Join(base, "postgres.log")}
	t.Cleanup(func() {
		if c.running {
			_, _ = c.run("pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "-t", "10", "stop")
			c.running = false
		}
		if t.Failed() {
			if c.logShown {
				t.Logf("pgtest: the log of the server on port %d is kept in %s", c.Port, c.LogFile)
			} else {
				t.Logf("pgtest: the server on port %d logged (kept in %s), last lines:\n%s", c.Port, c.LogFile, c.logTail(20))
			}
			_ = os.RemoveAll(c.DataDir)
			return
		}
		_ = os.RemoveAll(base)
	})
	if err := os.Mkdir(c.DataDir, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if runAs != nil {
		for _, p := range []string{base, c.DataDir} {
			if err := os.Chown(p, runAs.uid, runAs.gid); err != nil {
				t.Fatalf("pgtest: give %s to the %s user: %v", p, runAs.name, err)
			}
		}
	}
	return c
}

// start runs the server on a free port (another one if the port was taken meanwhile).
func (c *Cluster) start(t testing.TB) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		c.Port = port
		logBefore := c.logSize()
		out, err := c.run("pg_ctl", "-D", c.DataDir, "-l", c.LogFile, "-w", "-t", strconv.Itoa(int(waitTimeout.Seconds())),
			"-o", "-p "+strconv.Itoa(port), "start")
		if err == nil {
			c.running = true
			return
		}
		if attempt < 3 && strings.Contains(c.logSince(logBefore), "already in use") {
			continue
		}
		c.fatalf(t, "pg_ctl start on port %d: %v\n%s", port, err, out)
	}
}

// run runs a server program from the bin dir, as the server's OS user, in its base dir.
func (c *Cluster) run(program string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, program)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s is missing from %s (install the PostgreSQL server package): %w", program, c.bin, err)
	}
	var cmd *exec.Cmd
	if c.runAs != nil {
		cmd = exec.Command(c.runAs.runuser, append([]string{"-u", c.runAs.name, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.base
	// The caller's PG* variables (PGHOST, PGPORT, PGUSER, …) must not redirect the tools.
	env := []string{"LC_ALL=C", "TZ=UTC"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG") && !strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.Bytes(), fmt.Errorf("%s did not finish within %s", program, 2*waitTimeout)
	}
}

func (c *Cluster) connect(t testing.TB, dbname string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(c.URL(dbname))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.ConnectTimeout = 5 * time.Second
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		c.fatalf(t, "connect to port %d: %v", c.Port, err)
	}
	return conn
}

func (c *Cluster) exec(t testing.TB, dbname, sql string) {
	t.Helper()
	conn := c.connect(t, dbname)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		c.fatalf(t, "%s: %v", sql, err)
	}
}

// poll asks check every 20 ms, on one connection, until it holds or waitTimeout passes.
func (c *Cluster) poll(t testing.TB, what string, check func(*pgx.Conn) (bool, error)) {
	t.Helper()
	conn := c.connect(t, "postgres")
	defer conn.Close(context.Background())
	deadline := time.Now().Add(waitTimeout)
	var lastErr error
	for {
		ok, err := check(conn)
		if ok && err == nil {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			c.fatalf(t, "waited %s for %s (last error: %v)", waitTimeout, what, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fatalf fails the test with the message and what the server logged last.
func (c *Cluster) fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	c.logShown = true
	t.Fatalf("pgtest: %s\n--- %s (last lines) ---\n%s", fmt.Sprintf(format, args...), c.LogFile, c.logTail(40))
}

func (c *Cluster) logSize() int64 {
	fi, err := os.Stat(c.LogFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (c *Cluster) logSince(offset int64) string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func (c *Cluster) logTail(n int) string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// serverBinDir finds the PostgreSQL server programs: $PGTEST_BINDIR, `pg_config --bindir`,
// the newest /usr/lib/postgresql/<version>/bin (Debian, Ubuntu), or initdb's directory on
// PATH.
func serverBinDir() (string, error) {
	binOnce.Do(func() {
		has := func(dir string) bool {
			for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
				if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
					return false
				}
			}
			return true
		}
		var candidates []string
		if d := os.Getenv("PGTEST_BINDIR"); d != "" {
			candidates = append(candidates, d)
		}
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
		versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(versions, func(i, j int) bool { return pgVersion(versions[i]) > pgVersion(versions[j]) })
		candidates = append(candidates, versions...)
		if p, err := exec.LookPath("initdb"); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
		for _, d := range candidates {
			if has(d) {
				binDir = d
				return
			}
		}
		binErr = fmt.Errorf("no PostgreSQL server programs (initdb, pg_ctl, postgres) in $PGTEST_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH (looked in %q): install the server (apt-get install -y postgresql) or set PGTEST_BINDIR", candidates)
	})
	return binDir, binErr
}

func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

var (
	userOnce sync.Once
	runAsOS  *osUser
	userErr  error
)

// serverUser is nil when the test may run the server itself, or the postgres OS user when
// the test runs as root (initdb and postgres refuse root).
func serverUser() (*osUser, error) {
	userOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			userErr = fmt.Errorf("running as root, and initdb/postgres refuse root: they run as the postgres OS user, which is missing (%v); install the postgresql package or create the user", err)
			return
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			userErr = fmt.Errorf("postgres user: uid %q gid %q", u.Uid, u.Gid)
			return
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			userErr = fmt.Errorf("running as root: the server must run as the postgres OS user, and runuser (util-linux) is missing: %w", err)
			return
		}
		runAsOS = &osUser{name: "postgres", uid: uid, gid: gid, runuser: runuser}
	})
	return runAsOS, userErr
}
