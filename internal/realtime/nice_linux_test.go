//go:build linux

package realtime

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// threadsAtNice counts this process's threads whose nice value is nice (field 19 of
// /proc/self/task/TID/stat, after the command name in parentheses).
func threadsAtNice(t *testing.T, nice int) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	n := 0
	for _, task := range tasks {
		stat, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread has exited
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		// After the name: state is field 3, nice field 19.
		if v, err := strconv.Atoi(fields[19-3]); err == nil && v == nice {
			n++
		}
	}
	return n
}

// APP_WS_WRITER_NICE reaches the socket writers' threads, and only theirs: an operator who
// sets it sees the writers (and nothing else of the process) at that nice value.
func TestTheSocketWritersRunAtTheConfiguredNiceValue(t *testing.T) {
	const nice = 7 // a value nothing else in the test process uses
	require.Zero(t, threadsAtNice(t, nice))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newWriterPool(ctx, nice, slog.New(slog.DiscardHandler))
	require.Eventually(t, func() bool { return threadsAtNice(t, nice) == p.writers }, 5*time.Second, 10*time.Millisecond,
		"the %d writer threads should run at nice %d", p.writers, nice)
}
