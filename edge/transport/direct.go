package transport

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshcast/meshcast/edge/session"
)

// Direct writes: WebSocket and SSE riders on hijacked HTTP/1.1 connections have no writer
// goroutine while they keep up. Their session is polled (session.SetNotify, TryBatch): when an
// idle rider's first update arrives, the fan-out puts the rider on a flusher's queue, and the
// flusher, -write-delay later, encodes the rider's batch (every update that arrived meanwhile,
// the latest per vehicle) and writes it to the socket itself with one non-blocking write system
// call. With no write delay the flusher writes as soon as it runs: the fan-out only queues the
// rider, so that under load a rider's updates of one burst still leave in one write. Only
// what cannot be done without waiting goes to a goroutine of the rider's own (run), started
// for it and ending when the rider is idle again: the rest of a write the socket did not take
// at once, a rider over its send buffer (sendQueue.wait), the snapshot after the stream opens
// or moves, and the end of the stream. An idle rider is its session, its socket, its reader
// goroutine and a timer for its heartbeat.
//
// Ownership: the flusher or the rider's goroutine owns a rider at a time
// (state owned); only the owner polls the session, uses the send queue and writes batches.
// Writes to the socket (the owner's and, for WebSocket, coder/websocket's own control frames
// through frameWriter) take the rider's write mutex, and the rest of a partial write is written
// first by whoever writes next, so frames never interleave. The flusher never waits for that
// mutex (TryLock: a busy rider goes to its goroutine).

// Rider states.
const (
	riderIdle   int32 = iota // no owner, not queued: the next notify queues or flushes it
	riderQueued              // on a flusher's queue
	riderOwned               // the flusher or the rider's goroutine works on it
	riderDone                // the stream ended
)

// directFraming is a transport's framing of a direct rider's batch: headroom bytes are reserved
// before the encoded events, and frame returns the bytes to write (the WebSocket frame header
// goes into the headroom).
type directFraming interface {
	session.Framing
	headroom() int
	frame(b []byte) []byte
}

// sockWriter serialises the writes to one rider's socket and holds the rest of a batch the
// socket did not take at once, which goes before anything else.
type sockWriter struct {
	mu      sync.Mutex
	conn    net.Conn
	rc      syscall.RawConn
	timeout time.Duration
	tail    *[]byte // pooled buffer of the unwritten rest (nil: none), from tailOff
	tailOff int

	// tryWrite's system call, made once per connection: a closure made per call would escape
	// to the heap through RawConn.Write, with the results it sets (three objects per write).
	rawWrite func(fd uintptr) bool
	wp       []byte // what rawWrite writes
	wn       int    // and its results
	werr     error
}

// directTails counts the direct writes the socket did not take whole (tests).
var directTails atomic.Int64

// errWouldBlock: the socket's buffer is full (EAGAIN); the write goes to the rider's goroutine.
var errWouldBlock = errors.New("socket buffer full")

// tryWrite writes p with one non-blocking system call (mu held): the bytes written, or
// errWouldBlock when none could be.
func (w *sockWriter) tryWrite(p []byte) (int, error) {
	w.wp = p
	err := w.rc.Write(w.rawWrite)
	n, werr := w.wn, w.werr
	w.wp, w.werr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN || werr == syscall.EINTR:
		return 0, errWouldBlock
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// writeAll writes p, after the tail if there is one, blocking up to the write timeout (mu held).
// The deadline is cleared afterwards: tryWrite must never find one that has passed.
func (w *sockWriter) writeAll(p []byte) error {
	if w.timeout > 0 {
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		defer w.conn.SetWriteDeadline(time.Time{})
	}
	if w.tail != nil {
		_, err := w.conn.Write((*w.tail)[w.tailOff:])
		putBuf(w.tail)
		w.tail = nil
		if err != nil {
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	_, err := w.conn.Write(p)
	return err
}

// write is writeAll under the rider's write lock: the pump's, the rider's goroutine's and
// coder/websocket's own frames go through it.
func (w *sockWriter) write(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeAll(p)
}

// newSockWriter returns the writer of c's socket; its RawConn is nil unless c is a plain TCP
// connection (as accepted, or behind the listener's sniffedConn, which only replays reads):
// bytes written to the socket itself must be what c.Write would have written, so a connection
// that transforms them (TLS: tcpConn would unwrap it) is not written directly but by the pump.
func newSockWriter(c net.Conn, timeout time.Duration) *sockWriter {
	w := &sockWriter{conn: c, timeout: timeout, rc: plainTCP(c)}
	if w.rc != nil {
		w.rawWrite = func(fd uintptr) bool {
			w.wn, w.werr = syscall.Write(int(fd), w.wp)
			return true // one attempt: never wait for room
		}
	}
	return w
}

// plainTCP returns the RawConn of c's socket when c is a plain TCP connection (see
// newSockWriter), nil otherwise.
func plainTCP(c net.Conn) syscall.RawConn {
	if sc, ok := c.(*sniffedConn); ok {
		c = sc.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// directRider is one WebSocket or SSE rider written by direct writes (see above).
type directRider struct {
	s      *Server
	rs     *stream
	f      directFraming
	w      *sockWriter
	q      *sendQueue
	fl     *flusher
	finish func(err error)

	state  atomic.Int32
	again  atomic.Bool // notified while owned: the owner looks again when it lets go
	urgent atomic.Bool // a snapshot or the end is waiting: not held back

	// Owner's fields.
	pend     *[]byte // a batch handed to run (written first), framed
	pendN    int     // its length for the send queue's wait; -1: already counted
	writeErr error   // a direct write failed: run ends the stream with it
	timer    *time.Timer
	timerAt  time.Time
	stopCtx  func() bool
}

// startDirect makes rs's session polled and runs the rider's goroutine for the stream's start
// (its first batch is the snapshot) on the calling goroutine; it returns when the rider is
// idle or the stream has ended (finish was called, on this goroutine or a later one of the
// rider's).
func (s *Server) startDirect(rs *stream, f directFraming, w *sockWriter, q *sendQueue, finish func(error)) {
	r := &directRider{s: s, rs: rs, f: f, w: w, q: q, finish: finish, fl: s.flusherFor()}
	r.state.Store(riderOwned)
	rs.sess.SetNotify(r.notify)
	r.stopCtx = context.AfterFunc(rs.ctx, func() { r.notify(true) })
	r.run()
}

// notify is the session's (and the timer's) news: queue the rider for its flusher, or start its
// goroutine when urgent.
func (r *directRider) notify(urgent bool) {
	if urgent {
		r.urgent.Store(true)
	}
	for {
		switch st := r.state.Load(); st {
		case riderIdle:
			if urgent || r.urgent.Load() {
				if r.state.CompareAndSwap(riderIdle, riderOwned) {
					go r.run()
					return
				}
			} else if r.state.CompareAndSwap(riderIdle, riderQueued) {
				r.fl.push(r)
				return
			}
		case riderQueued:
			if !urgent {
				return // the flusher will see it
			}
			if r.state.CompareAndSwap(riderQueued, riderOwned) {
				go r.run() // its queue entry is skipped
				return
			}
		case riderOwned:
			r.again.Store(true)
			if r.state.Load() == riderOwned {
				return // the owner looks again when it lets go (release)
			}
		case riderDone:
			return
		}
	}
}

// release lets go of an idle rider: its timer is armed for the session's next wake-up and
// news that came meanwhile is looked at again.
func (r *directRider) release(next time.Duration) {
	now := time.Now()
	at := now.Add(next)
	switch {
	case r.timer == nil:
		r.timer = time.AfterFunc(next, func() { r.notify(false) })
		r.timerAt = at
	case at.Before(r.timerAt) || !r.timerAt.After(now):
		r.timer.Reset(next)
		r.timerAt = at
	}
	r.state.Store(riderIdle)
	if r.again.Swap(false) {
		r.notify(false)
	}
}

// toGoroutine hands an owned rider to a goroutine of its own.
func (r *directRider) toGoroutine() { go r.run() }

func (r *directRider) getBuf(bp **[]byte) func() []byte {
	return func() []byte {
		b := getBuf()
		*bp = b
		return (*b)[:r.f.headroom()]
	}
}

// handOff gives a framed batch to the rider's goroutine, which writes it first; n is its length
// for the send queue's wait, -1 when fits already counted it.
func (r *directRider) handOff(bp *[]byte, n int, bt session.Batch) {
	r.pend, r.pendN = bp, n
	r.s.m.observeBatch(bt)
	r.toGoroutine()
}

// flush is the flusher's work on an owned rider: its ready batches, each one
// non-blocking write; what would wait goes to the rider's goroutine.
func (r *directRider) flush() {
	r.again.Store(false)
	for {
		if r.urgent.Load() { // a snapshot, or the stream's context ended (stopCtx)
			r.toGoroutine()
			return
		}
		var bp *[]byte
		b, bt, next, err := r.rs.sess.TryBatch(r.f, r.getBuf(&bp))
		if err != nil {
			r.toGoroutine()
			return
		}
		if b == nil {
			r.release(next)
			return
		}
		*bp = b
		out := r.f.frame(b)
		if !r.q.fits(len(out)) {
			r.handOff(bp, len(out), bt)
			return
		}
		locked := r.w.mu.TryLock()
		if locked && r.w.tail != nil { // a control frame's writer left none; defensive
			r.w.mu.Unlock()
			locked = false
		}
		if !locked {
			r.handOff(bp, -1, bt) // counted by fits
			return
		}
		n, err := r.w.tryWrite(out)
		switch {
		case n == len(out):
			r.w.mu.Unlock()
			putBuf(bp)
		case err == nil || errors.Is(err, errWouldBlock):
			// The socket took part (or none): the rest goes first, written by the goroutine.
			r.w.tail, r.w.tailOff = bp, len(b)-len(out)+n
			r.w.mu.Unlock()
			directTails.Add(1)
			r.s.m.observeBatch(bt)
			r.toGoroutine()
			return
		default:
			r.w.mu.Unlock()
			putBuf(bp)
			r.writeErr = err
			r.toGoroutine()
			return
		}
		r.s.m.observeBatch(bt)
		if next > 0 {
			r.release(next)
			return
		}
	}
}

// run is the rider's goroutine: it writes what is pending (blocking, within the write timeout;
// the send queue may hold it), then polls the session until it is idle (then it lets go and
// returns) or the stream ends (then it calls finish).
func (r *directRider) run() {
	r.again.Store(false)
	r.urgent.Store(false)
	err := r.runLoop()
	if err == errIdle {
		return // released: another owner may have it already
	}
	r.state.Store(riderDone)
	r.stopCtx()
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.pend != nil {
		putBuf(r.pend)
		r.pend = nil
	}
	r.w.mu.Lock()
	if r.w.tail != nil {
		putBuf(r.w.tail)
		r.w.tail = nil
	}
	r.w.mu.Unlock()
	r.finish(err)
}

// runLoop returns the error that ends the stream, or errIdle once it let go of the rider
// (release).
func (r *directRider) runLoop() error {
	if r.writeErr != nil {
		return errors.Join(errWriteFailed, r.writeErr)
	}
	if r.pend != nil {
		bp, n := r.pend, r.pendN
		r.pend = nil
		if n >= 0 {
			if err := r.q.wait(r.rs.ctx, n); err != nil {
				putBuf(bp)
				return err
			}
		}
		err := r.write(r.f.frame(*bp))
		putBuf(bp)
		if err != nil {
			return err
		}
	} else if err := r.write(nil); err != nil { // a tail, if any
		return err
	}
	for {
		if err := r.rs.ctx.Err(); err != nil {
			return err
		}
		var bp *[]byte
		b, bt, next, err := r.rs.sess.TryBatch(r.f, r.getBuf(&bp))
		if err != nil {
			return err
		}
		if b == nil {
			if r.urgent.Swap(false) {
				continue // an urgent notify came while this goroutine ran: look again
			}
			r.release(next)
			return errIdle
		}
		*bp = b
		out := r.f.frame(b)
		if err := r.q.wait(r.rs.ctx, len(out)); err != nil {
			putBuf(bp)
			return err
		}
		err = r.write(out)
		putBuf(bp)
		if err != nil {
			return err
		}
		r.s.m.observeBatch(bt)
	}
}

// errIdle: the rider's goroutine let go of an idle rider (not an end).
var errIdle = errors.New("rider idle")

func (r *directRider) write(p []byte) error {
	if err := r.w.write(p); err != nil {
		return errors.Join(errWriteFailed, err)
	}
	return nil
}

// flusher writes the queued riders' batches write-delay after each was queued (its first
// pending update), in the order they were queued (with one delay for all, that is the order
// of their deadlines). Entries due within a slice of the delay are taken together, so the
// flusher wakes at most about 16 times per delay. With no delay every queued rider is due: the
// flusher takes them all each time it runs.
type flusher struct {
	delay time.Duration
	slack time.Duration
	mu    sync.Mutex
	q     []flushEntry
	head  int
	wake  chan struct{}
}

type flushEntry struct {
	r   *directRider
	due time.Time
}

// flusherFor returns one of the server's flushers (one per P, started with the first direct
// rider, ended by Shutdown), in turn.
func (s *Server) flusherFor() *flusher {
	s.flushOnce.Do(func() {
		n := runtime.GOMAXPROCS(0)
		s.flushers = make([]*flusher, n)
		for i := range s.flushers {
			f := &flusher{delay: s.o.Session.WriteDelay, slack: s.o.Session.WriteDelay / 16, wake: make(chan struct{}, 1)}
			s.flushers[i] = f
			s.flushWG.Add(1)
			go func() {
				defer s.flushWG.Done()
				f.run(s.stop)
			}()
		}
	})
	return s.flushers[s.flushNext.Add(1)%uint32(len(s.flushers))]
}

func (f *flusher) push(r *directRider) {
	due := time.Now().Add(f.delay)
	f.mu.Lock()
	empty := f.head == len(f.q)
	if len(f.q) == cap(f.q) && f.head >= len(f.q)/2 {
		// Reuse the room of the entries taken: under a steady load the queue is seldom
		// empty (where run resets it), and append would copy the taken ones into ever
		// bigger arrays (half the edge's allocated bytes at 30,000 events/s). At least half
		// is free, so each entry is moved at most once per entry pushed, on average.
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, flushEntry{r, due})
	f.mu.Unlock()
	if empty {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// take appends to due the queued entries due by limit, in order, and removes them from the
// queue (mu held).
func (f *flusher) take(due []flushEntry, limit time.Time) []flushEntry {
	i := f.head
	for i < len(f.q) && !f.q[i].due.After(limit) {
		i++
	}
	due = append(due, f.q[f.head:i]...)
	clear(f.q[f.head:i])
	f.head = i
	return due
}

// run flushes riders as they come due until ctx ends (a rider still queued then is ended by
// its stream's context, which notifies it urgently).
func (f *flusher) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []flushEntry
	for {
		f.mu.Lock()
		if f.head == len(f.q) {
			f.q, f.head = f.q[:0], 0
			if cap(f.q) > 4096 {
				f.q = nil
			}
			f.mu.Unlock()
			select {
			case <-f.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		now := time.Now()
		if wait := f.q[f.head].due.Sub(now); wait > f.slack {
			f.mu.Unlock()
			t.Reset(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
			continue
		}
		due = f.take(due[:0], now.Add(f.slack))
		f.mu.Unlock()
		for _, e := range due {
			if e.r.state.CompareAndSwap(riderQueued, riderOwned) {
				e.r.flush()
			}
		}
		clear(due)
		if ctx.Err() != nil {
			return
		}
	}
}
