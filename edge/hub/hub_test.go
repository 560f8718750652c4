package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 10 * time.Second

// Tokyo Station's mesh and its east neighbour.
var (
	mA = mustMesh("53394611")
	mB = mustMesh("53394612")
	mC = mustMesh("53394613")
)

func mustMesh(s string) mesh.Code {
	c, err := mesh.Parse(s)
	if err != nil {
		panic(err)
	}
	return c
}

// clock is a settable clock in Unix ms.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// tapBus wraps a bus: it counts subscription changes per mesh and can mute event delivery (to
// simulate lost pub/sub messages).
type tapBus struct {
	bus.Bus
	mu      sync.Mutex
	h       bus.Handler
	muted   bool
	adds    map[mesh.Code]int
	removes map[mesh.Code]int
	fails   int           // Snapshot calls left to fail
	block   chan struct{} // not nil: Remove waits until it is closed (a slow bus)
}

func (t *tapBus) Snapshot(ctx context.Context, m mesh.Code) ([]*meshcastv1.Vehicle, error) {
	t.mu.Lock()
	fail := t.fails > 0
	if fail {
		t.fails--
	}
	t.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("snapshot of %s: injected failure", m)
	}
	return t.Bus.Snapshot(ctx, m)
}

func newTapBus(b bus.Bus) *tapBus {
	return &tapBus{Bus: b, adds: map[mesh.Code]int{}, removes: map[mesh.Code]int{}}
}

func (t *tapBus) Subscribe(h bus.Handler) (bus.Subscription, error) {
	t.mu.Lock()
	t.h = h
	t.mu.Unlock()
	s, err := t.Bus.Subscribe(tapHandler{t})
	if err != nil {
		return nil, err
	}
	return &tapSub{Subscription: s, t: t}, nil
}

func (t *tapBus) mute(on bool) {
	t.mu.Lock()
	t.muted = on
	t.mu.Unlock()
}

func (t *tapBus) counts(m mesh.Code) (adds, removes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.adds[m], t.removes[m]
}

type tapHandler struct{ t *tapBus }

func (x tapHandler) OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte) {
	x.t.mu.Lock()
	h, muted := x.t.h, x.t.muted
	x.t.mu.Unlock()
	if !muted {
		h.OnEvent(m, ev, raw)
	}
}
func (x tapHandler) OnResync(m mesh.Code) { x.t.h.OnResync(m) }

type tapSub struct {
	bus.Subscription
	t *tapBus
}

func (s *tapSub) Add(ctx context.Context, ms ...mesh.Code) error {
	s.t.mu.Lock()
	for _, m := range ms {
		s.t.adds[m]++
	}
	s.t.mu.Unlock()
	return s.Subscription.Add(ctx, ms...)
}

func (s *tapSub) Remove(ctx context.Context, ms ...mesh.Code) error {
	s.t.mu.Lock()
	for _, m := range ms {
		s.t.removes[m]++
	}
	block := s.t.block
	s.t.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Subscription.Remove(ctx, ms...)
}

// recorder is a Watcher that records what it gets.
type recorder struct {
	mu       sync.Mutex
	evs      []*Event
	closed   bool
	resynced []mesh.Code
	notify   chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) Deliver(ev *Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) Resynced(m mesh.Code) {
	r.mu.Lock()
	r.resynced = append(r.resynced, m)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) HubClosed() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

func (r *recorder) events() []*Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Event(nil), r.evs...)
}

// waitEvents waits until r has at least n events.
func (r *recorder) waitEvents(t *testing.T, n int) []*Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if evs := r.events(); len(evs) >= n {
			return evs
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("waited for %d events, have %v", n, describe(r.events()))
		}
	}
}

func describe(evs []*Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Upsert != nil {
			out = append(out, fmt.Sprintf("up %s %s@%d", ev.Mesh, ev.ID, ev.ObservedAtMs))
		} else {
			out = append(out, fmt.Sprintf("rm %s %s@%d %s moved %d", ev.Mesh, ev.ID, ev.ObservedAtMs, ev.Removal.Reason, ev.MovedTo))
		}
	}
	return out
}

type env struct {
	clk *clock
	bus bus.Bus
	tap *tapBus
	hub *Hub
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := &clock{}
	clk.ms.Store(1_700_000_000_000)
	b := bus.NewMemory(bus.Options{TTL: ttl, Now: clk.Now})
	tap := newTapBus(b)
	h, err := New(tap, Options{TTL: ttl, Sweep: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		b.Close()
	})
	return &env{clk: clk, bus: b, tap: tap, hub: h}
}

// fix applies a fix of vehicle id at the current time in mesh m (centre), dispatchable or not.
func (e *env) fix(t *testing.T, id string, m mesh.Code, disp bool) int64 {
	t.Helper()
	e.clk.advance(time.Millisecond)
	lat, lon := m.Center()
	ts := e.clk.ms.Load()
	_, err := e.bus.Apply(context.Background(), bus.Update{
		Vehicle:      &meshcastv1.Vehicle{Id: id, Fleet: "f", Lat: lat, Lon: lon, Mesh: m.String(), ObservedAtMs: ts},
		Dispatchable: disp, Reason: meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func seedIDs(t *testing.T, h *Hub, w Watcher, ms ...mesh.Code) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	if err := h.Join(context.Background(), w, ms, func(e *Entry) { got[e.ID] = e.ObservedAtMs }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestJoinSubscribesOncePerMesh(t *testing.T) {
	e := newEnv(t)
	t1 := e.fix(t, "f/1", mA, true)
	w1, w2 := newRecorder(), newRecorder()
	if got := seedIDs(t, e.hub, w1, mA); len(got) != 1 || got["f/1"] != t1 {
		t.Fatalf("first join seeded %v, want f/1@%d", got, t1)
	}
	if got := seedIDs(t, e.hub, w2, mA, mB); len(got) != 1 {
		t.Fatalf("second join seeded %v", got)
	}
	seedIDs(t, e.hub, w2, mA) // joining again only seeds
	if a, r := e.tap.counts(mA); a != 1 || r != 0 {
		t.Fatalf("mesh A: %d adds %d removes, want 1 0", a, r)
	}
	if s := e.hub.Stats(); s.Meshes != 2 || s.Watchers != 3 || s.Vehicles != 1 {
		t.Fatalf("stats %+v", s)
	}
	e.hub.Leave(w1, []mesh.Code{mA})
	if _, r := e.tap.counts(mA); r != 0 {
		t.Fatal("mesh A unsubscribed while w2 still watches it")
	}
	e.hub.Leave(w2, []mesh.Code{mA, mB, mC}) // mC: never joined, ignored
	e.hub.waitUnsubscribed()
	if _, r := e.tap.counts(mA); r != 1 {
		t.Fatalf("mesh A: %d removes after the last watcher left, want 1", r)
	}
	if s := e.hub.Stats(); s.Meshes != 0 || s.Watchers != 0 {
		t.Fatalf("stats after leaving %+v", s)
	}
	// a new join subscribes again and reads the snapshot again
	if got := seedIDs(t, e.hub, w1, mA); got["f/1"] != t1 {
		t.Fatalf("rejoin seeded %v", got)
	}
	if a, _ := e.tap.counts(mA); a != 2 {
		t.Fatalf("mesh A: %d adds after rejoin, want 2", a)
	}
}

// TestLeaveDoesNotWaitOnTheBus: the last watcher leaving a mesh returns while the bus's
// unsubscription is still blocked; the hub unsubscribes on its own goroutine, a join of that mesh
// meanwhile waits for the unsubscription and then subscribes afresh, and every subscription is
// balanced by one unsubscription.
func TestLeaveDoesNotWaitOnTheBus(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	e.tap.mu.Lock()
	e.tap.block = block
	e.tap.mu.Unlock()
	w := newRecorder()
	seedIDs(t, e.hub, w, mA, mB)
	e.hub.Leave(w, []mesh.Code{mA, mB}) // returns although Remove blocks
	if s := e.hub.Stats(); s.Meshes != 0 || s.Watchers != 0 {
		t.Fatalf("stats %+v after leaving, want no mesh and no watcher", s)
	}
	joined := make(chan error, 1)
	go func() { joined <- e.hub.Join(context.Background(), w, []mesh.Code{mA}, nil) }()
	select {
	case err := <-joined:
		t.Fatalf("Join of a mesh being unsubscribed returned (%v) before the unsubscription", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(block)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	e.hub.waitUnsubscribed()
	if a, r := e.tap.counts(mA); a != 2 || r != 1 {
		t.Fatalf("mesh A: %d adds %d removes, want 2 1 (subscribed again after the unsubscription)", a, r)
	}
	if a, r := e.tap.counts(mB); a != 1 || r != 1 {
		t.Fatalf("mesh B: %d adds %d removes, want 1 1", a, r)
	}
	e.fix(t, "f/1", mA, true)
	w.waitEvents(t, 1)
}

func TestFanoutSharesOneEvent(t *testing.T) {
	e := newEnv(t)
	ws := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	for _, w := range ws {
		seedIDs(t, e.hub, w, mA)
	}
	before := encodes.Load()
	e.fix(t, "f/1", mA, true)
	e.fix(t, "f/1", mA, false)
	if n := encodes.Load() - before; n != 2 {
		t.Errorf("%d encodings for 2 events to 3 watchers, want 2", n)
	}
	first := ws[0].waitEvents(t, 2)
	if first[0].Upsert == nil || first[1].Removal == nil || first[1].Removal.Reason != meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT {
		t.Fatalf("events %v", describe(first))
	}
	for _, w := range ws[1:] {
		evs := w.waitEvents(t, 2)
		if evs[0] != first[0] || evs[1] != first[1] {
			t.Fatal("watchers got different Event values: not shared")
		}
	}
}

func TestVehicleOrderAcrossMeshes(t *testing.T) {
	e := newEnv(t)
	w := newRecorder()
	seedIDs(t, e.hub, w, mA, mB, mC)
	h := handler{e.hub}
	now := e.clk.ms.Load()
	up := func(m mesh.Code, ts int64) {
		lat, lon := m.Center()
		h.OnEvent(m, &meshcastv1.MeshEvent{Mesh: m.String(), ObservedAtMs: ts, Kind: &meshcastv1.MeshEvent_Upsert{
			Upsert: &meshcastv1.Vehicle{Id: "f/1", Lat: lat, Lon: lon, Mesh: m.String(), ObservedAtMs: ts}}}, nil)
	}
	rm := func(m mesh.Code, ts int64, moved string) {
		h.OnEvent(m, &meshcastv1.MeshEvent{Mesh: m.String(), ObservedAtMs: ts, MovedTo: moved, Kind: &meshcastv1.MeshEvent_Remove{
			Remove: &meshcastv1.Removal{Id: "f/1", Reason: meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA}}}, nil)
	}
	// the vehicle goes A (t+1) → B (t+2) → C (t+3); the channels deliver out of order across meshes
	up(mA, now+1)
	up(mC, now+3)             // B→C's upsert overtakes everything of B
	up(mB, now+2)             // older than what the hub saw: dropped
	rm(mA, now+2, "53394612") // removals always go through (the watcher decides)
	rm(mB, now+3, "53394613")
	up(mA, now-20_000) // past the TTL: dropped
	evs := w.waitEvents(t, 4)
	want := []string{
		fmt.Sprintf("up %s f/1@%d", mA, now+1),
		fmt.Sprintf("up %s f/1@%d", mC, now+3),
		fmt.Sprintf("rm %s f/1@%d REMOVAL_REASON_LEFT_AREA moved %d", mA, now+2, mB),
		fmt.Sprintf("rm %s f/1@%d REMOVAL_REASON_LEFT_AREA moved %d", mB, now+3, mC),
	}
	if got := describe(evs); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	if s := e.hub.Stats(); s.Vehicles != 1 {
		t.Fatalf("hub holds %d vehicles, want 1 (in C)", s.Vehicles)
	}
}

func TestSweepRemovesStale(t *testing.T) {
	e := newEnv(t)
	w := newRecorder()
	seedIDs(t, e.hub, w, mA)
	t1 := e.fix(t, "f/1", mA, true)
	e.clk.advance(ttl / 2)
	e.fix(t, "f/2", mA, true)
	e.clk.advance(ttl/2 - time.Millisecond) // f/1 is exactly TTL old
	e.hub.Sweep()
	evs := w.waitEvents(t, 3)
	if r := evs[2]; r.Removal == nil || r.ID != "f/1" || r.Removal.Reason != meshcastv1.RemovalReason_REMOVAL_REASON_STALE || r.ObservedAtMs != t1 {
		t.Fatalf("events %v, want f/1 removed as STALE", describe(evs))
	}
	if s := e.hub.Stats(); s.Vehicles != 1 || s.Expired != 1 {
		t.Fatalf("stats %+v", s)
	}
	e.hub.Sweep()
	if n := len(w.events()); n != 3 {
		t.Fatalf("second sweep sent more: %v", describe(w.events()))
	}
}

func TestResyncDiffsState(t *testing.T) {
	e := newEnv(t)
	e.fix(t, "f/stay", mA, true)
	e.fix(t, "f/gone", mA, true)
	e.fix(t, "f/moves", mA, true)
	w := newRecorder()
	seedIDs(t, e.hub, w, mA)
	e.tap.mute(true) // the hub misses these
	e.fix(t, "f/gone", mA, false)
	tMoved := e.fix(t, "f/moves", mA, true)
	tNew := e.fix(t, "f/new", mA, true)
	e.tap.mute(false)
	handler{e.hub}.OnResync(mA)
	evs := w.waitEvents(t, 3)
	got := map[string]string{}
	for _, ev := range evs {
		if ev.Upsert != nil {
			got[ev.ID] = fmt.Sprint("up@", ev.ObservedAtMs)
		} else {
			got[ev.ID] = "rm " + ev.Removal.Reason.String()
		}
	}
	want := map[string]string{
		"f/gone":  "rm REMOVAL_REASON_STALE",
		"f/moves": fmt.Sprint("up@", tMoved),
		"f/new":   fmt.Sprint("up@", tNew),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(evs) != 3 {
		t.Fatalf("resync events %v, want %v", describe(evs), want)
	}
	if s := e.hub.Stats(); s.Vehicles != 3 {
		t.Fatalf("hub holds %d vehicles after resync, want 3", s.Vehicles)
	}
	// Resync (synchronous) with nothing missed sends nothing but Resynced
	if err := e.hub.Resync(context.Background(), mA); err != nil {
		t.Fatal(err)
	}
	if n := len(w.events()); n != 3 {
		t.Fatalf("a resync without a gap sent %v", describe(w.events()[3:]))
	}
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		resynced := fmt.Sprint(w.resynced)
		w.mu.Unlock()
		if resynced == fmt.Sprintf("[%s %s]", mA, mA) {
			break
		}
		select {
		case <-w.notify:
		case <-deadline:
			t.Fatalf("Resynced calls %s, want mesh A twice", resynced)
		}
	}
}

// TestResyncRetries: a resync whose snapshot read fails is tried again (after a pause).
func TestResyncRetries(t *testing.T) {
	e := newEnv(t)
	w := newRecorder()
	seedIDs(t, e.hub, w, mA)
	e.tap.mute(true)
	e.fix(t, "f/1", mA, true)
	e.tap.mute(false)
	e.tap.mu.Lock()
	e.tap.fails = 2
	e.tap.mu.Unlock()
	handler{e.hub}.OnResync(mA)
	evs := w.waitEvents(t, 1)
	if evs[0].Upsert == nil || evs[0].ID != "f/1" {
		t.Fatalf("events %v", describe(evs))
	}
	e.tap.mu.Lock()
	left := e.tap.fails
	e.tap.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d injected failures left, want 0", left)
	}
}

// TestJoinFailure: a join whose seeding fails returns the error, leaves nothing subscribed, and a
// later join works.
func TestJoinFailure(t *testing.T) {
	e := newEnv(t)
	e.tap.mu.Lock()
	e.tap.fails = 1
	e.tap.mu.Unlock()
	w := newRecorder()
	if err := e.hub.Join(context.Background(), w, []mesh.Code{mA}, nil); err == nil {
		t.Fatal("Join succeeded with a failing snapshot")
	}
	e.hub.waitUnsubscribed()
	if a, r := e.tap.counts(mA); a != 1 || r != 1 {
		t.Fatalf("mesh A: %d adds %d removes after a failed join, want 1 1", a, r)
	}
	if s := e.hub.Stats(); s.Meshes != 0 {
		t.Fatalf("stats %+v", s)
	}
	seedIDs(t, e.hub, w, mA)
	if s := e.hub.Stats(); s.Meshes != 1 || s.Watchers != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestJoinLeaveRace(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newRecorder()
			for range 50 {
				if err := e.hub.Join(context.Background(), w, []mesh.Code{mA, mB}, nil); err != nil {
					t.Error(err)
					return
				}
				e.hub.Leave(w, []mesh.Code{mA, mB})
			}
			_ = i
		}()
	}
	wg.Wait()
	if s := e.hub.Stats(); s.Meshes != 0 {
		t.Fatalf("stats %+v after all left", s)
	}
	// subscriptions are balanced: the last watcher's join is live
	w := newRecorder()
	seedIDs(t, e.hub, w, mA)
	e.fix(t, "f/1", mA, true)
	w.waitEvents(t, 1)
	a, r := e.tap.counts(mA)
	if a != r+1 {
		t.Fatalf("mesh A: %d adds, %d removes: unbalanced", a, r)
	}
}

func TestCloseTellsWatchers(t *testing.T) {
	e := newEnv(t)
	w := newRecorder()
	seedIDs(t, e.hub, w, mA)
	if err := e.hub.Close(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if !closed {
		t.Fatal("watcher not told")
	}
	if err := e.hub.Join(context.Background(), w, []mesh.Code{mA}, nil); err != ErrClosed {
		t.Fatalf("Join after Close = %v, want ErrClosed", err)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{TTL: -1}, {Shards: -1}, {TTL: time.Microsecond}} {
		if _, err := New(bus.NewMemory(bus.Options{}), o); err == nil {
			t.Errorf("New with %+v succeeded", o)
		}
	}
}
