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

// ackedBytes returns the bytes the peer has acknowledged since the connection opened
// (TCP_INFO tcpi_bytes_acked).
func ackedBytes(rc syscall.RawConn) (n uint64, ok bool) {
	err := rc.Control(func(fd uintptr) {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			n, ok = ti.Bytes_acked, true
		}
	})
	return n, ok && err == nil
}
