//go:build !unix

package emulators

import (
	"os"
	"os/exec"
	"syscall"
)

// Process groups are a Unix notion; elsewhere only the direct child is
// stopped, which is enough for fake-gcs-server but may leave the Pub/Sub
// emulator's JVM behind.
func setProcAttrs(*exec.Cmd) {}

func signalGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if sig == syscall.SIGTERM {
		sig = syscall.SIGKILL // Windows cannot deliver SIGTERM.
	}
	return p.Signal(sig)
}
