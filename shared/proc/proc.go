// Package proc runs child processes that must not outlive their owner: the
// emulators that tests start (fake-gcs-server, the Pub/Sub emulator's JVM),
// the local stack's functions server and `go build` runs, and the trainer
// jobs of the Vertex AI stand-in.
//
// Each child leads a process group of its own, so that stopping it reaches
// everything it spawned with one kill(-pgid): the Pub/Sub emulator is a
// shell script that execs Java, `go build` forks compilers and linkers, a
// trainer may start helpers. On Linux the child also gets a parent-death
// signal, so that the kernel kills it if this process dies without stopping
// it (a go test -timeout panic, a SIGKILL, a crash). Stop ends the group
// gently first (SIGTERM), then for certain (SIGKILL).
//
// The package also holds what every owner of such a child needs around it:
// Tail, a bounded buffer for the child's output that errors quote, and
// FreePort, for children that are told which port to listen on.
//
// Process groups and parent-death signals are Unix notions. Elsewhere the
// package still builds, but Stop can only kill the child itself.
package proc

import (
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/orchard-mlops/orchard/shared/errlist"
)

// Process is a child process leading its own process group.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, valid after done

	stopOnce sync.Once
	stopErr  error
}

// Start starts argv[0] with the arguments argv[1:], the environment env (nil:
// this process's), the working directory dir ("" for ours) and both stdout
// and stderr going to out (nil: discarded). name is what messages call it.
//
// A Process must be stopped with Stop, even after it has exited on its own:
// members of its group may have outlived it.
func Start(name string, argv, env []string, dir string, out io.Writer) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: empty command", name)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	setAttrs(cmd)
	// When out is not a file, Wait copies the output through a pipe. A
	// grandchild that inherited it (say, one the child started in the
	// background) would otherwise keep Wait, and so Done, blocked after the
	// child itself has exited.
	cmd.WaitDelay = 2 * time.Second
	// The parent-death signal is tied to the OS thread that forks the
	// child, not to this process (see setAttrs). Fork from a goroutine of
	// our own: it is never locked to its thread, so it runs on a thread that
	// Go never retires, whatever the caller does with runtime.LockOSThread.
	started := make(chan error, 1)
	go func() { started <- cmd.Start() }()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &Process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the name given to Start.
func (p *Process) Name() string { return p.name }

// PID is the child's process ID, which is also its process group ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited and its output has been copied.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the child ended, once Done: nil for a zero exit status, else
// exec.Cmd.Wait's error (an *exec.ExitError carries the status or signal).
// Before Done it is nil.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop ends the child's process group: SIGTERM, then SIGKILL if the child
// has not exited within grace, then SIGKILL again for any member that
// outlived the child (a wrapper that forked instead of exec'ing, a job
// left in the background). It returns once the child has exited, with an
// error only if signalling failed: how the child ended is Err's to say.
// Stopping a child that has already exited just clears its group. Later
// calls return the first call's result.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		var errs []error
		pgid := p.PID()
		if err := signalGroup(p.cmd.Process, syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: SIGTERM process group %d: %w", p.name, pgid, err))
		}
		t := time.NewTimer(grace)
		select {
		case <-p.done:
			t.Stop()
		case <-t.C:
			if err := signalGroup(p.cmd.Process, syscall.SIGKILL); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: SIGKILL process group %d: %w", p.name, pgid, err))
			}
			<-p.done
		}
		if err := signalGroup(p.cmd.Process, syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: SIGKILL leftovers in process group %d: %w", p.name, pgid, err))
		}
		p.stopErr = errlist.Join(errs...)
	})
	return p.stopErr
}
