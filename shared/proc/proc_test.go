package proc_test

import (
	"errors"
	"io/fs"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/proc"
	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

// sh runs script with /bin/sh, output kept in the returned Tail.
func sh(t *testing.T, script string) (*proc.Process, *proc.Tail) {
	t.Helper()
	out := proc.NewTail(0)
	p, err := proc.Start("test shell", []string{"/bin/sh", "-c", script}, nil, t.TempDir(), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p, out
}

// firstLine waits for the child's first line of output.
func firstLine(t *testing.T, p *proc.Process, out *proc.Tail) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s, ok := strings.CutSuffix(out.String(), "\n"); ok {
			return s
		}
		if p.Exited() {
			t.Fatalf("exited before printing a line (%v): %q", p.Err(), out.String())
		}
	}
	t.Fatalf("no line of output in 10s: %q", out.String())
	return ""
}

// waitGroupGone fails t unless the group pgid is soon gone.
func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	if !proctest.WaitGroupGone(pgid, 5*time.Second) {
		syscall.Kill(-pgid, syscall.SIGKILL)
		t.Errorf("process group %d still exists", pgid)
	}
}

func TestStopReachesTheWholeGroup(t *testing.T) {
	// The background sleep is a grandchild that a kill of the shell alone
	// would leave running.
	p, out := sh(t, `sleep 60 & echo $!; wait`)
	grandchild, err := strconv.Atoi(firstLine(t, p, out))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %v: SIGTERM should have been enough", d)
	}
	if !p.Exited() {
		t.Error("Stop returned before the child exited")
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Errorf("Err = %v, want the SIGTERM exit", p.Err())
	}
	waitGroupGone(t, p.PID())
	if proctest.Alive(grandchild) {
		t.Errorf("grandchild %d still running after Stop", grandchild)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p, out := sh(t, `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	firstLine(t, p, out)
	const grace = 300 * time.Millisecond
	start := time.Now()
	if err := p.Stop(grace); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("Stop returned after %v, before the grace period", d)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || !strings.Contains(ee.String(), "killed") {
		t.Errorf("Err = %v, want killed", p.Err())
	}
	waitGroupGone(t, p.PID())
}

func TestExitIsReported(t *testing.T) {
	p, out := sh(t, `echo boom; exit 3`)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("no exit in 10s")
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 3 {
		t.Errorf("Err = %v, want exit status 3", p.Err())
	}
	if out.String() != "boom\n" {
		t.Errorf("output %q", out.String())
	}
	// Stopping an exited child only clears its (empty) group.
	if err := p.Stop(time.Minute); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
}

func TestStartFailure(t *testing.T) {
	_, err := proc.Start("missing tool", []string{"/nonexistent/tool"}, nil, "", nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "start missing tool") {
		t.Errorf("err = %v, want a wrapped ErrNotExist naming the step", err)
	}
	if _, err := proc.Start("nothing", nil, nil, "", nil); err == nil {
		t.Error("empty argv: no error")
	}
}

func TestFreePort(t *testing.T) {
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	l.Close()
}
