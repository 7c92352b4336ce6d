package emulators

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/proc"
)

// ErrNotInstalled reports that an emulator (or something it needs, such as
// Java) is missing from this machine. The test helpers skip on it outside CI.
var ErrNotInstalled = errors.New("emulator not installed")

// errBind reports that the emulator could not bind the port we picked: another
// process took it between our probe and the emulator's bind. Start retries.
var errBind = errors.New("port already in use")

const (
	// outputLimit bounds the captured output per emulator. The Pub/Sub
	// emulator logs a line per HTTP/1 request, so a long-lived shared one would
	// otherwise grow without limit; failures only need the tail.
	outputLimit = 64 << 10

	// tailLines is how much output an error message quotes.
	tailLines = 25

	// stopGrace is how long Close waits after SIGTERM before SIGKILL. The JVM
	// runs its shutdown hooks in well under a second; fake-gcs-server exits at once.
	stopGrace = 5 * time.Second

	// startAttempts bounds retries when the picked port was stolen.
	startAttempts = 3
)

const installHint = "install it with .ci/install-emulators.sh (or make emulators)"

// process is one emulator subprocess, leader of its own process group.
type process struct {
	*proc.Process
	out *proc.Tail
	dir string // working directory

	stopOnce sync.Once
	stopErr  error
	cleanup  func() // runs after the process is gone (temp dirs)
}

// startProcess starts bin in a new process group with the given environment
// and working directory, capturing its output.
func startProcess(name, bin string, args, env []string, dir string) (*process, error) {
	out := proc.NewTail(outputLimit)
	p, err := proc.Start(name, append([]string{bin}, args...), env, dir, out)
	if err != nil {
		return nil, err
	}
	return &process{Process: p, out: out, dir: dir}, nil
}

// outputTail formats the last lines of output for an error message.
func (p *process) outputTail() string {
	t := p.out.Lines(tailLines)
	if t == "" {
		return "(no output)"
	}
	return "last output:\n" + t
}

// readiness says how to tell that an emulator is serving.
type readiness struct {
	// marker must appear in the output before probing. It proves that this
	// process bound the port; without it a probe could be answered by
	// whichever process stole the port.
	marker string
	// bindFailure are output fragments meaning the bind failed. The Pub/Sub
	// emulator logs a BindException and keeps running, so exiting is not
	// enough of a signal.
	bindFailure []string
	probe       func(ctx context.Context) error
}

// waitReady polls until r is satisfied, the process exits, or ctx ends.
func (p *process) waitReady(ctx context.Context, r readiness) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	bindFailed := func() error {
		for _, s := range r.bindFailure {
			if p.out.Contains(s) {
				return fmt.Errorf("%s could not bind its port: %w\n%s", p.Name(), errBind, p.outputTail())
			}
		}
		return nil
	}
	var lastProbeErr error
	for {
		if err := bindFailed(); err != nil {
			return err
		}
		if p.Exited() {
			// Its last output may have arrived since the check above.
			if err := bindFailed(); err != nil {
				return err
			}
			return fmt.Errorf("%s exited before it was ready (%v)\n%s", p.Name(), p.Err(), p.outputTail())
		}
		if r.marker == "" || p.out.Contains(r.marker) {
			if lastProbeErr = r.probe(ctx); lastProbeErr == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			why := "no readiness line in its output yet"
			if lastProbeErr != nil {
				why = "last probe: " + lastProbeErr.Error()
			}
			return fmt.Errorf("%s not ready: %w (%s)\n%s", p.Name(), ctx.Err(), why, p.outputTail())
		case <-tick.C:
		}
	}
}

// close ends the whole process group: SIGTERM, then SIGKILL after stopGrace.
// It reports an error if the emulator had already died on its own, since a
// test that ran against a crashed emulator should not pass quietly.
func (p *process) close() error {
	p.stopOnce.Do(func() {
		var errs []error
		if p.Exited() {
			errs = append(errs, fmt.Errorf("%s had exited before Close (%v)\n%s", p.Name(), p.Err(), p.outputTail()))
		}
		// Also when it had exited: members that outlived the leader (say, a
		// wrapper that forked Java instead of exec'ing it) still carry the
		// group id.
		if err := p.Stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
		if p.cleanup != nil {
			p.cleanup()
		}
		p.stopErr = errlist.Join(errs...)
	})
	return p.stopErr
}

// withStartTimeout bounds startup when the caller gave no deadline, so a
// wedged emulator fails the test instead of hanging it until go test's timeout.
func withStartTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// startWithRetry runs start with fresh ports until it succeeds, fails for a
// reason other than a stolen port, or runs out of attempts.
func startWithRetry[T any](ctx context.Context, start func(ctx context.Context, port int) (T, error)) (T, error) {
	var zero T
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		var port int
		if port, err = proc.FreePort(); err != nil {
			return zero, err
		}
		var v T
		if v, err = start(ctx, port); err == nil {
			return v, nil
		}
		if !errors.Is(err, errBind) || ctx.Err() != nil {
			return zero, err
		}
	}
	return zero, fmt.Errorf("after %d attempts: %w", startAttempts, err)
}
