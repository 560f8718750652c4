package transport

import (
	"context"
	"net"
	"syscall"
	"time"

	"github.com/meshcast/meshcast/edge/session"
)

// sendQueue watches one rider socket for a client that stopped reading. The kernel keeps what a
// client has not acknowledged in the socket's send buffer, and a client whose application stops
// reading stops acknowledging once its own receive buffer is full. The rule is about progress
// over time: a rider whose unacknowledged bytes are over the limit is not written to (its
// session keeps coalescing by vehicle meanwhile) until it has acknowledged enough to be under
// it again; if it acknowledges nothing for the timeout (the write timeout) while over the limit,
// it is cut, while the socket still has room for the transport's "too slow" message (WebSocket
// close 4008, SSE comment, gRPC-Web trailer; SO_SNDBUF is twice the limit). A client that reads,
// however slowly (a large snapshot over a slow link, a burst it is behind on), keeps
// acknowledging and is never cut. Without this a stalled rider costs nothing visible for minutes
// (kernel autotuning lets a send buffer grow to megabytes) and is then cut by the write timeout
// with no message at all.
//
// A probe costs system calls (SIOCOUTQ; TCP_INFO too when over the limit), so it is not made at
// every write: the queue can only have grown by what was written since the last probe, so while
// the last probe's count plus the bytes written since stays within the limit no probe is needed.
// A client that keeps up is probed about once per limit's worth of bytes written. A nil
// *sendQueue never holds a write. Not safe for concurrent use: one writer uses it.
type sendQueue struct {
	rc      syscall.RawConn
	limit   int
	timeout time.Duration
	now     func() time.Time
	bound   int // at most this many bytes are unacknowledged now
	unacked int // at the last probe
	probes  int // probes made (tests)
}

// pollEvery is how often a held rider's queue is probed again.
const pollEvery = 20 * time.Millisecond

// newSendQueue sets c's send buffer (SO_SNDBUF, which Linux doubles for its bookkeeping) to limit
// and returns a watcher of it that cuts after timeout without progress; nil when limit <= 0, c is
// not TCP or the platform cannot tell the queue's length.
func newSendQueue(c net.Conn, limit int, timeout time.Duration) *sendQueue {
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
	return &sendQueue{rc: rc, limit: limit, timeout: timeout, now: time.Now}
}

// over probes the queue: whether more than the limit is unacknowledged, and the bytes acknowledged
// so far (when over).
func (q *sendQueue) over() (bool, uint64) {
	q.probes++
	n, ok := unackedBytes(q.rc)
	q.unacked = n
	if !ok || n <= q.limit {
		return false, 0
	}
	acked, ok := ackedBytes(q.rc)
	return ok, acked
}

// fits is wait without waiting: true when n bytes may be written now (counted as written),
// false when the queue is over the limit (then wait holds the write).
func (q *sendQueue) fits(n int) bool {
	if q == nil {
		return true
	}
	ok, _ := q.try(n)
	return ok
}

// try counts n bytes as written when they may be written now (probing the queue only when the
// bytes written since the last probe could have passed the limit); when the queue is over the
// limit it returns false and the bytes acknowledged so far.
func (q *sendQueue) try(n int) (bool, uint64) {
	if q.bound+n <= q.limit {
		q.bound += n
		return true, 0
	}
	over, acked := q.over()
	if !over {
		q.bound = q.unacked + n
		return true, 0
	}
	return false, acked
}

// wait is called before writing n bytes. When the queue may be over the limit it probes it, and
// if it is, holds the write until the client has acknowledged enough to bring it under the limit
// (nil), or until it acknowledged nothing for the timeout (session.ErrTooSlow), or ctx ends
// (ctx.Err()).
func (q *sendQueue) wait(ctx context.Context, n int) error {
	if q == nil {
		return nil
	}
	ok, acked := q.try(n)
	if ok {
		return nil
	}
	since := q.now()
	t := time.NewTimer(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now := q.now()
		o, a := q.over()
		switch {
		case !o:
			q.bound = q.unacked + n
			return nil
		case a != acked:
			acked, since = a, now // progress: a reader that is behind
		case now.Sub(since) >= q.timeout:
			return session.ErrTooSlow
		}
		t.Reset(pollEvery)
	}
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
