//go:build !linux

package realtime

// lowerThreadPriority does nothing where threads have no nice value of their own.
func lowerThreadPriority(int) error { return nil }
