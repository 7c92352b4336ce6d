package emulators

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
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

// tailBuffer keeps (at least) the last outputLimit bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	// Trim only at twice the limit, so that a chatty emulator costs an
	// amortised copy per byte rather than a 64 KiB copy per line.
	if len(b.buf) > 2*outputLimit {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-outputLimit:]...)
	}
	return len(p), nil
}

// String returns the last outputLimit bytes.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf[max(0, len(b.buf)-outputLimit):])
}

func (b *tailBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf, []byte(s))
}

// tail returns the last n lines, for error messages.
func (b *tailBuffer) tail(n int) string {
	s := strings.TrimRight(b.String(), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// process is one emulator subprocess, leader of its own process group.
type process struct {
	name string // for messages: "fake-gcs-server", "pubsub emulator"
	cmd  *exec.Cmd
	out  *tailBuffer

	done    chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result, valid after done

	stopOnce sync.Once
	stopErr  error
	cleanup  func() // runs after the process is gone (temp dirs)
}

// startProcess starts bin in a new process group with the given environment
// and working directory, capturing its output.
func startProcess(name, bin string, args, env []string, dir string) (*process, error) {
	out := &tailBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	setProcAttrs(cmd)
	// A grandchild that inherited the output pipe would otherwise keep Wait
	// blocked after the emulator itself has exited.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// outputTail formats the last lines of output for an error message.
func (p *process) outputTail() string {
	t := p.out.tail(tailLines)
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
	var lastProbeErr error
	for {
		for _, s := range r.bindFailure {
			if p.out.contains(s) {
				return fmt.Errorf("%s could not bind its port: %w\n%s", p.name, errBind, p.outputTail())
			}
		}
		if p.exited() {
			for _, s := range r.bindFailure {
				if p.out.contains(s) {
					return fmt.Errorf("%s could not bind its port: %w\n%s", p.name, errBind, p.outputTail())
				}
			}
			return fmt.Errorf("%s exited before it was ready (%v)\n%s", p.name, p.waitErr, p.outputTail())
		}
		if r.marker == "" || p.out.contains(r.marker) {
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
			return fmt.Errorf("%s not ready: %w (%s)\n%s", p.name, ctx.Err(), why, p.outputTail())
		case <-tick.C:
		}
	}
}

// stop ends the whole process group: SIGTERM, then SIGKILL after stopGrace.
// It reports an error if the emulator had already died on its own, since a
// test that ran against a crashed emulator should not pass quietly.
func (p *process) stop() error {
	p.stopOnce.Do(func() {
		var errs []error
		if p.exited() {
			errs = append(errs, fmt.Errorf("%s had exited before Close (%v)\n%s", p.name, p.waitErr, p.outputTail()))
		}
		pgid := p.pid()
		if err := signalGroup(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop %s: SIGTERM process group %d: %w", p.name, pgid, err))
		}
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			if err := signalGroup(pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("stop %s: SIGKILL process group %d: %w", p.name, pgid, err))
			}
			<-p.done
		}
		// Members that outlived the leader (say, a wrapper that forked Java
		// instead of exec'ing it) still carry the group id.
		if err := signalGroup(pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop %s: SIGKILL leftovers in process group %d: %w", p.name, pgid, err))
		}
		if p.cleanup != nil {
			p.cleanup()
		}
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

// freePort asks the kernel for a free loopback port. The port is released
// before the emulator binds it, so another process may take it first; the
// start functions detect that and retry with a new port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withStartTimeout bounds startup when the caller gave no deadline, so a
// wedged emulator fails the test instead of hanging it until go test's timeout.
func withStartTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// childEnv returns the environment for an emulator: ours, minus variables
// that would change its behaviour behind the flags we pass, plus extra.
func childEnv(dropPrefixes []string, extra ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, p := range dropPrefixes {
			if strings.HasPrefix(kv, p) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startWithRetry runs start with fresh ports until it succeeds, fails for a
// reason other than a stolen port, or runs out of attempts.
func startWithRetry[T any](ctx context.Context, start func(ctx context.Context, port int) (T, error)) (T, error) {
	var zero T
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		var port int
		if port, err = freePort(); err != nil {
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
