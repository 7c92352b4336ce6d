//go:build unix && !linux

package emulators

import (
	"os/exec"
	"syscall"
)

// Outside Linux there is no parent-death signal: an emulator survives a test
// binary that dies without calling Close.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func signalGroup(pgid int, sig syscall.Signal) error {
	return syscall.Kill(-pgid, sig)
}
