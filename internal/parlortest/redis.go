package parlortest

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server of a test's own, on 127.0.0.1, for tests that kill it and
// start it again; it is stopped when the test ends.
type RedisServer struct {
	Port int
	URL  string // redis://127.0.0.1:port/0, for config.Config.RedisURL
	t    testing.TB
	cmd  *exec.Cmd
}

// StartRedis runs a redis-server on a free port and waits until it answers.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is needed for this test: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("a free port for redis-server: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	r := &RedisServer{Port: port, URL: "redis://127.0.0.1:" + strconv.Itoa(port) + "/0", t: t}
	r.Restart()
	t.Cleanup(r.Kill)
	return r
}

// Kill stops the server at once (SIGKILL): what it held is gone.
func (r *RedisServer) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Restart starts a killed server again on the same port, empty, and waits until it answers.
func (r *RedisServer) Restart() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.Port)})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d does not answer", r.Port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
