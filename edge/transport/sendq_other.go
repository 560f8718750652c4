//go:build !linux

package transport

import "syscall"

// Elsewhere the send queue is not measured: a stalled rider is cut by the write timeout.
const canMeasureSendQueue = false

func unackedBytes(syscall.RawConn) (int, bool) { return 0, false }

func ackedBytes(syscall.RawConn) (uint64, bool) { return 0, false }
