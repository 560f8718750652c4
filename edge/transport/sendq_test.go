package transport

import (
	"io"
	"net"
	"syscall"
	"testing"
)

// TestSendQueue: over the limit is not enough to be cut; over the limit with nothing
// acknowledged since the previous check is. A client that reads, however slowly, is not cut.
func TestSendQueue(t *testing.T) {
	if !canMeasureSendQueue {
		t.Skip("the send queue is measured on Linux only; elsewhere the write timeout cuts")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	client, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	const limit = 8 << 10
	q := newSendQueue(server, limit)
	if q == nil {
		t.Fatal("no send queue for a TCP connection")
	}
	if q.full() {
		t.Fatal("full before anything was written")
	}
	go server.Write(make([]byte, 1<<20)) // blocks once the buffers are full; ends with server.Close
	unacked := func() int { n, _ := unackedBytes(q.rc); return n }
	waitFor(t, func() bool { return unacked() > limit })

	if q.full() {
		t.Fatal("cut at the first check over the limit")
	}
	// The client reads a little: it acknowledged something, so it is not cut.
	acked0, _ := ackedBytes(q.rc)
	if _, err := io.ReadFull(client, make([]byte, 16<<10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { a, _ := ackedBytes(q.rc); return a > acked0 && unacked() > limit })
	if q.full() {
		t.Fatal("cut although the client acknowledged data since the last check")
	}
	// Now it reads nothing: the next check cuts.
	if !q.full() {
		t.Fatalf("not cut with %d bytes unacknowledged and no progress", unacked())
	}
	var nilQ *sendQueue
	if nilQ.full() || newSendQueue(server, 0) != nil {
		t.Fatal("a nil or disabled send queue must never be full")
	}
}
