package emulators

import (
	"os/exec"
	"syscall"
)

func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so Close can signal the emulator and anything
		// it spawned with one kill(-pgid).
		Setpgid: true,
		// If the test binary dies without running Close (go test's -timeout
		// panic, a t.Fatal in TestMain, the shared emulator when no TestMain
		// calls CloseShared), the kernel kills the emulator rather than
		// leaving it orphaned. The signal is tied to the OS thread that
		// started the child; Go only retires threads of goroutines that
		// exit while locked to them, which the test helpers never are.
		Pdeathsig: syscall.SIGKILL,
	}
}

func signalGroup(pgid int, sig syscall.Signal) error {
	return syscall.Kill(-pgid, sig)
}
