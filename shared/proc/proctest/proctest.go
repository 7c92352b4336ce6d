// Package proctest checks, in tests, that child processes are gone: after
// a Stop, a Close or a killed parent, nothing an owner started may be left
// running. It reads Linux's /proc; where there is none, the helpers that
// need it skip the test.
package proctest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// stat returns the fields of /proc/PID/stat after the command name: state,
// ppid, ... The name is in parentheses and may itself contain spaces and
// parentheses, so the fields start after the last ')'.
func stat(pid string) ([]string, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(b[i+1:])), true
}

// parents maps every process ID to its parent's.
func parents(t testing.TB) map[int]int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	m := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, ok := stat(e.Name()); ok && len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				m[pid] = pp
			}
		}
	}
	return m
}

// Children lists the processes whose parent is pid.
func Children(t testing.TB, pid int) []int {
	t.Helper()
	var out []int
	for p, pp := range parents(t) {
		if pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// Descendants lists every process below pid: children, their children, and
// so on.
func Descendants(t testing.TB, pid int) []int {
	t.Helper()
	parent := parents(t)
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// Alive reports whether pid exists and is not a zombie. A killed process
// whose parent has not reaped it yet is a zombie: it no longer runs.
func Alive(pid int) bool {
	f, ok := stat(strconv.Itoa(pid))
	return ok && len(f) > 0 && f[0] != "Z"
}
