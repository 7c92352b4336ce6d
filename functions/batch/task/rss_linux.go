//go:build linux

package task

import "syscall"

// peakRSS is the process's peak resident set size in bytes (onnxruntime's
// C allocations included, which the Go runtime's statistics miss).
func peakRSS() int64 {
	var u syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &u) != nil {
		return 0
	}
	return u.Maxrss * 1024 // kilobytes on Linux
}
