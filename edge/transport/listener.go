package transport

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// preface is the HTTP/2 client connection preface (RFC 9113 §3.4). A connection that starts with
// it speaks HTTP/2 with prior knowledge (h2c): native gRPC. Anything else is HTTP/1.x.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// route says where a connection goes after sniffing.
type route uint8

const (
	routeHTTP route = iota
	routeGRPC
)

// sniff reads from c just enough to tell an HTTP/2 client preface from anything else: it stops
// at the first byte that differs from the preface (one read for an HTTP/1 request) or when the
// whole preface has arrived. It returns the bytes read, which must be replayed.
func sniff(c net.Conn, buf *[len(preface)]byte) (route, int, error) {
	n := 0
	for n < len(preface) {
		m, err := c.Read(buf[n:])
		end := n + m
		for ; n < end; n++ {
			if buf[n] != preface[n] {
				return routeHTTP, end, nil
			}
		}
		if err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return routeHTTP, n, nil
			}
			return routeHTTP, n, err
		}
	}
	return routeGRPC, n, nil
}

// sniffedConn replays the sniffed bytes before reading from the connection.
type sniffedConn struct {
	net.Conn
	head []byte
}

func (c *sniffedConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		if len(c.head) == 0 {
			c.head = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the wrapped connection (the name net/http and crypto/tls use for unwrapping).
func (c *sniffedConn) NetConn() net.Conn { return c.Conn }

// connQueue is a net.Listener fed by the sniffer: Accept returns the connections pushed to it.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; false (and c closed) when the queue is closed.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		c.Close()
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// splitter accepts from one listener and routes every connection to the gRPC or the HTTP queue
// by its first bytes.
type splitter struct {
	l         net.Listener
	timeout   time.Duration // for the first bytes of a connection (HTTP/2: its first request's headers)
	maxHeader int           // cap of the first HTTP/2 request's decoded headers
	onStall   func()        // a connection cut for not sending its first bytes in time (nil: none)
	grpc      *connQueue
	http      *connQueue
	wg        sync.WaitGroup // sniffing goroutines
}

func newSplitter(l net.Listener, timeout time.Duration) *splitter {
	return &splitter{l: l, timeout: timeout, maxHeader: 16 << 10, grpc: newConnQueue(l.Addr()), http: newConnQueue(l.Addr())}
}

// run accepts until the listener fails or is closed, then closes both queues after the sniffing
// goroutines have finished. It returns nil when the listener was closed.
func (s *splitter) run() error {
	defer func() {
		s.wg.Wait()
		s.grpc.Close()
		s.http.Close()
	}()
	var delay time.Duration
	for {
		c, err := s.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if isTemporary(err) {
				// Out of file descriptors, an aborted handshake: back off and retry, as net/http does.
				delay = backoff(delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.wg.Add(1)
		go s.route(c)
	}
}

func backoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

// isTemporary reports accept errors worth retrying (out of file descriptors, aborted handshakes).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// route sniffs c and pushes it to its queue: HTTP/1.x to net/http; HTTP/2 by its first
// request (h2route): native gRPC to grpc-go, the rest to net/http's h2c server. A connection
// that does not send its first bytes (HTTP/2: its first request's headers and our settings'
// acknowledgement) within the timeout is closed and counted (onStall); an HTTP/2 connection
// that sends nothing after its preface goes to grpc-go, which owns idle connections.
func (s *splitter) route(c net.Conn) {
	defer s.wg.Done()
	var buf [len(preface)]byte
	if s.timeout > 0 {
		c.SetDeadline(time.Now().Add(s.timeout))
	}
	r, n, err := sniff(c, &buf)
	var head []byte
	if err == nil && r == routeGRPC {
		var toGRPC bool
		var rest []byte
		toGRPC, rest, err = h2route(c, c, s.maxHeader)
		if err == nil {
			head = append(append(make([]byte, 0, n+len(rest)), buf[:n]...), rest...)
			if !toGRPC {
				r = routeHTTP
			}
		}
	} else if err == nil {
		head = append([]byte(nil), buf[:n]...)
	}
	if err != nil {
		if isTimeout(err) && s.onStall != nil {
			s.onStall()
		}
		c.Close()
		return
	}
	if s.timeout > 0 {
		c.SetDeadline(time.Time{})
	}
	sc := &sniffedConn{Conn: c, head: head}
	if r == routeGRPC {
		s.grpc.push(sc)
	} else {
		s.http.push(sc)
	}
}

// close stops accepting: the queues close once the sniffing goroutines are done.
func (s *splitter) close() error { return s.l.Close() }
