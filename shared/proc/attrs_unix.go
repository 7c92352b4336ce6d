//go:build unix && !linux

package proc

import (
	"os/exec"
	"syscall"
)

// Outside Linux there is no parent-death signal that this package uses: a
// child survives an owner that dies without calling Stop.
func setAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
