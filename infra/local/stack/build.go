package stack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// buildTick is how often GoBuild reports that a build is still running.
const buildTick = 10 * time.Second

// GoBuild runs `go build -o BINDIR/NAME PKG` in root, with env added to
// the environment, and returns the path. The go command runs in its own
// process group, stopped as a whole if ctx ends (and, on Linux, if this
// process dies), so no compiler or linker outlives an interrupted build.
//
// With progress set, the build runs with -v and progress gets a line when
// it starts and one every 10 s with the packages compiled so far: a cold
// Go build cache takes minutes here, and go itself is silent meanwhile.
func GoBuild(ctx context.Context, progress io.Writer, root, binDir, pkg, name string, env ...string) (string, error) {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(binDir, name)
	argv := []string{"go", "build", "-o", out, pkg}
	if progress == nil {
		return out, runIn(ctx, root, append(os.Environ(), env...), nil, argv...)
	}
	argv = []string{"go", "build", "-v", "-o", out, pkg}
	counter := &lineCounter{}
	stop := Tick(buildTick, func(d time.Duration) {
		fmt.Fprintf(progress, "    ... still building %s: %d packages compiled, %s (a cold Go build cache takes a few minutes)\n",
			name, counter.count(), d.Round(time.Second))
	})
	err := runIn(ctx, root, append(os.Environ(), env...), counter, argv...)
	stop()
	return out, err
}

// Tick calls fn with the elapsed time every d until stop is called (and
// has returned), for progress lines during long silent steps.
func Tick(d time.Duration, fn func(time.Duration)) (stop func()) {
	t0 := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn(time.Since(t0))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// lineCounter counts the package lines of `go build -v` (not the "# pkg"
// headers of compiler messages).
type lineCounter struct {
	mu      sync.Mutex
	n       int
	partial []byte
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf := append(c.partial, p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		if l := buf[:i]; len(l) > 0 && l[0] != '#' {
			c.n++
		}
		buf = buf[i+1:]
	}
	c.partial = append([]byte(nil), buf...)
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// oneLine joins the last n non-empty lines of s with " | ", for errors
// that must stay on one line.
func oneLine(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return "no output"
	}
	return strings.Join(keep[max(0, len(keep)-n):], " | ")
}
