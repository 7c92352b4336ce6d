// Package proc runs the local stack's child processes (the functions
// server, the trainer) in their own process groups, so that stopping one
// also stops everything it spawned, and so that on Linux the kernel kills
// them if the parent dies without cleaning up.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a child process leading its own process group.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done

	stopOnce sync.Once
	stopErr  error
}

// Start starts argv with env and dir, its output going to out (may be nil).
func Start(name string, argv, env []string, dir string, out io.Writer) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("proc: empty command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	setAttrs(cmd)
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process (and process group) ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the exit error, once Done.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit or ctx to end.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop sends SIGTERM to the group, waits up to grace, then SIGKILLs the
// group, and finally kills any group member that outlived the leader. It
// returns an error only if signalling failed; calling it again returns the
// first result.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		var errs []error
		pg := p.PID()
		if err := signalGroup(pg, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop %s: SIGTERM: %w", p.Name, err))
		}
		t := time.NewTimer(grace)
		select {
		case <-p.done:
			t.Stop()
		case <-t.C:
			if err := signalGroup(pg, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("stop %s: SIGKILL: %w", p.Name, err))
			}
			<-p.done
		}
		if err := signalGroup(pg, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop %s: SIGKILL leftovers: %w", p.Name, err))
		}
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

// GroupAlive reports whether any process of the group pgid still exists.
func GroupAlive(pgid int) bool {
	err := signalGroup(pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
