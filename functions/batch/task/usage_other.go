//go:build !linux

package task

// peakRSS is not measured outside Linux.
func peakRSS() int64 { return 0 }

// cpuSeconds is not measured outside Linux.
func cpuSeconds() float64 { return 0 }
