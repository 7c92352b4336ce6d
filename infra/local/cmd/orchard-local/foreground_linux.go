package main

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"
)

// takeForeground moves this process into its own process group and makes
// that the terminal's foreground group, so that Ctrl-C (SIGINT to the
// foreground group) reaches orchard-local alone: a make (or go run) above
// it would otherwise be interrupted too and exit non-zero after a clean
// stop. The returned function gives the terminal back. Without a
// controlling terminal, or when not in the foreground, it does nothing.
func takeForeground() (restore func()) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return func() {}
	}
	orig, err := foregroundGroup(tty)
	if err != nil || orig != syscall.Getpgrp() {
		tty.Close()
		return func() {}
	}
	// Setting the foreground group from what is, for a moment, a background
	// group raises SIGTTOU.
	signal.Ignore(syscall.SIGTTOU)
	if err := syscall.Setpgid(0, 0); err != nil {
		tty.Close()
		return func() {}
	}
	if err := setForegroundGroup(tty, syscall.Getpgrp()); err != nil {
		tty.Close()
		return func() {}
	}
	return func() {
		setForegroundGroup(tty, orig)
		tty.Close()
	}
}

func foregroundGroup(tty *os.File) (int, error) {
	var pgrp int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp))); e != 0 {
		return 0, e
	}
	return int(pgrp), nil
}

func setForegroundGroup(tty *os.File, pgrp int) error {
	p := int32(pgrp)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&p))); e != 0 {
		return e
	}
	return nil
}
