//go:build !unix

package realtime

import (
	"net"
	"syscall"
)

// rawConnOf: without unix write(2), every write goes through the waiting path.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func writeNow(syscall.RawConn, []byte) (int, error) { return 0, nil }
