package proc

import (
	"os/exec"
	"syscall"
)

func setAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so Stop reaches the child and everything it
		// spawned with one kill(-pgid).
		Setpgid: true,
		// If this process dies without calling Stop (go test's -timeout
		// panic, a t.Fatal in TestMain, a SIGKILL, a crash), the kernel
		// kills the child rather than leaving it orphaned with its port,
		// memory and half-written outputs. The kernel sends the signal when
		// the thread that forked the child exits, not the process. Go
		// retires a thread only when a goroutine exits while locked to it
		// (runtime.LockOSThread without UnlockOSThread); Start therefore
		// forks from a fresh goroutine, which is never locked.
		Pdeathsig: syscall.SIGKILL,
	}
}
