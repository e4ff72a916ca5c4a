package faults_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// buildParlor compiles ./cmd/parlor into a directory of the test's own.
func buildParlor(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "parlor")
	buildCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(buildCtx, "go", "build", "-o", bin, "./cmd/parlor")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/parlor: %s", out)
	return bin
}

// instance is a `parlor serve` process.
type instance struct {
	name string
	url  string
	cmd  *exec.Cmd
	logs *parlortest.SyncBuffer
	// exited is closed once the process has ended and its output is read.
	exited chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startInstance runs `parlor serve` with env (plus a free APP_ADDR) and waits until /readyz
// answers 200; the process is killed when the test ends.
func startInstance(t *testing.T, bin, name string, env []string) *instance {
	t.Helper()
	addr, metrics := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "serve")
	var clean []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APP_") && !strings.HasPrefix(kv, "DB_") && !strings.HasPrefix(kv, "REDIS_") && !strings.HasPrefix(kv, "STRIPE_") {
			clean = append(clean, kv)
		}
	}
	cmd.Env = append(append(clean, env...), "APP_ADDR="+addr, "APP_METRICS_ADDR="+metrics)
	in := &instance{name: name, url: "http://" + addr, cmd: cmd, logs: &parlortest.SyncBuffer{}, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = in.logs
	require.NoError(t, cmd.Start())
	logged := make(chan struct{})
	go func() {
		defer close(in.exited)
		<-logged
		_ = cmd.Wait()
	}()
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			_, _ = in.logs.Write(append(sc.Bytes(), '\n'))
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-in.exited
		}
		if t.Failed() {
			t.Logf("instance %s logged:\n%s", name, tail(in.logs.String(), 40))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(in.url + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return in
			}
		}
		require.True(t, time.Now().Before(deadline), "instance %s is not ready after 20 s:\n%s", name, in.logs.String())
		select {
		case <-in.exited:
			t.Fatalf("instance %s exited before it was ready:\n%s", name, in.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill ends the process at once (SIGKILL): its sockets drop without a close frame.
func (in *instance) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, in.cmd.Process.Kill())
	<-in.exited
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// killUser is a user of the instance-kill test, with a client per instance.
type killUser struct {
	id      uuid.UUID
	access  string
	clients []*apiclient.ClientWithResponses
}

func newClient(t *testing.T, base, token string) *apiclient.ClientWithResponses {
	t.Helper()
	c, err := apiclient.NewClientWithResponses(base,
		apiclient.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}),
		apiclient.WithRequestEditorFn(parlortest.Bearer(token)))
	require.NoError(t, err)
	return c
}

// stormSocket is one client socket: it resumes from its last token whenever its connection
// ends, on its own instance while that answers and on the other one when it does not, and
// checks what it receives of the room: every event once, in seq order, without a gap.
type stormSocket struct {
	user *killUser
	home int
	room uuid.UUID

	mu      sync.Mutex
	token   string
	lastSeq int64
	seen    map[uuid.UUID]int // message id → times received
	faults  []string          // duplicates, gaps, reorderings
	// closes counts how connections ended: a close code, or "dropped" without one.
	reconnects int
	failovers  int
	closes     map[string]int
}

func (s *stormSocket) fault(format string, args ...any) {
	s.faults = append(s.faults, fmt.Sprintf(format, args...))
}

// dial gets a ticket from instance at and opens a socket there, resuming after the last
// token.
func (s *stormSocket) dial(at *instance, idx int) (*websocket.Conn, error) {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := s.user.clients[idx].CreateRealtimeTicketWithResponse(tctx)
	if err != nil {
		return nil, err
	}
	if res.JSON201 == nil {
		return nil, fmt.Errorf("ticket: %d %s", res.StatusCode(), res.Body)
	}
	q := url.Values{"ticket": {res.JSON201.Ticket}}
	s.mu.Lock()
	if s.token != "" {
		q.Set("since", s.token)
	}
	s.mu.Unlock()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(at.url, "http")+"/v1/realtime?"+q.Encode(), nil)
	return conn, err
}

// read takes frames until the connection ends.
func (s *stormSocket) read(conn *websocket.Conn) {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			var ce *websocket.CloseError
			switch {
			case asClose(err, &ce):
				s.closes[fmt.Sprint(ce.Code)]++
			default:
				s.closes["dropped"]++
			}
			return
		}
		var f struct {
			Type  string               `json:"type"`
			Token string               `json:"token"`
			Event *apiclient.RoomEvent `json:"event"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			s.mu.Lock()
			s.fault("frame is not JSON: %s", data)
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		switch f.Type {
		case "hello":
			if s.token == "" {
				s.token = f.Token
			}
		case "event":
			e := f.Event
			if e != nil && e.RoomId == s.room {
				if e.Seq != s.lastSeq+1 {
					s.fault("seq %d after %d", e.Seq, s.lastSeq)
				}
				if e.Seq > s.lastSeq {
					s.lastSeq = e.Seq
				}
				if e.Type == apiclient.MessageCreated && e.Message != nil {
					s.seen[e.Message.Id]++
					if s.seen[e.Message.Id] > 1 {
						s.fault("message %s (seq %d) received %d times", e.Message.Id, e.Seq, s.seen[e.Message.Id])
					}
				}
			}
			s.token = f.Token
		}
		s.mu.Unlock()
	}
}

func asClose(err error, target **websocket.CloseError) bool {
	ce, ok := err.(*websocket.CloseError)
	if ok {
		*target = ce
	}
	return ok
}

// run keeps the socket connected until ctx ends; when storm closes it drops its
// connection once, after jitter, and reconnects like every other socket at that moment.
func (s *stormSocket) run(runCtx context.Context, insts []*instance, storm <-chan struct{}, jitter time.Duration, up *sync.WaitGroup) {
	target := s.home
	first := true
	trigger := make(chan struct{})
	go func() {
		select {
		case <-storm:
		case <-runCtx.Done():
			return
		}
		select {
		case <-time.After(jitter):
			close(trigger)
		case <-runCtx.Done():
		}
	}()
	stormed := false
	for runCtx.Err() == nil {
		conn, err := s.dial(insts[target], target)
		if err != nil {
			// Its instance does not answer: go to the other one, as behind a load balancer.
			target = 1 - target
			s.mu.Lock()
			s.failovers++
			s.mu.Unlock()
			select {
			case <-time.After(20 * time.Millisecond):
			case <-runCtx.Done():
			}
			continue
		}
		if first {
			first = false
			up.Done()
		}
		done := make(chan struct{})
		go func() { s.read(conn); close(done) }()
		var stormC <-chan struct{}
		if !stormed {
			stormC = trigger
		}
		select {
		case <-done:
		case <-stormC:
			stormed = true
			_ = conn.Close()
			<-done
		case <-runCtx.Done():
			_ = conn.Close()
			<-done
			return
		}
		s.mu.Lock()
		s.reconnects++
		s.mu.Unlock()
	}
}

// Issue 12: one of two instances is killed with SIGKILL in the middle of a reconnect storm.
// Every socket resumes with its last token — those of the dead instance on the other one —
// and every message acknowledged meanwhile reaches every socket exactly once, in room order,
// without a gap; none is missing from the database.
func TestAnInstanceKilledInAReconnectStormCostsNoSocketAnEvent(t *testing.T) {
	t.Parallel()
	const (
		users          = 8
		socketsPerUser = 20
		sendEvery      = 25 * time.Millisecond
	)
	began := time.Now()
	bin := buildParlor(t)
	t.Logf("built ./cmd/parlor in %s", time.Since(began).Round(time.Millisecond))

	dbURL := pgtest.NewURL(t)
	lots := "1000000/1m"
	env := []string{
		"APP_ENV=development", "APP_LOG_LEVEL=warn",
		"APP_JWT_KEYS=" + parlortest.KeyEntry(parlortest.TestKeyID, parlortest.TestKeySeed),
		"DB_URL=" + dbURL, "DB_MAX_CONNS=8", "DB_MIGRATE_ON_START=false", "APP_JOB_WORKERS=2",
		"REDIS_URL=" + parlortest.RedisURL(), "REDIS_KEY_PREFIX=parlortest:" + uuid.NewString() + ":",
		"APP_RATE_SYNC=" + lots, "APP_RATE_READ=" + lots, "APP_RATE_WRITE=" + lots, "APP_RATE_PUBLIC=" + lots,
		"APP_REGISTER_RATE_IP=" + lots, "APP_LOGIN_RATE_IP=" + lots,
		// A killed instance's sockets stay in the shared presence count until its instance
		// timeout passes (10 s), and the storm reconnects them at once: room for them and
		// their replacements.
		"APP_WS_MAX_CONNS_PER_USER=100",
		"APP_SHUTDOWN_TIMEOUT=2s",
	}
	insts := []*instance{startInstance(t, bin, "a", env), startInstance(t, bin, "b", env)}
	victim, survivor := insts[0], insts[1]

	// Users who share a public room.
	var us []*killUser
	var room uuid.UUID
	for i := range users {
		anon, err := apiclient.NewClientWithResponses(survivor.url)
		require.NoError(t, err)
		res, err := anon.RegisterWithResponse(ctx, apiclient.RegisterJSONRequestBody{
			Email: fmt.Sprintf("storm%d-%s@example.com", i, uuid.NewString()[:8]), Password: "password-storm", DisplayName: fmt.Sprint("storm", i),
		})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
		u := &killUser{id: res.JSON201.User.Id, access: res.JSON201.AccessToken}
		for _, in := range insts {
			u.clients = append(u.clients, newClient(t, in.url, u.access))
		}
		us = append(us, u)
		if i == 0 {
			vis := apiclient.VisibilityPublic
			created, err := u.clients[1].CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "storm", Visibility: &vis})
			require.NoError(t, err)
			require.Equal(t, http.StatusCreated, created.StatusCode(), string(created.Body))
			room = created.JSON201.Id
			continue
		}
		joined, err := u.clients[i%2].JoinRoomWithResponse(ctx, room, nil)
		require.NoError(t, err)
		require.Less(t, joined.StatusCode(), 300, string(joined.Body))
	}
	check, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer check.Close(ctx)
	var lastSeq int64
	require.NoError(t, check.QueryRow(ctx, "SELECT last_seq FROM rooms WHERE id = $1", room).Scan(&lastSeq))

	// Sockets on both instances, half each.
	runCtx, stopSockets := context.WithCancel(ctx)
	defer stopSockets()
	storm := make(chan struct{})
	var up, wg sync.WaitGroup
	var socks []*stormSocket
	for i := range users * socketsPerUser {
		s := &stormSocket{user: us[i%users], home: i % 2, room: room, lastSeq: lastSeq, seen: map[uuid.UUID]int{}, closes: map[string]int{}}
		socks = append(socks, s)
		up.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(runCtx, insts, storm, time.Duration(rand.Int64N(int64(time.Second))), &up)
		}()
	}
	upDone := make(chan struct{})
	go func() { up.Wait(); close(upDone) }()
	select {
	case <-upDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the sockets did not all connect within 30 s")
	}
	// Every socket has its hello (and so a token) before the first message.
	require.Eventually(t, func() bool {
		for _, s := range socks {
			s.mu.Lock()
			tok := s.token
			s.mu.Unlock()
			if tok == "" {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "every socket got its hello")

	// A steady sender through the surviving instance.
	var (
		ackMu  sync.Mutex
		acked  []uuid.UUID
		failed []string
	)
	stopSending := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(sendEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopSending:
				return
			case <-tick.C:
			}
			res, err := us[0].clients[1].SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "storm"})
			ackMu.Lock()
			switch {
			case err != nil:
				failed = append(failed, err.Error())
			case res.StatusCode() == http.StatusCreated:
				acked = append(acked, res.JSON201.Id)
			default:
				failed = append(failed, fmt.Sprintf("%d %s", res.StatusCode(), res.Body))
			}
			ackMu.Unlock()
		}
	}()

	time.Sleep(time.Second) // traffic flowing on every socket
	close(storm)
	time.Sleep(400 * time.Millisecond) // the storm is under way: some sockets back, some not yet gone
	victim.kill(t)
	killed := time.Now()
	t.Logf("instance %s killed (SIGKILL) 400 ms into the reconnect storm", victim.name)
	time.Sleep(3 * time.Second) // sends go on while the storm settles
	close(stopSending)
	<-sent
	lastAck := time.Now()
	ackMu.Lock()
	want := append([]uuid.UUID(nil), acked...)
	ackMu.Unlock()

	// Every socket catches up with everything acknowledged, within a bound after the kill.
	const bound = 20 * time.Second
	complete := func() int {
		missing := 0
		for _, s := range socks {
			s.mu.Lock()
			for _, id := range want {
				if s.seen[id] == 0 {
					missing++
					break
				}
			}
			s.mu.Unlock()
		}
		return missing
	}
	for complete() > 0 {
		require.Less(t, time.Since(killed), bound, "%d of %d sockets still miss acknowledged messages %s after the kill", complete(), len(socks), bound)
		time.Sleep(20 * time.Millisecond)
	}
	took, afterLast := time.Since(killed), time.Since(lastAck)
	stopSockets()
	wg.Wait()

	reconnects, failovers, onDead := 0, 0, 0
	closes := map[string]int{}
	for i, s := range socks {
		reconnects += s.reconnects
		failovers += s.failovers
		if s.home == 0 {
			onDead++
			require.Positive(t, s.failovers, "socket %d of the killed instance moved to the other", i)
		}
		for k, v := range s.closes {
			closes[k] += v
		}
		require.Empty(t, s.faults, "socket %d (home %s)", i, insts[s.home].name)
		for _, id := range want {
			require.Equal(t, 1, s.seen[id], "socket %d received acknowledged message %s once", i, id)
		}
	}
	t.Logf("%d sockets (%d on the killed instance), %d users in one room; %d messages acknowledged (%d sends failed: %v); "+
		"%d reconnects, %d failed dials that moved a socket; closes seen %v; every socket complete %s after the kill, %s after the last send",
		len(socks), onDead, users, len(want), len(failed), failed, reconnects, failovers, closes, took.Round(time.Millisecond), afterLast.Round(time.Millisecond))
	for code := range closes {
		require.Contains(t, []string{"1006", "dropped"}, code, "a socket was closed by the server with %s", code)
	}
	require.Empty(t, failed, "the surviving instance acknowledged every send")
	require.NotEmpty(t, want)

	var stored int
	require.NoError(t, check.QueryRow(ctx, "SELECT count(*) FROM messages WHERE id = ANY($1)", want).Scan(&stored))
	require.Equal(t, len(want), stored, "every acknowledged message is in the database")
}

// Issue 10 (hole 6, the cap is cluster-wide): the sockets of an instance killed with SIGKILL
// never say goodbye, so their entries in the shared presence count stay until they expire
// (two ping intervals and a pong timeout: 60 s by default). Until then a user at the cap who
// reconnects to the surviving instance was refused with 4009. A dead instance's sockets must
// stop counting within seconds, while the cap still holds for the live ones.
func TestAKilledInstancesSocketsStopCountingAgainstTheCap(t *testing.T) {
	t.Parallel()
	const maxConns = 2
	bin := buildParlor(t)
	env := []string{
		"APP_ENV=development", "APP_LOG_LEVEL=warn",
		"APP_JWT_KEYS=" + parlortest.KeyEntry(parlortest.TestKeyID, parlortest.TestKeySeed),
		"DB_URL=" + pgtest.NewURL(t), "DB_MAX_CONNS=4", "DB_MIGRATE_ON_START=false", "APP_JOB_WORKERS=1",
		"REDIS_URL=" + parlortest.RedisURL(), "REDIS_KEY_PREFIX=parlortest:" + uuid.NewString() + ":",
		fmt.Sprintf("APP_WS_MAX_CONNS_PER_USER=%d", maxConns), "APP_RATE_WRITE=1000000/1m", // tickets, one per try
		"APP_SHUTDOWN_TIMEOUT=2s",
	}
	victim, survivor := startInstance(t, bin, "a", env), startInstance(t, bin, "b", env)
	anon, err := apiclient.NewClientWithResponses(survivor.url)
	require.NoError(t, err)
	reg, err := anon.RegisterWithResponse(ctx, apiclient.RegisterJSONRequestBody{
		Email: "cap-" + uuid.NewString()[:8] + "@example.com", Password: "password-cap", DisplayName: "cap",
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, reg.StatusCode(), string(reg.Body))
	u := &killUser{id: reg.JSON201.User.Id, access: reg.JSON201.AccessToken}
	u.clients = []*apiclient.ClientWithResponses{newClient(t, victim.url, u.access), newClient(t, survivor.url, u.access)}

	// open dials a socket on insts[idx] and returns it after its first frame: hello when
	// admitted, or the close code it was refused with (0 when admitted).
	open := func(at *instance, idx int) (*websocket.Conn, int) {
		t.Helper()
		s := &stormSocket{user: u}
		conn, err := s.dial(at, idx)
		require.NoError(t, err)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := conn.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			_ = conn.Close()
			return nil, ce.Code
		}
		require.NoError(t, err)
		require.Contains(t, string(data), `"type":"hello"`)
		_ = conn.SetReadDeadline(time.Time{})
		t.Cleanup(func() { _ = conn.Close() })
		return conn, 0
	}
	for range maxConns {
		_, code := open(victim, 0)
		require.Zero(t, code, "a socket under the cap is admitted")
	}
	_, code := open(survivor, 1)
	require.Equal(t, 4009, code, "the cap counts the sockets of the other instance")

	victim.kill(t)
	killed := time.Now()
	const bound = 20 * time.Second
	for {
		_, code := open(survivor, 1)
		if code == 0 {
			break
		}
		require.Equal(t, 4009, code)
		require.Less(t, time.Since(killed), bound, "the killed instance's sockets still count against the cap %s after the kill", bound)
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("a new socket was admitted %s after the kill", time.Since(killed).Round(time.Millisecond))
	_, code = open(survivor, 1)
	require.Zero(t, code, "the second socket of the cap is admitted")
	_, code = open(survivor, 1)
	require.Equal(t, 4009, code, "the cap still holds for the live instance's sockets")
}
