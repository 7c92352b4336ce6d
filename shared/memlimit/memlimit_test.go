package memlimit

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"testing"
)

func TestLimitIsPositive(t *testing.T) {
	n, container := Limit()
	if n <= 0 {
		t.Fatalf("Limit() = %d (container %v), want > 0", n, container)
	}
	t.Logf("memory limit %d bytes (container: %v)", n, container)
}

// An explicit GOMEMLIMIT always wins.
func TestSetGoMemLimitKeepsAnExplicitLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "123MiB")
	debug.SetMemoryLimit(123 << 20)
	SetGoMemLimit(slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("GOMEMLIMIT is %d after SetGoMemLimit, want the explicit %d", got, 123<<20)
	}
}

// Inside a memory-limited container the runtime limit becomes GoRatio of
// it; outside one it stays unlimited. (To see the container branch here:
// run the test binary in a memory cgroup, e.g. one with
// memory.limit_in_bytes = 2 GiB.)
func TestSetGoMemLimitFollowsTheContainer(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	for _, k := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	SetGoMemLimit(slog.New(slog.DiscardHandler))
	got := debug.SetMemoryLimit(-1)
	n, container := Limit()
	if !container {
		if got != math.MaxInt64 {
			t.Errorf("no container limit, yet GOMEMLIMIT became %d", got)
		}
		return
	}
	if want := int64(float64(n) * GoRatio); got != want {
		t.Errorf("GOMEMLIMIT = %d, want %.1f of the container's %d = %d", got, GoRatio, n, want)
	}
}
