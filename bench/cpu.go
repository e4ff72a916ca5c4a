package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the machine's CPU time so far (from /proc/stat) and this process's (the
// in-process server and its load generator).
type cpuSample struct {
	at         time.Time
	busy, all  float64 // machine CPU-seconds: not idle / total
	self       float64 // this process's CPU-seconds
	haveSystem bool
}

// userHZ is the unit of /proc/stat; 100 on every Linux that matters.
const userHZ = 100

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = tv(ru.Utime) + tv(ru.Stime)
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return s
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return s
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		s.all += v / userHZ
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v / userHZ
		}
	}
	s.haveSystem = true
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// cpuUse is how busy the machine was between two samples, and this process's share.
type cpuUse struct {
	busy    float64 // fraction of all cores
	self    float64 // fraction of all cores used by this process
	perCall float64 // this process's CPU-seconds per unit of work
	other   float64 // CPU-seconds per unit of work used by everything else (PostgreSQL, Redis…)
	ok      bool
}

func cpuBetween(a, b cpuSample, work int64) cpuUse {
	if !a.haveSystem || !b.haveSystem || b.all <= a.all || work <= 0 {
		return cpuUse{}
	}
	busy, all, self := b.busy-a.busy, b.all-a.all, b.self-a.self
	return cpuUse{
		busy: busy / all, self: self / all,
		perCall: self / float64(work), other: (busy - self) / float64(work), ok: true,
	}
}
