//go:build !unix

package proc

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// Process groups are a Unix notion; elsewhere the child runs as is.
func setAttrs(*exec.Cmd) {}

// signalGroup can only reach the child itself, and only to kill it: there is
// no SIGTERM to deliver. Grandchildren (the Pub/Sub emulator's JVM under its
// start script) may be left behind.
func signalGroup(p *os.Process, _ syscall.Signal) error {
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
