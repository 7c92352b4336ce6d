//go:build unix

package proc

import (
	"errors"
	"os"
	"syscall"
)

// signalGroup signals every member of the group that p leads. A group with
// no members left is not an error: that is what stopping aims for.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
