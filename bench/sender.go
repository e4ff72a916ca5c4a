package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// The fan-out benchmark's paced sends run in a process of their own. In the process that
// also holds the thousand subscribers, every send's reply waited for a processor behind
// the reader goroutines the same fan-out had just woken: the POST latency it printed was
// mostly the load generator's own queue, not the server's (the server's histogram of the
// same sends said p50 8 ms where the client said 166 ms). A separate process is what the
// sender is in production anyway: another device.

// senderArg is the argument that makes the bench binary a sender process.
const senderArg = "-internal-sender"

// sendJob is what a sender process is asked to do: send n messages at rate, each from one
// of senders goroutines, with bodies prefix + (lo+k) + ":" + the send time in Unix
// nanoseconds (so a subscriber measures send → receive without asking this process).
type sendJob struct {
	Target  sendTarget `json:"target"`
	Rate    float64    `json:"rate"`
	N       int        `json:"n"`
	Lo      int        `json:"lo"`
	Senders int        `json:"senders"`
	Prefix  string     `json:"prefix"`
}

// sendTarget is where a sender process publishes: Parlor's POST /v1/rooms/{Room}/messages
// as the user of Token, or Centrifugo's /api/publish into channel Room with APIKey.
type sendTarget struct {
	Kind   string `json:"kind"` // "parlor" or "centrifugo"
	URL    string `json:"url"`
	Token  string `json:"token,omitempty"`
	Room   string `json:"room"`
	APIKey string `json:"api_key,omitempty"`
}

// sendReport is what a sender process measured.
type sendReport struct {
	Acked     []int   `json:"acked"` // the k of every acknowledged send
	Failed    int     `json:"failed"`
	FirstErr  string  `json:"first_err,omitempty"`
	WindowNS  int64   `json:"window_ns"`
	Achieved  float64 `json:"achieved"`
	LatencyNS []int64 `json:"latency_ns"` // each acknowledged send, request → reply
}

// timedBody is message k's body, stamped with the time it is sent.
func timedBody(prefix string, k int) string {
	return prefix + strconv.Itoa(k) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
}

// paceRemote runs a paced run of sends in a sender process; tick, every 2 s, says how long
// it has run. acked[k] is set for every acknowledged send.
func paceRemote(ctx context.Context, job sendJob, acked []bool, tick func(elapsed time.Duration)) (*pacedSends, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, senderArg)
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the sender process: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ticker := time.NewTicker(2 * time.Second)
	defer ticker.Stop()
	for err == nil {
		select {
		case err = <-done:
			if err != nil {
				return nil, fmt.Errorf("sender process: %w: %s", err, tail(stderr.Bytes(), 10))
			}
			return readReport(out.Bytes(), acked)
		case <-ticker.C:
			if tick != nil {
				tick(time.Since(start))
			}
		}
	}
	return nil, err
}

func readReport(b []byte, acked []bool) (*pacedSends, error) {
	var rep sendReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("sender process: read its report: %w", err)
	}
	r := &pacedSends{acked: len(rep.Acked), failed: rep.Failed, window: time.Duration(rep.WindowNS), achieved: rep.Achieved}
	if rep.FirstErr != "" {
		r.firstErr = errors.New(rep.FirstErr)
	}
	for _, ns := range rep.LatencyNS {
		r.hist.add(time.Duration(ns))
	}
	for _, k := range rep.Acked {
		if k >= 0 && k < len(acked) {
			acked[k] = true
		}
	}
	return r, nil
}

// runSender is the sender process: it reads a sendJob on stdin, sends, and writes its
// sendReport on stdout.
func runSender() int {
	var job sendJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		fmt.Fprintln(os.Stderr, "sender: read the job:", err)
		return 2
	}
	publish, err := job.Target.publisher()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		return 2
	}
	ctx := context.Background()
	ackedAt := make([]bool, job.N)
	latency := make([]int64, job.N)
	r, err := pace(ctx, job.Rate, job.N, job.Senders, func(k int) error {
		t0 := time.Now()
		if err := publish(ctx, timedBody(job.Prefix, job.Lo+k)); err != nil {
			return err
		}
		latency[k], ackedAt[k] = int64(time.Since(t0)), true
		return nil
	}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		return 1
	}
	rep := sendReport{Failed: r.failed, WindowNS: int64(r.window), Achieved: r.achieved}
	if r.firstErr != nil {
		rep.FirstErr = r.firstErr.Error()
	}
	for k, ok := range ackedAt {
		if ok {
			rep.Acked = append(rep.Acked, k)
			rep.LatencyNS = append(rep.LatencyNS, latency[k])
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 1
	}
	return 0
}

// publisher returns the function that publishes one message body to the target.
func (t sendTarget) publisher() (func(context.Context, string) error, error) {
	client := newHTTPClient()
	var url, auth, header string
	var payload func(body string) any
	switch t.Kind {
	case "parlor":
		url, header, auth = t.URL+"/v1/rooms/"+t.Room+"/messages", "Authorization", "Bearer "+t.Token
		payload = func(body string) any { return map[string]any{"client_msg_id": uuid.New(), "body": body} }
	case "centrifugo":
		url, header, auth = t.URL+"/api/publish", "X-API-Key", t.APIKey
		payload = func(body string) any { return map[string]any{"channel": t.Room, "data": map[string]string{"m": body}} }
	default:
		return nil, fmt.Errorf("unknown target kind %q", t.Kind)
	}
	return func(ctx context.Context, body string) error {
		b, err := json.Marshal(payload(body))
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(header, auth)
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		reply, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		if t.Kind == "parlor" && res.StatusCode != http.StatusCreated || t.Kind == "centrifugo" && res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", res.StatusCode, reply)
		}
		if t.Kind == "centrifugo" && bytes.Contains(reply, []byte(`"error"`)) {
			return fmt.Errorf("publish: %.200s", reply)
		}
		return nil
	}, nil
}
