package proc

import (
	"fmt"
	"net"
)

// FreePort asks the kernel for a free loopback TCP port, for a child that is
// told which port to listen on. The port is released before the child binds
// it, so another process may take it first: a caller that cannot afford that
// checks that its child really bound the port and retries with a new one.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
