//go:build !linux

package task

// peakRSS is not measured outside Linux.
func peakRSS() int64 { return 0 }
