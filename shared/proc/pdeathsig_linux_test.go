package proc_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/proc"
	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

// startFromLockedThread starts a child from a goroutine that is locked to
// its OS thread and exits without unlocking, so that Go retires the thread.
// A parent-death signal tied to that thread would kill the child at once.
func startFromLockedThread() (*proc.Process, error) {
	type res struct {
		p      *proc.Process
		err    error
		tid    int
		onMain bool
	}
	// Go never retires the main thread (it parks it instead), so a goroutine
	// that lands there proves nothing: it keeps the main thread, so that the
	// next try runs elsewhere, until we return.
	release := make(chan struct{})
	defer close(release)
	for range 10 {
		c := make(chan res)
		go func() {
			runtime.LockOSThread() // never unlocked below: the thread exits with us
			tid := syscall.Gettid()
			if tid == os.Getpid() {
				c <- res{onMain: true}
				<-release
				runtime.UnlockOSThread()
				return
			}
			p, err := proc.Start("sleeper", []string{"sleep", "60"}, nil, "", nil)
			c <- res{p: p, err: err, tid: tid}
		}()
		r := <-c
		if r.onMain {
			continue
		}
		if r.err != nil {
			return nil, r.err
		}
		time.Sleep(200 * time.Millisecond) // the thread's exit, and any signal it brings
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", r.tid)); err == nil {
			r.p.Stop(time.Second)
			return nil, fmt.Errorf("thread %d was not retired: nothing tested", r.tid)
		}
		if r.p.Exited() {
			return nil, fmt.Errorf("child died with the thread that started it: %v", r.p.Err())
		}
		return r.p, nil
	}
	return nil, errors.New("every goroutine ran on the main thread")
}

func TestChildSurvivesItsStartingThread(t *testing.T) {
	p, err := startFromLockedThread()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Error(err)
	}
}

// TestChildDiesWithParent checks the parent-death signal: a process killed
// without calling Stop takes its children with it. The parent is this test
// binary, re-executed.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("PROC_PDEATHSIG_HELPER") != "" {
		p, err := startFromLockedThread()
		if err != nil {
			proctest.KillParent(0, err)
		}
		proctest.KillParent(p.PID(), nil)
	}
	pid, err := proctest.ChildOfKilledParent("TestChildDiesWithParent", "PROC_PDEATHSIG_HELPER=1")
	if err != nil {
		t.Fatal(err)
	}
	if !proctest.WaitGroupGone(pid, 5*time.Second) {
		syscall.Kill(-pid, syscall.SIGKILL)
		t.Fatalf("child group %d outlived its killed parent", pid)
	}
}
