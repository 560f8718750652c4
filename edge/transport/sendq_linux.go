package transport

import (
	"syscall"

	"golang.org/x/sys/unix"
)

const canMeasureSendQueue = true

// unackedBytes returns the bytes in the socket's send queue that the peer has not acknowledged
// (SIOCOUTQ).
func unackedBytes(rc syscall.RawConn) (n int, ok bool) {
	err := rc.Control(func(fd uintptr) {
		v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		n, ok = v, err == nil
	})
	return n, ok && err == nil
}
