package emulators

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestEmulatorDiesWithTestBinary checks the parent-death signal: a test binary
// killed without running Close (as go test's -timeout does) takes its
// emulator with it. The helper process is this test binary, re-executed.
func TestEmulatorDiesWithTestBinary(t *testing.T) {
	if kind := os.Getenv("EMULATORS_HELPER"); kind != "" {
		var pid int
		switch kind {
		case "gcs":
			g, err := StartGCS(context.Background())
			if err != nil {
				fmt.Println("error", err)
				os.Exit(3)
			}
			pid = g.proc.pid()
		case "pubsub":
			ps, err := StartPubSub(context.Background(), "p")
			if err != nil {
				fmt.Println("error", err)
				os.Exit(3)
			}
			pid = ps.proc.pid()
		}
		fmt.Println(pid)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	kinds := []string{"gcs"}
	if os.Getenv("EMULATORS_SLOW_TESTS") != "" {
		kinds = append(kinds, "pubsub") // another JVM start; same mechanism
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestEmulatorDiesWithTestBinary$")
			cmd.Env = append(os.Environ(), "EMULATORS_HELPER="+kind)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			cmd.Wait()
			pid, err := strconv.Atoi(line[:max(0, len(line)-1)])
			if err != nil {
				if !InCI() {
					t.Skipf("helper could not start the emulator: %q", line)
				}
				t.Fatalf("helper could not start the emulator: %q", line)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !groupGone(pid) {
				if time.Now().After(deadline) {
					syscall.Kill(-pid, syscall.SIGKILL)
					t.Fatalf("emulator group %d outlived its killed parent", pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
