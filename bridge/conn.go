package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxPendingWrite bounds the bytes a batchConn holds for writing; writers wait beyond it.
const maxPendingWrite = 1 << 20

// batchConn is the MQTT connection the bridge gives paho. paho reads a packet with several
// small reads (type, then the remaining length byte by byte, then the rest) and writes each
// packet, every PUBACK included, with its own write call; at tens of thousands of messages
// a second those system calls were the largest cost of the bridge. batchConn reads through a
// bufio.Reader (only paho's incoming goroutine reads) and coalesces writes: Write appends to
// a buffer and one flusher goroutine writes whatever has accumulated, so the PUBACKs that
// paho sends in a burst go out in one system call. Nothing waits for a timer: an idle
// connection's write is flushed at once.
//
// With a read delay (Config.ReadDelay) it also coalesces reads: when the socket was last read
// less than the delay ago, a read that would go to the socket (its buffer is empty) first waits
// until the delay has passed since then, so that the messages arriving meanwhile come in with one
// system call and one wake-up of the process instead of one each. An idle connection's first
// message is read at once; a busy connection is read at most once per delay, and a message waits
// at most the delay (plus the timer's lateness) before it is read.
//
// It implements sync.Locker so that paho's packet writer (packets.ControlPacket.WriteTo)
// keeps the pieces of one packet together. A write error is reported by the next Write and
// closes the connection, which paho's reader then reports.
type batchConn struct {
	net.Conn
	r *bufio.Reader

	// Read coalescing, used by paho's reading goroutine only.
	readDelay time.Duration
	lastFill  time.Time           // when a read from the socket last returned data
	now       func() time.Time    // time.Now (tests)
	sleep     func(time.Duration) // time.Sleep (tests)

	pkt sync.Mutex // held by paho while it writes one packet (Lock/Unlock)

	mu      sync.Mutex
	room    *sync.Cond // signalled when the flusher took the pending bytes
	pending []byte
	spare   []byte
	err     error
	closing bool

	kick chan struct{} // capacity 1: there are pending bytes
	done chan struct{} // closed when the flusher has exited
	once sync.Once
}

func newBatchConn(c net.Conn, readDelay time.Duration) *batchConn {
	b := &batchConn{Conn: c, readDelay: readDelay, now: time.Now, sleep: time.Sleep,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.r = bufio.NewReaderSize(fillReader{b}, 64<<10)
	b.room = sync.NewCond(&b.mu)
	go b.flusher()
	return b
}

func (b *batchConn) Lock()   { b.pkt.Lock() }
func (b *batchConn) Unlock() { b.pkt.Unlock() }

func (b *batchConn) Read(p []byte) (int, error) {
	if b.readDelay > 0 && b.r.Buffered() == 0 && !b.lastFill.IsZero() {
		if d := b.readDelay - b.now().Sub(b.lastFill); d > 0 {
			b.sleep(d)
		}
	}
	return b.r.Read(p)
}

// fillReader is what the bufio.Reader of a batchConn reads from: the socket, noting when data came.
type fillReader struct{ b *batchConn }

func (f fillReader) Read(p []byte) (int, error) {
	n, err := f.b.Conn.Read(p)
	if n > 0 && f.b.readDelay > 0 {
		f.b.lastFill = f.b.now()
	}
	return n, err
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for b.err == nil && !b.closing && len(b.pending) > maxPendingWrite {
		b.room.Wait()
	}
	if b.err != nil || b.closing {
		err := b.err
		b.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return 0, err
	}
	b.pending = append(b.pending, p...)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

// flusher writes the pending bytes until Close, then flushes what is left.
func (b *batchConn) flusher() {
	defer close(b.done)
	for {
		b.mu.Lock()
		for len(b.pending) == 0 && !b.closing {
			b.mu.Unlock()
			<-b.kick
			b.mu.Lock()
		}
		out, closing := b.pending, b.closing
		b.pending, b.spare = b.spare[:0], nil
		b.room.Broadcast()
		b.mu.Unlock()
		if len(out) > 0 {
			if closing {
				_ = b.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			}
			if _, err := b.Conn.Write(out); err != nil {
				b.mu.Lock()
				b.err = err
				b.room.Broadcast()
				b.mu.Unlock()
				b.Conn.Close()
				return
			}
		}
		b.mu.Lock()
		b.spare = out[:0]
		if closing && len(b.pending) == 0 {
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// Close flushes what was written (for at most 2 s) and closes the connection.
func (b *batchConn) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closing = true
		b.room.Broadcast()
		b.mu.Unlock()
		select {
		case b.kick <- struct{}{}:
		default:
		}
	})
	<-b.done
	return b.Conn.Close()
}

// dialBroker is autopaho's AttemptConnection: TCP or TLS, wrapped in a batchConn.
func dialBroker(ctx context.Context, u *url.URL, timeout, readDelay time.Duration, tlsCfg *tls.Config) (net.Conn, error) {
	host := u.Host
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	var (
		c   net.Conn
		err error
	)
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		c, err = d.DialContext(ctx, "tcp", host)
	case "mqtts", "ssl", "tls":
		cfg := tlsCfg.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		c, err = (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", host)
	default:
		return nil, errors.New("unsupported scheme " + u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	return newBatchConn(c, readDelay), nil
}
