//go:build unix

package vertexlocal

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the job in a process group of its own, so that a
// cancel reaches everything the trainer started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup signals the job's whole process group.
func killGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}
