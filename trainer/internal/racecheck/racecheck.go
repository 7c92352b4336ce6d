// Package racecheck guards tests that execute GoMLX graphs against a known
// incompatibility: the matrix products of github.com/gomlx/compute v0.1.3
// (pure-Go backend) compute pointers with uintptr arithmetic that Go's
// checkptr instrumentation rejects, and -race turns checkptr on, so the
// first training step would kill the whole test binary with "fatal error:
// checkptr: pointer arithmetic result points to invalid allocation".
//
// Run race tests with checkptr off for the GoMLX packages only:
//
//	go test -race -gcflags='github.com/gomlx/...=-d=checkptr=0' ./trainer/...
package racecheck

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// Hint is the flag that makes GoMLX runnable under -race.
const Hint = `-gcflags='github.com/gomlx/...=-d=checkptr=0'`

// GoMLXRunnable reports whether this binary can execute GoMLX graphs: it was
// built without -race, or with checkptr disabled by -gcflags.
func GoMLXRunnable() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return true
	}
	race, gcflags := false, ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "-race":
			race = s.Value == "true"
		case "-gcflags":
			gcflags = s.Value
		}
	}
	return !race || strings.Contains(gcflags, "checkptr=0")
}

// Require skips t (fails it under CI=true) when GoMLX graphs cannot run in
// this binary, instead of letting checkptr crash every test in it.
func Require(tb testing.TB) {
	tb.Helper()
	if GoMLXRunnable() {
		return
	}
	msg := "GoMLX (gomlx/compute v0.1.3) fails checkptr, which -race enables; rerun with " + Hint
	if ci := os.Getenv("CI"); ci == "true" || ci == "1" {
		tb.Fatal(msg)
	}
	tb.Skip("skipping: " + msg)
}
