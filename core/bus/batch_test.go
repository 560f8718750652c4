package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshcast/meshcast/core/testwait"
)

// gatedExec is a batcher exec for tests: it records every batch, answers req*10 for each item
// (or fails the batch when failNext is set), and holds each call until released when gated.
type gatedExec struct {
	mu       sync.Mutex
	batches  [][]int
	ctxs     []context.Context
	failNext error
	entered  chan struct{} // receives one value per call started (gated only)
	release  chan struct{} // a call returns after a receive from it (gated only)
}

func (g *gatedExec) exec(ctx context.Context, calls []*call[int, int]) error {
	if g.entered != nil {
		g.entered <- struct{}{}
		<-g.release
	}
	g.mu.Lock()
	items := make([]int, len(calls))
	for i, c := range calls {
		items[i] = c.req
	}
	g.batches = append(g.batches, items)
	g.ctxs = append(g.ctxs, ctx)
	err := g.failNext
	g.failNext = nil
	g.mu.Unlock()
	if err != nil {
		return err
	}
	for _, c := range calls {
		c.res = c.req * 10
	}
	return nil
}

func (g *gatedExec) seen() [][]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]int(nil), g.batches...)
}

// waitQueued waits until the batcher holds n queued requests.
func waitQueued(t *testing.T, b *batcher[int, int], n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

const waitTimeout = 30 * time.Second

type result struct {
	req, res int
	err      error
}

// submit starts a caller of req and returns where its result arrives.
func submit(b *batcher[int, int], ctx context.Context, req int) <-chan result {
	ch := make(chan result, 1)
	go func() {
		res, err := b.do(ctx, req)
		ch <- result{req, res, err}
	}()
	return ch
}

func newTestBatcher(max int, g *gatedExec) (*batcher[int, int], *sync.WaitGroup, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	wg := &sync.WaitGroup{}
	return newBatcher(ctx, wg, max, nil, g.exec), wg, cancel
}

func TestBatcherRoutesResults(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	g := &gatedExec{}
	b, wg, cancel := newTestBatcher(16, g)
	defer cancel()
	const callers, each = 32, 200
	var cwg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		cwg.Go(func() {
			for i := range each {
				req := c*each + i
				res, err := b.do(context.Background(), req)
				if err == nil && res != req*10 {
					err = fmt.Errorf("request %d got %d, want %d", req, res, req*10)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.close()
	wg.Wait()
	seen := map[int]bool{}
	for _, batch := range g.seen() {
		if len(batch) == 0 || len(batch) > 16 {
			t.Fatalf("batch of %d items, want 1..16", len(batch))
		}
		for _, req := range batch {
			if seen[req] {
				t.Fatalf("request %d sent twice", req)
			}
			seen[req] = true
		}
	}
	if len(seen) != callers*each {
		t.Fatalf("%d requests sent, want %d", len(seen), callers*each)
	}
	if _, err := b.do(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("do after close: %v, want ErrClosed", err)
	}
}

// TestBatcherBatches holds the first call in flight: the requests arriving meanwhile go out
// together in the next call, in submission order, capped at max.
func TestBatcherBatches(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	g := &gatedExec{entered: make(chan struct{}), release: make(chan struct{})}
	b, wg, cancel := newTestBatcher(4, g)
	defer cancel()
	first := submit(b, context.Background(), 0)
	<-g.entered
	var rest []<-chan result
	for i := 1; i <= 6; i++ {
		rest = append(rest, submit(b, context.Background(), i))
		waitQueued(t, b, i)
	}
	g.release <- struct{}{} // the first call returns
	<-g.entered
	g.release <- struct{}{} // the second: 1..4
	<-g.entered
	g.release <- struct{}{} // the third: 5, 6
	for _, ch := range append([]<-chan result{first}, rest...) {
		r := <-ch
		if r.err != nil || r.res != r.req*10 {
			t.Fatalf("request %d: %d, %v", r.req, r.res, r.err)
		}
	}
	want := [][]int{{0}, {1, 2, 3, 4}, {5, 6}}
	if got := g.seen(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	b.close()
	wg.Wait()
}

// TestBatcherErrorReachesBatch fails one call: every caller of that batch gets the error, the
// callers of the other batches their results.
func TestBatcherErrorReachesBatch(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	g := &gatedExec{entered: make(chan struct{}), release: make(chan struct{})}
	b, wg, cancel := newTestBatcher(8, g)
	defer cancel()
	first := submit(b, context.Background(), 0)
	<-g.entered
	var failed []<-chan result
	for i := 1; i <= 5; i++ {
		failed = append(failed, submit(b, context.Background(), i))
		waitQueued(t, b, i)
	}
	boom := errors.New("boom")
	g.release <- struct{}{} // the first call succeeds
	if r := <-first; r.err != nil || r.res != 0 {
		t.Fatalf("first request: %d, %v", r.res, r.err)
	}
	g.mu.Lock()
	g.failNext = boom
	g.mu.Unlock()
	<-g.entered
	g.release <- struct{}{} // the second fails
	for _, ch := range failed {
		if r := <-ch; !errors.Is(r.err, boom) {
			t.Fatalf("request %d of the failed batch: %d, %v; want %v", r.req, r.res, r.err, boom)
		}
	}
	// The bucket keeps working.
	after := submit(b, context.Background(), 7)
	<-g.entered
	g.release <- struct{}{}
	if r := <-after; r.err != nil || r.res != 70 {
		t.Fatalf("request after the failure: %d, %v", r.res, r.err)
	}
	b.close()
	wg.Wait()
}

// TestBatcherCancel cancels callers: one whose call is in flight (it returns; the call goes on
// for the others, with a context that was not cancelled) and one still queued (it returns, and
// its request is never sent).
func TestBatcherCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	g := &gatedExec{entered: make(chan struct{}), release: make(chan struct{})}
	b, wg, cancel := newTestBatcher(8, g)
	defer cancel()
	inFlightCtx, cancelInFlight := context.WithCancel(context.Background())
	inFlight := submit(b, inFlightCtx, 0)
	<-g.entered // the first call holds request 0 only
	other := submit(b, context.Background(), 1)
	waitQueued(t, b, 1)
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	queued := submit(b, queuedCtx, 2)
	waitQueued(t, b, 2)
	third := submit(b, context.Background(), 3)
	waitQueued(t, b, 3)
	cancelInFlight()
	if r := <-inFlight; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled in-flight caller: %d, %v; want context.Canceled", r.res, r.err)
	}
	cancelQueued()
	if r := <-queued; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled queued caller: %d, %v; want context.Canceled", r.res, r.err)
	}
	g.release <- struct{}{} // the first call returns
	<-g.entered
	g.release <- struct{}{} // the second: 1 and 3
	for _, ch := range []<-chan result{other, third} {
		if r := <-ch; r.err != nil || r.res != r.req*10 {
			t.Fatalf("request %d: %d, %v", r.req, r.res, r.err)
		}
	}
	b.close()
	wg.Wait()
	if got, want := g.seen(), [][]int{{0}, {1, 3}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v (the cancelled queued request 2 is not sent)", got, want)
	}
	for i, ctx := range g.ctxs {
		if err := ctx.Err(); err != nil {
			t.Fatalf("call %d ran with a context that ended: %v", i, err)
		}
	}
}

// TestBatcherDeadline: a call whose callers all have deadlines ends at the latest of them.
func TestBatcherDeadline(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	g := &gatedExec{}
	b, wg, cancel := newTestBatcher(8, g)
	defer cancel()
	d := time.Now().Add(time.Hour)
	ctx, c := context.WithDeadline(context.Background(), d)
	defer c()
	if _, err := b.do(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got, ok := g.ctxs[0].Deadline(); !ok || !got.Equal(d) {
		t.Fatalf("call deadline %v %v, want %v", got, ok, d)
	}
	if _, err := b.do(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.ctxs[1].Deadline(); ok {
		t.Fatal("call of a caller without deadline has one")
	}
	b.close()
	wg.Wait()
}

func TestParseCAS(t *testing.T) {
	tests := []struct {
		in   string
		want casRes
		ok   bool
	}{
		{"0", casRes{}, true},
		{"1,,0", casRes{code: 1}, true},
		{"1,53394611,1", casRes{code: 1, old: vstate{mesh: "53394611", disp: true}}, true},
		{"2,53394611,0", casRes{code: 2, old: vstate{mesh: "53394611"}}, true},
		{"", casRes{}, false},
		{"3,,0", casRes{}, false},
		{"1,5339461x,1", casRes{}, false},
		{"1,53394611,2", casRes{}, false},
		{"1,53394611", casRes{}, false},
		{"1,1,1,1", casRes{}, false},
	}
	for _, tt := range tests {
		got, err := parseCAS(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseCAS(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzParseCAS checks that every accepted compare-and-set reply item encodes back to itself.
func FuzzParseCAS(f *testing.F) {
	for _, s := range []string{"0", "1,,0", "1,53394611,1", "2,53394611,0", "", "3,,0", "1,5339461x,1", "1,1,1,1", "0;1,,0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseCAS(s)
		if err != nil {
			return
		}
		enc := "0"
		if r.code != 0 {
			d := "0"
			if r.old.disp {
				d = "1"
			}
			enc = fmt.Sprintf("%d,%s,%s", r.code, r.old.mesh, d)
		}
		if enc != s || (r.code != 0 && r.code != 1 && r.code != 2) {
			t.Fatalf("parseCAS(%q) = %+v, which encodes as %q", s, r, enc)
		}
	})
}

// fakeTimer stands for the gate's timer: the test opens the round (release) instead of the clock.
type fakeTimer struct {
	mu     sync.Mutex
	resets int
}

func (f *fakeTimer) Reset(time.Duration) bool { f.mu.Lock(); f.resets++; f.mu.Unlock(); return false }
func (f *fakeTimer) Stop() bool               { return false }
func (f *fakeTimer) armed() int               { f.mu.Lock(); defer f.mu.Unlock(); return f.resets }

// roundExec is a batcher exec for the gate tests: a batch sent in a round goes through the
// gate's round (the fake send records each round's calls and answers req*10), any other batch
// is answered at once and recorded as direct. With entered/release set, each round's send waits
// for a release.
type roundExec struct {
	g                *gate
	mu               sync.Mutex
	rounds, directs  []string
	entered, release chan struct{}
}

func (re *roundExec) exec(ctx context.Context, calls []*call[int, int]) error {
	items := make([]int, len(calls))
	for i, c := range calls {
		items[i] = c.req
	}
	var res []int
	if r := roundOf(ctx); r != nil {
		res = re.g.do(ctx, r, items).([]int)
	} else {
		re.mu.Lock()
		re.directs = append(re.directs, fmt.Sprint(items))
		re.mu.Unlock()
		res = times10(items)
	}
	for i, c := range calls {
		c.res = res[i]
	}
	return nil
}

func (re *roundExec) send(_ context.Context, cmds []any) []any {
	if re.entered != nil {
		re.entered <- struct{}{}
		<-re.release
	}
	var calls []string
	out := make([]any, len(cmds))
	for i, c := range cmds {
		calls = append(calls, fmt.Sprint(c))
		out[i] = times10(c.([]int))
	}
	slices.Sort(calls) // the buckets hand their calls in any order
	re.mu.Lock()
	re.rounds = append(re.rounds, strings.Join(calls, " "))
	re.mu.Unlock()
	return out
}

// seen returns the rounds sent ("<call> <call> | <call>": each round's calls, in order) and the
// direct calls.
func (re *roundExec) seen() (rounds, directs string) {
	re.mu.Lock()
	defer re.mu.Unlock()
	return strings.Join(re.rounds, " | "), fmt.Sprint(re.directs)
}

func times10(items []int) []int {
	out := make([]int, len(items))
	for i, v := range items {
		out[i] = v * 10
	}
	return out
}

func newTestGate(re *roundExec) (*gate, *fakeTimer) {
	ft := &fakeTimer{}
	g := &gate{delay: time.Millisecond, t: ft, send: re.send, ctx: context.Background()}
	re.g = g
	return g, ft
}

// waitJoined waits until n batchers have joined the gate's armed round.
func waitJoined(t *testing.T, g *gate, n int) {
	t.Helper()
	j := -1
	if !testwait.Until(waitTimeout, func() bool {
		g.mu.Lock()
		j = -1
		if g.cur != nil {
			j = g.cur.joined
		}
		g.mu.Unlock()
		return j == n
	}) {
		t.Fatalf("%d batchers joined the armed round (-1: none armed), want %d", j, n)
	}
}

func checkResults(t *testing.T, chs ...<-chan result) {
	t.Helper()
	for _, ch := range chs {
		if r := <-ch; r.err != nil || r.res != r.req*10 {
			t.Fatalf("request %d: %d, %v", r.req, r.res, r.err)
		}
	}
}

// TestGateLinesUpIdleBuckets: requests reaching two idle buckets join one round of their shared
// gate (armed once), keep queueing meanwhile, and when it opens both buckets' calls, with
// everything queued until then, go out together in one send.
func TestGateLinesUpIdleBuckets(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	re := &roundExec{}
	gt, ft := newTestGate(re)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := &sync.WaitGroup{}
	a := newBatcher(ctx, wg, 8, gt, re.exec)
	b := newBatcher(ctx, wg, 8, gt, re.exec)
	var res []<-chan result
	res = append(res, submit(a, context.Background(), 1))
	waitQueued(t, a, 1)
	res = append(res, submit(b, context.Background(), 2))
	waitQueued(t, b, 1)
	waitJoined(t, gt, 2)
	for i := 3; i <= 5; i++ {
		res = append(res, submit(a, context.Background(), i))
		waitQueued(t, a, i-1)
	}
	if n := ft.armed(); n != 1 {
		t.Fatalf("gate armed %d times, want once for both buckets", n)
	}
	if rounds, directs := re.seen(); rounds+directs != "[]" {
		t.Fatalf("rounds %s, direct calls %s before the gate opened", rounds, directs)
	}
	gt.release() // the timer fires
	checkResults(t, res...)
	if rounds, directs := re.seen(); rounds != "[1 3 4 5] [2]" || directs != "[]" {
		t.Fatalf("rounds %s, direct calls %s; want one round [1 3 4 5] [2] and none", rounds, directs)
	}
	a.close()
	b.close()
	wg.Wait()
}

// TestGateBusyBucketDoesNotWait: a bucket whose queue filled while its call was in flight sends
// the next call as soon as that one returns, outside any round of the gate.
func TestGateBusyBucketDoesNotWait(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	re := &roundExec{entered: make(chan struct{}), release: make(chan struct{})}
	gt, ft := newTestGate(re)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := &sync.WaitGroup{}
	b := newBatcher(ctx, wg, 8, gt, re.exec)
	first := submit(b, context.Background(), 1)
	waitJoined(t, gt, 1)
	gt.release()
	<-re.entered // the round's call is in flight
	second := submit(b, context.Background(), 2)
	waitQueued(t, b, 1)
	third := submit(b, context.Background(), 3)
	waitQueued(t, b, 2)
	re.release <- struct{}{}
	checkResults(t, first, second, third)
	if n := ft.armed(); n != 1 {
		t.Fatalf("gate armed %d times, want once (the busy bucket does not wait)", n)
	}
	if rounds, directs := re.seen(); rounds != "[1]" || directs != "[[2 3]]" {
		t.Fatalf("rounds %s, direct calls %s; want [1] and [[2 3]]", rounds, directs)
	}
	b.close()
	wg.Wait()
}

// TestGateClose: a batcher closed while it waits for the gate leaves the round and sends what is
// queued at once; the round, opened later by the bus's Close, sends nothing.
func TestGateClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	re := &roundExec{}
	gt, _ := newTestGate(re)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := &sync.WaitGroup{}
	b := newBatcher(ctx, wg, 8, gt, re.exec)
	r1 := submit(b, context.Background(), 1)
	waitQueued(t, b, 1)
	r2 := submit(b, context.Background(), 2)
	waitQueued(t, b, 2)
	waitJoined(t, gt, 1)
	b.close()
	checkResults(t, r1, r2)
	wg.Wait()
	gt.stop()
	if rounds, directs := re.seen(); rounds != "" || directs != "[[1 2]]" {
		t.Fatalf("rounds %s, direct calls %s; want none and [[1 2]]", rounds, directs)
	}
}

// TestGateRoundLeavers: of three buckets in a round, one has nothing live to send (its only
// caller gave up) and leaves; the round still sends the other two's calls.
func TestGateRoundLeavers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	re := &roundExec{}
	gt, _ := newTestGate(re)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := &sync.WaitGroup{}
	bs := []*batcher[int, int]{newBatcher(ctx, wg, 8, gt, re.exec), newBatcher(ctx, wg, 8, gt, re.exec), newBatcher(ctx, wg, 8, gt, re.exec)}
	gone, giveUp := context.WithCancel(context.Background())
	var res []<-chan result
	for i, b := range bs {
		c := context.Background()
		if i == 1 {
			c = gone
		}
		res = append(res, submit(b, c, i+1))
		waitQueued(t, b, 1)
	}
	waitJoined(t, gt, 3)
	giveUp()
	if r := <-res[1]; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the caller that gave up: %d, %v", r.res, r.err)
	}
	gt.release()
	checkResults(t, res[0], res[2])
	if rounds, directs := re.seen(); rounds != "[1] [3]" || directs != "[]" {
		t.Fatalf("rounds %s, direct calls %s; want one round [1] [3]", rounds, directs)
	}
	for _, b := range bs {
		b.close()
	}
	wg.Wait()
}

// TestGateRoundsFollowEachOther: a round whose delay has passed while another is in flight opens
// when that one is answered, and sends together the calls of the buckets that joined it.
func TestGateRoundsFollowEachOther(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	re := &roundExec{entered: make(chan struct{}), release: make(chan struct{})}
	gt, ft := newTestGate(re)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := &sync.WaitGroup{}
	bs := []*batcher[int, int]{newBatcher(ctx, wg, 8, gt, re.exec), newBatcher(ctx, wg, 8, gt, re.exec), newBatcher(ctx, wg, 8, gt, re.exec)}
	first := submit(bs[0], context.Background(), 1)
	waitJoined(t, gt, 1)
	gt.release()
	<-re.entered // the first round is in flight, with request 1 alone
	second := submit(bs[1], context.Background(), 2)
	waitJoined(t, gt, 1)
	third := submit(bs[2], context.Background(), 3)
	waitJoined(t, gt, 2)
	gt.release() // the second round's delay passes while the first is in flight: it stays shut
	if n := ft.armed(); n != 2 {
		t.Fatalf("gate armed %d times, want 2", n)
	}
	re.release <- struct{}{} // the first round is answered: the second opens
	<-re.entered
	re.release <- struct{}{}
	checkResults(t, first, second, third)
	if rounds, directs := re.seen(); rounds != "[1] | [2] [3]" || directs != "[]" {
		t.Fatalf("rounds %s, direct calls %s; want [1] | [2] [3]", rounds, directs)
	}
	for _, b := range bs {
		b.close()
	}
	wg.Wait()
}

// TestGateEarlyRounds: with early rounds the armed round opens, without its timer, as soon as no
// caller is on its way to a bucket. A hold (a fix queued for Apply) keeps it shut; once the
// last caller waits in a bucket it opens with every bucket's call; the callers its replies wake
// are counted before they run, so their next requests (the mesh writes of an Apply) go together
// in the next round, which opens as soon as both have joined. The timer never fires here.
func TestGateEarlyRounds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // only what the test started
	re := &roundExec{}
	gt, ft := newTestGate(re)
	gt.early = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := &sync.WaitGroup{}
	a, b := newBatcher(ctx, wg, 8, gt, re.exec), newBatcher(ctx, wg, 8, gt, re.exec)
	c, d := newBatcher(ctx, wg, 8, gt, re.exec), newBatcher(ctx, wg, 8, gt, re.exec)
	// Two callers as Apply is one: a request on one bucket, then one on another with the reply,
	// then it returns (its count ends). Each starts on a hold, as a queued fix does.
	twoSteps := func(first, second *batcher[int, int], req int) <-chan result {
		ch := make(chan result, 1)
		go func() {
			v, err := first.do(context.Background(), req)
			if err == nil {
				v, err = second.do(context.Background(), v)
			}
			gt.add(-1) // Apply returns
			ch <- result{req, v, err}
		}()
		return ch
	}
	gt.add(3) // three fixes queued: two will be applied, the third is still on its way
	r1 := twoSteps(a, c, 1)
	r2 := twoSteps(b, d, 2)
	waitJoined(t, gt, 2)
	if rounds, directs := re.seen(); rounds+directs != "[]" {
		t.Fatalf("rounds %s, direct calls %s while a fix was still on its way", rounds, directs)
	}
	gt.add(-1) // the third is released (e.g. rejected): every caller waits in a bucket
	for _, ch := range []<-chan result{r1, r2} {
		if r := <-ch; r.err != nil || r.res != r.req*100 {
			t.Fatalf("request %d: %d, %v; want %d", r.req, r.res, r.err, r.req*100)
		}
	}
	if rounds, directs := re.seen(); rounds != "[1] [2] | [10] [20]" || directs != "[]" {
		t.Fatalf("rounds %s, direct calls %s; want [1] [2] | [10] [20] and none", rounds, directs)
	}
	if n := ft.armed(); n != 2 {
		t.Fatalf("gate armed %d times, want 2 (the timer never fired)", n)
	}
	gt.mu.Lock()
	active := gt.active
	gt.mu.Unlock()
	if active != 0 {
		t.Fatalf("%d callers still counted after both returned", active)
	}
	for _, bt := range []*batcher[int, int]{a, b, c, d} {
		bt.close()
	}
	wg.Wait()
}
