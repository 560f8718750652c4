package transport

import (
	"context"
	"net"
	"syscall"
)

// sendQueue watches one rider socket for a client that stopped reading. The kernel keeps what a
// client has not acknowledged in the socket's send buffer, and a client whose application stops
// reading stops acknowledging once its own receive buffer is full. So a send queue over the
// limit that the client acknowledged nothing of between two batches means the rider stopped
// reading, while the queue still has room for the transport's "too slow" message (WebSocket
// close 4008, SSE comment, gRPC-Web trailer). A client that reads slowly (a large snapshot over
// a slow link) keeps acknowledging and is not cut. Without this a stalled rider costs nothing
// visible for minutes (kernel autotuning lets a send buffer grow to megabytes, and the session
// coalesces by vehicle) and is then cut by the write timeout with no message at all. A nil
// *sendQueue never reports full. Not safe for concurrent use: one writer checks it.
type sendQueue struct {
	rc    syscall.RawConn
	limit int
	over  bool   // the last check found the queue over the limit
	acked uint64 // the bytes the client had acknowledged then
}

// newSendQueue sets c's send buffer (SO_SNDBUF, which Linux doubles for its bookkeeping) to limit
// and returns a watcher of it; nil when limit <= 0, c is not TCP or the platform cannot tell the
// queue's length.
func newSendQueue(c net.Conn, limit int) *sendQueue {
	if limit <= 0 || !canMeasureSendQueue {
		return nil
	}
	tc := tcpConn(c)
	if tc == nil {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	tc.SetWriteBuffer(limit) // best effort: a smaller buffer makes the write timeout cut first
	return &sendQueue{rc: rc, limit: limit}
}

// full reports whether the client has left more than the limit unacknowledged and acknowledged
// nothing since the previous check.
func (q *sendQueue) full() bool {
	if q == nil {
		return false
	}
	n, ok := unackedBytes(q.rc)
	if !ok || n <= q.limit {
		q.over = false
		return false
	}
	acked, ok := ackedBytes(q.rc)
	if !ok {
		return false
	}
	stalled := q.over && acked == q.acked
	q.over, q.acked = true, acked
	return stalled
}

// tcpConn unwraps c (NetConn, as net/http and crypto/tls name it) down to its *net.TCPConn.
func tcpConn(c net.Conn) *net.TCPConn {
	for c != nil {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// connKey carries an HTTP request's connection in its context (http.Server.ConnContext), for
// the gRPC-Web streams, which only see the request.
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func connFrom(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}
