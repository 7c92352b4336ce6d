//go:build unix

package proctest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GroupGone reports whether nothing runs any more as the process pid or in
// the process group pid: what a stopped child that led its own group must
// leave behind. Members other than the leader, once killed, are reparented
// and stay zombies until init (or a subreaper) reaps them, which this test
// binary cannot hasten; where /proc can tell, zombies count as gone.
func GroupGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH) {
		return true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	id := strconv.Itoa(pid)
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue // not a process
		}
		// state, ppid, pgrp, ...
		if f, ok := stat(e.Name()); ok && len(f) > 2 && (e.Name() == id || f[2] == id) && f[0] != "Z" {
			return false
		}
	}
	return true
}

// WaitGroupGone waits up to d for GroupGone(pid). Signals take a moment to
// land, and a stopper need not wait for members other than the leader.
func WaitGroupGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); !GroupGone(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// KillParent is the re-executed side of ChildOfKilledParent: it reports the
// PID of the child it started (or err, why it has none) to the test that ran
// it, then kills its own process with SIGKILL, so that no cleanup runs: as
// when go test's -timeout, the OOM killer or a crash ends a test binary.
func KillParent(pid int, err error) {
	if err != nil {
		fmt.Println("error:", err)
	} else {
		fmt.Println(pid)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // until the signal lands
}

// ChildOfKilledParent re-executes this test binary to run only the test
// named test, with env added to its environment. That run must start a
// child and call KillParent. ChildOfKilledParent returns the child's PID
// once its parent is dead, or an error quoting what the run said instead.
func ChildOfKilledParent(test string, env ...string) (int, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("re-run %s: %w", test, err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("re-run %s: %w", test, err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Wait()
	pid, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
	if err != nil {
		return 0, fmt.Errorf("re-run %s reported no child: %q", test, line)
	}
	return pid, nil
}
