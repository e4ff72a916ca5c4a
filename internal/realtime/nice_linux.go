//go:build linux

package realtime

import (
	"runtime"
	"syscall"
)

// lowerThreadPriority gives the calling goroutine a thread of its own at the given nice
// value (0 leaves it be). Linux keeps a nice value per thread, and raising one needs no
// privilege. A writer's thread then yields the processor to the request handlers and to
// PostgreSQL whenever they want it, and writes in the time they leave.
func lowerThreadPriority(nice int) error {
	if nice == 0 {
		return nil
	}
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}
