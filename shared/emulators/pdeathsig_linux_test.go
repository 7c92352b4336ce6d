package emulators

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

// TestEmulatorDiesWithTestBinary checks the parent-death signal: a test binary
// killed without running Close (as go test's -timeout does) takes its
// emulator with it. The helper process is this test binary, re-executed.
func TestEmulatorDiesWithTestBinary(t *testing.T) {
	if kind := os.Getenv("EMULATORS_HELPER"); kind != "" {
		switch kind {
		case "gcs":
			g, err := StartGCS(context.Background())
			if err != nil {
				proctest.KillParent(0, err)
			}
			proctest.KillParent(g.proc.PID(), nil)
		case "pubsub":
			ps, err := StartPubSub(context.Background(), "p")
			if err != nil {
				proctest.KillParent(0, err)
			}
			proctest.KillParent(ps.proc.PID(), nil)
		}
	}
	kinds := []string{"gcs"}
	if os.Getenv("EMULATORS_SLOW_TESTS") != "" {
		kinds = append(kinds, "pubsub") // another JVM start; same mechanism
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			pid, err := proctest.ChildOfKilledParent("TestEmulatorDiesWithTestBinary", "EMULATORS_HELPER="+kind)
			if err != nil {
				if !InCI() {
					t.Skipf("helper could not start the emulator: %v", err)
				}
				t.Fatalf("helper could not start the emulator: %v", err)
			}
			if !proctest.WaitGroupGone(pid, 5*time.Second) {
				syscall.Kill(-pid, syscall.SIGKILL)
				t.Fatalf("emulator group %d outlived its killed parent", pid)
			}
		})
	}
}
