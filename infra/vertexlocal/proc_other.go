//go:build !unix

package vertexlocal

import (
	"os/exec"
	"syscall"
)

func setProcessGroup(*exec.Cmd) {}

// killGroup kills the process only: there are no process groups here.
func killGroup(cmd *exec.Cmd, _ syscall.Signal) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
