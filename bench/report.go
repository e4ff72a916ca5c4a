package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// report collects the table's rows and the notes under it.
type report struct {
	mu    sync.Mutex
	rows  []row
	notes []string
}

type row struct{ bench, figure, value, goal, result string }

func (r *report) add(bench, figure, value, goal, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row{bench, figure, value, goal, result})
}

func (r *report) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) print(w io.Writer, machine string) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tFIGURE\tVALUE\tGOAL\tRESULT")
	for _, x := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.bench, x.figure, x.value, x.goal, x.result)
	}
	_ = tw.Flush()
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "* "+n)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, machine)
}

// verdict is the RESULT column: "ok" or "MISS".
func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

var started = time.Now()

// progress reports what a benchmark is doing, on stderr.
func progress(bench, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %-7s %s\n", time.Since(started).Seconds(), bench, fmt.Sprintf(format, args...))
}

// latencies is a sample of request durations.
type latencies []time.Duration

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100).
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// ms renders a duration in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// p50p99 renders "p50 / p99 ms".
func p50p99(l latencies) string {
	return ms(l.percentile(50)) + " / " + ms(l.percentile(99)) + " ms"
}

// thousands renders n with thin separators: 1,000,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rate renders a per-second figure.
func rate(v float64, unit string) string {
	return thousands(int64(v+0.5)) + " " + unit
}

// machine describes where the figures come from: CPU, cores, memory, kernel, PostgreSQL
// and Go.
func machine(ctx context.Context) string {
	cpu := "unknown CPU"
	var memKiB int64
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				memKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	kernel := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel += " " + strings.TrimSpace(string(b))
	}
	pg := "PostgreSQL unreachable"
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, adminURL()); err == nil {
		var v string
		if err := conn.QueryRow(cctx, "SHOW server_version").Scan(&v); err == nil {
			pg = "PostgreSQL " + v
		}
		var sb, sc string
		if err := conn.QueryRow(cctx, "SELECT current_setting('shared_buffers'), current_setting('synchronous_commit')").Scan(&sb, &sc); err == nil {
			pg += fmt.Sprintf(" (shared_buffers %s, synchronous_commit %s)", sb, sc)
		}
		_ = conn.Close(cctx)
	}
	return fmt.Sprintf("machine: %s, %d cores, %.1f GiB RAM, %s; %s; %s; client and server on the same machine",
		cpu, runtime.NumCPU(), float64(memKiB)/(1<<20), kernel, pg, runtime.Version())
}

// histogram counts durations in buckets a 32nd of a power of two wide (under 3.2 % apart)
// from 1 µs up, and keeps the exact maximum: a fixed 4 KiB however many samples, so each of
// a thousand subscribers can keep one.
type histogram struct {
	counts [histBuckets]uint32
	n      int64
	max    time.Duration
}

const (
	histSub     = 32                      // buckets per power of two
	histLinear  = 2 * histSub             // 0…63 µs: one bucket per µs
	histBuckets = histLinear + 32*histSub // up to 2^37 µs (38 hours)
	histMaxUS   = int64(1)<<37 - 1
)

func histBucket(d time.Duration) int {
	us := min(max(d.Microseconds(), 0), histMaxUS)
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(uint64(us)) - 6 // us>>shift is in [32, 63]
	return histLinear + (shift-1)*histSub + int(us>>shift) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) time.Duration {
	if i < histLinear {
		return time.Duration(i) * time.Microsecond
	}
	shift := (i-histLinear)/histSub + 1
	low := int64((i-histLinear)%histSub+histSub) << shift
	return time.Duration(low+int64(1)<<shift/2) * time.Microsecond
}

func (h *histogram) add(d time.Duration) {
	h.counts[histBucket(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100), to the bucket's precision.
func (h *histogram) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(1, int64(p/100*float64(h.n)+0.999999))
	var seen int64
	for i, c := range h.counts {
		seen += int64(c)
		if seen >= rank {
			return min(histValue(i), h.max)
		}
	}
	return h.max
}
