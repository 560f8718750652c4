package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// batcher gathers the requests of one bucket (one hash tag, so one slot) into one script call:
// while a call of the bucket is in flight, new requests queue, and when it returns the queue (up
// to max requests) goes out as the next call. Under heavy load batches grow with the load. Under
// light load the bucket is idle when a request arrives: it then waits for its gate (shared by all
// batchers of a bus, see gate) before sending, so that the requests arriving meanwhile, in this
// bucket and in the others, go out together (rueidis writes the calls of one moment to a
// connection with one system call, and Redis reads and answers them with one). At most one call
// per bucket is in flight, so the requests of a bucket reach Redis in submission order.
//
// One goroutine per batcher runs the calls, started by the first request and ended by close after
// the queue is sent: the request that finds the bucket idle wakes it. (A goroutine per busy period
// cost a fresh stack grown again to rueidis' depth at every light-load request: ~10% of the
// bridge's CPU at 3,300 fixes/s.)
type batcher[Q, R any] struct {
	max  int
	gate *gate                                                // nil: an idle bucket sends at once
	wait func(time.Duration)                                  // observes each request's time queued; may be nil
	exec func(ctx context.Context, calls []*call[Q, R]) error // sets res (or err) of every call
	ctx  context.Context                                      // the bus's, cancelled by Close
	wg   *sync.WaitGroup                                      // the bus's running batchers

	batches, items atomic.Int64 // script calls made and requests they carried
	calls          sync.Pool    // of *call[Q, R], reused once their caller has the result

	wake chan struct{} // capacity 1: the queue went from idle to busy
	quit chan struct{} // closed by close: send what is queued, then stop

	mu      sync.Mutex
	queue   []*call[Q, R]
	spare   []*call[Q, R] // the previous queue's array, reused
	running bool          // requests are queued or being sent
	started bool          // the goroutine runs
	closed  bool
}

// call is one request waiting for its result.
type call[Q, R any] struct {
	req    Q
	res    R
	err    error
	ctx    context.Context
	queued time.Time     // when do queued it (set only when the batcher observes waits)
	done   chan struct{} // capacity 1: receives one value when res and err are set
	// state, for early rounds (gate.early): 0 waiting, 1 its caller left (ctx ended) and counts
	// itself as running again, 2 woken by the batcher, which counted it first.
	state atomic.Int32
}

func newBatcher[Q, R any](ctx context.Context, wg *sync.WaitGroup, max int, g *gate, exec func(context.Context, []*call[Q, R]) error) *batcher[Q, R] {
	return &batcher[Q, R]{max: max, gate: g, exec: exec, ctx: ctx, wg: wg, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// do queues req and waits for its result. When ctx ends first it returns ctx's error; the request
// may still be sent (like a request whose reply was lost), unless it had not left the queue yet.
func (b *batcher[Q, R]) do(ctx context.Context, req Q) (R, error) {
	c, _ := b.calls.Get().(*call[Q, R])
	if c == nil {
		c = &call[Q, R]{done: make(chan struct{}, 1)}
	}
	c.req, c.ctx = req, ctx
	if b.wait != nil {
		c.queued = time.Now()
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		var zero R
		return zero, ErrClosed
	}
	b.queue = append(b.queue, c)
	start := !b.running
	b.running = true
	if !b.started {
		b.started = true
		b.wg.Add(1) // under mu, so before close's Wait
		go b.run()
	}
	b.mu.Unlock()
	if start {
		b.gate.add(1)        // early rounds: the woken batcher counts until it has joined the round
		b.wake <- struct{}{} // never blocks: only the idle-to-busy request sends, and run takes it
	}
	b.gate.add(-1) // early rounds: this caller now waits in the bucket
	if done := ctx.Done(); done != nil {
		select {
		case <-c.done:
		case <-done: // c is not reused: the batch may still hold it
			if c.state.CompareAndSwap(0, 1) {
				b.gate.add(1) // running again, and no batcher counted it
			}
			var zero R
			return zero, ctx.Err()
		}
	} else {
		<-c.done // a context that never ends: a plain receive is cheaper than a select
	}
	res, err := c.res, c.err
	*c = call[Q, R]{done: c.done}
	b.calls.Put(c)
	return res, err
}

// run sends the queue in batches whenever it is woken (after the gate opens), until close.
func (b *batcher[Q, R]) run() {
	defer b.wg.Done()
	batch := make([]*call[Q, R], 0, b.max)
	for {
		select {
		case <-b.wake:
		case <-b.quit:
			b.drain(batch, nil) // close refused new requests: what is queued is the last
			return
		}
		var r *round
		if b.gate != nil {
			r = b.gate.join()
			b.gate.add(-1) // early rounds: joined (the request that woke it counted it until now)
			select {
			case <-r.open:
			case <-b.quit: // closing: leave the round and send at once (the loop then ends)
				b.gate.leave(r)
				r = nil
			}
		}
		b.drain(batch, r)
	}
}

// drain sends the queue in batches until it is empty, then marks the batcher idle. The first
// batch goes in round r when r is not nil (the batcher joined it), the others at once.
func (b *batcher[Q, R]) drain(batch []*call[Q, R], r *round) {
	for ; ; r = nil {
		b.mu.Lock()
		n := min(len(b.queue), b.max)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			if r != nil {
				b.gate.leave(r)
			}
			return
		}
		batch = append(batch[:0], b.queue[:n]...)
		if n == len(b.queue) { // swap arrays instead of reslicing, so the queue does not creep
			clear(b.queue)
			b.queue, b.spare = b.spare[:0], b.queue[:0]
		} else {
			rest := copy(b.queue, b.queue[n:])
			clear(b.queue[rest:])
			b.queue = b.queue[:rest]
		}
		b.mu.Unlock()
		b.send(batch, r)
		clear(batch)
	}
}

// send runs one call for the batch's live requests and hands every caller its result. With a
// round, exec gets a context that carries it (roundOf), and must send its call through it.
func (b *batcher[Q, R]) send(batch []*call[Q, R], r *round) {
	live := batch[:0]
	var deadline time.Time
	all := true // every live caller has a deadline
	for _, c := range batch {
		if c.ctx.Err() != nil { // its caller has gone: do not send it
			continue
		}
		live = append(live, c)
		if d, ok := c.ctx.Deadline(); !ok {
			all = false
		} else if d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		if r != nil {
			b.gate.leave(r)
		}
		return
	}
	if b.wait != nil {
		now := time.Now()
		for _, c := range live {
			b.wait(now.Sub(c.queued))
		}
	}
	// The call serves every caller of the batch: it ends with the bus (Close) or after the
	// latest caller deadline, never because one caller gave up.
	ctx := b.ctx
	if all {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if r != nil {
		ctx = context.WithValue(ctx, roundKey{}, r)
		b.gate.expect(r, len(live))
	}
	b.batches.Add(1)
	b.items.Add(int64(len(live)))
	if err := b.exec(ctx, live); err != nil {
		for _, c := range live {
			c.err = err
		}
	}
	if b.gate != nil && b.gate.early {
		// The callers about to be woken count as on their way to a bucket: a round's were counted
		// by the round as it finished (all its buckets' at once), the others are counted here.
		// A caller that left (its context ended) counted itself.
		n := 0
		for _, c := range live {
			woken := c.state.CompareAndSwap(0, 2)
			switch {
			case woken && r == nil:
				n++
			case !woken && r != nil:
				n--
			}
		}
		b.gate.add(n)
	}
	for _, c := range live {
		c.done <- struct{}{} // never blocks; c may be reused right after
	}
}

// close refuses new requests; requests already queued are still sent, then the goroutine ends.
func (b *batcher[Q, R]) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.quit)
	}
	b.mu.Unlock()
}

// gate lines up the sends of idle buckets in rounds (Options.BatchDelay). A bucket that receives
// a request while idle joins the gate's next round instead of sending at once; the first to join
// arms the round. The round opens once delay has passed and no other round is in flight: then
// each of its buckets hands its call to it (do) and the last one sends them all in one pipeline
// (send: one write and one read per Redis connection instead of one per call); every bucket then
// gets its reply, and the next round may open. A request waits at most delay plus the round in
// flight. A bucket that stays busy (its queue never empties) sends each next call at once,
// outside the rounds, as without a gate.
type gate struct {
	delay time.Duration // from arming a round to opening it
	t     timer         // runs release delay after a round is armed
	// send runs the calls of a round together and returns their replies, in order.
	send func(ctx context.Context, cmds []any) []any
	ctx  context.Context // the bus's: a round's pipeline ends with it

	// early (Options.BatchEarly): the armed round also opens, before its delay, as soon as no
	// Apply call is on its way to a bucket (active == 0). A caller counts from Apply's start (or
	// from the Hold taken for it) until it waits in a bucket or returns; a batcher woken by a
	// request counts until it has joined the round; callers a reply wakes count from just before
	// they are woken. So the fixes of one MQTT read, and then their mesh writes, each go in one
	// round without waiting for the timer (which still bounds the wait).
	early bool

	mu     sync.Mutex
	cur    *round // the next round, which buckets join until it opens; nil while none is armed
	busy   bool   // a round is open and not yet answered
	due    bool   // cur's delay has passed
	active int    // early: Apply calls on their way to a bucket
}

// add changes the count of Apply calls on their way to a bucket by n (early rounds only; g may be
// nil) and opens the armed round when it falls to 0 and no round is in flight.
func (g *gate) add(n int) {
	if g == nil || !g.early || n == 0 {
		return
	}
	g.mu.Lock()
	g.active += n
	if g.active <= 0 {
		g.active = 0 // never below: a count lost (a caller gone mid-batch) only delays to the timer
		if g.cur != nil && !g.busy {
			g.openLocked()
		}
	}
	g.mu.Unlock()
}

// round is one opening of a gate: the buckets that joined it and their calls.
type round struct {
	open    chan struct{} // closed when the round opens
	done    chan struct{} // closed when the replies are in
	opened  bool
	pending int // buckets joined that have neither handed a call nor left; -1 once finished
	joined  int // buckets that joined (tests watch it)
	callers int // early rounds: the callers of the calls handed to it, woken when it is answered
	cmds    []any
	res     []any
	// latest deadline of the calls' contexts, and whether every one had a deadline
	deadline time.Time
	all      bool
}

// roundKey is the context key under which a batcher's exec finds its round.
type roundKey struct{}

// roundOf returns the round a batcher's exec must send its call through, or nil.
func roundOf(ctx context.Context) *round {
	r, _ := ctx.Value(roundKey{}).(*round)
	return r
}

// timer is what gate needs of a *time.Timer made by time.AfterFunc (tests fire their own).
type timer interface {
	Reset(time.Duration) bool
	Stop() bool
}

func newGate(ctx context.Context, delay time.Duration, send func(context.Context, []any) []any) *gate {
	g := &gate{delay: delay, send: send, ctx: ctx}
	t := time.AfterFunc(time.Hour, g.release)
	t.Stop()
	g.t = t
	return g
}

// join adds a bucket to the next round, arming one if none is, and returns it.
func (g *gate) join() *round {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur == nil {
		g.cur = &round{open: make(chan struct{}), done: make(chan struct{}), all: true}
		g.due = false
		g.t.Reset(g.delay) // only when no round is armed, so the timer has fired or never ran
	}
	r := g.cur
	r.pending++
	r.joined++
	return r
}

// openLocked opens the armed round, which becomes the one in flight.
func (g *gate) openLocked() {
	r := g.cur
	g.cur, g.busy, g.due = nil, true, false
	r.opened = true
	close(r.open)
}

// release is the timer's function: the armed round's delay has passed.
func (g *gate) release() {
	g.mu.Lock()
	if g.cur != nil {
		g.due = true
		if !g.busy {
			g.openLocked()
		}
	}
	g.mu.Unlock()
}

// leave takes a bucket out of round r without a call (nothing to send, or closing).
func (g *gate) leave(r *round) {
	g.mu.Lock()
	r.pending--
	g.finishLocked(r) // unlocks
}

// finishLocked, called with g.mu held, which it releases, completes round r once it is open and
// has no pending bucket: it sends the calls handed to it (in the caller's goroutine), opens the
// next round if it may, and lets the buckets read their replies.
func (g *gate) finishLocked(r *round) {
	if !r.opened || r.pending != 0 {
		g.mu.Unlock()
		return
	}
	r.pending = -1
	cmds, deadline, all := r.cmds, r.deadline, r.all
	g.mu.Unlock()
	if len(cmds) > 0 {
		ctx := g.ctx
		if all { // like a batch: the pipeline serves every call until the latest deadline
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		r.res = g.send(ctx, cmds)
	}
	g.mu.Lock()
	if g.early {
		g.active += r.callers // its callers are woken next: the next round waits for them
	}
	g.busy = false
	if g.cur != nil && g.due {
		g.openLocked()
	}
	g.mu.Unlock()
	close(r.done)
}

// expect adds n callers to round r's (early rounds), before the bucket hands its call to it.
func (g *gate) expect(r *round, n int) {
	if !g.early {
		return
	}
	g.mu.Lock()
	r.callers += n
	g.mu.Unlock()
}

// do hands a bucket's call to round r and returns its reply once the round's calls are answered.
func (g *gate) do(ctx context.Context, r *round, cmd any) any {
	g.mu.Lock()
	i := len(r.cmds)
	r.cmds = append(r.cmds, cmd)
	if d, ok := ctx.Deadline(); !ok {
		r.all = false
	} else if d.After(r.deadline) {
		r.deadline = d
	}
	r.pending--
	g.finishLocked(r) // unlocks; sends the round when this was its last call
	<-r.done
	return r.res[i]
}

// stop opens the armed round at once and stops the timer (the bus is closing).
func (g *gate) stop() {
	g.t.Stop()
	g.mu.Lock()
	if g.cur != nil {
		g.openLocked()
	}
	g.mu.Unlock()
}
