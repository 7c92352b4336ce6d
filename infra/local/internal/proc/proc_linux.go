package proc

import (
	"os/exec"
	"syscall"
)

func setAttrs(cmd *exec.Cmd) {
	// Own group for one kill(-pgid); the kernel kills the child if this
	// process dies first (Pdeathsig is tied to the starting OS thread, which
	// Go only retires for goroutines locked to it, which callers are not).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(pgid int, sig syscall.Signal) error { return syscall.Kill(-pgid, sig) }
