//go:build !linux

package main

// takeForeground does nothing outside Linux: Ctrl-C reaches every process
// in the terminal's foreground group, a make above orchard-local included.
func takeForeground() (restore func()) { return func() {} }
