package proc

import (
	"bytes"
	"strings"
	"sync"
)

// DefaultTailLimit is what a zero Tail keeps.
const DefaultTailLimit = 64 << 10

// Tail is an io.Writer for a child's output that keeps only the end of it:
// enough to quote in an error or scan for a log line, without letting a
// long-lived, chatty child (the Pub/Sub emulator logs every request) grow
// memory without bound. It is safe for concurrent use. The zero Tail keeps
// DefaultTailLimit bytes.
type Tail struct {
	limit int
	mu    sync.Mutex
	buf   []byte
}

// NewTail returns a Tail that keeps (at least) the last limit bytes.
func NewTail(limit int) *Tail { return &Tail{limit: limit} }

func (b *Tail) keep() int {
	if b.limit <= 0 {
		return DefaultTailLimit
	}
	return b.limit
}

// Write appends p, dropping old output beyond the limit. It never fails.
func (b *Tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	// Trim only at twice the limit, so that a chatty child costs an
	// amortised copy per byte rather than a limit-sized copy per line.
	if n := b.keep(); len(b.buf) > 2*n {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-n:]...)
	}
	return len(p), nil
}

// String returns the last limit bytes.
func (b *Tail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf[max(0, len(b.buf)-b.keep()):])
}

// Contains reports whether s occurs in the output kept, which may reach
// back up to twice the limit.
func (b *Tail) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf, []byte(s))
}

// Lines returns the last n lines of the output kept, for messages.
func (b *Tail) Lines(n int) string { return LastLines(b.String(), n) }

// LastLines returns the last n lines of s, without the final newline.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
