package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

var (
	mA = mustMesh("53394611") // Tokyo Station
	mB = mustMesh("53394612") // east of A
)

func mustMesh(s string) mesh.Code {
	c, err := mesh.Parse(s)
	if err != nil {
		panic(err)
	}
	return c
}

// at returns the point at fractions (fy north, fx east) of mesh m's rectangle.
func at(m mesh.Code, fy, fx float64) (lat, lon float64) {
	b := m.Bounds()
	return b.MinLat + fy*(b.MaxLat-b.MinLat), b.MinLon + fx*(b.MaxLon-b.MinLon)
}

// centre of the rider in the tests: on the border of A and B, half way up.
func riderReq() *meshcastv1.WatchRequest {
	lat, lon := at(mB, 0.5, 0)
	return &meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: 500}
}

func newSession(t *testing.T, e *env, req *meshcastv1.WatchRequest, o Options) *Session {
	t.Helper()
	s, err := New(e.hub, req, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func (e *env) vehAt(id string, m mesh.Code, fy, fx float64) veh {
	lat, lon := at(m, fy, fx)
	return veh{id: id, lat: lat, lon: lon, disp: true}
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames\n got %q\nwant %q", got, want)
	}
}

func TestSnapshotThenEvents(t *testing.T) {
	e := newEnv(t)
	e.apply(t, e.vehAt("f/near", mB, 0.5, 0.05)) // ~56 m east of the centre
	e.apply(t, e.vehAt("f/far", mB, 0.5, 0.5))   // ~565 m: outside the 500 m radius
	e.apply(t, e.vehAt("f/west", mA, 0.5, 0.9))  // ~113 m west
	s := newSession(t, e, riderReq(), e.o)
	expect(t, kinds(t, next(t, s)), "snapshot[f/near@56 f/west@113]")

	e.apply(t, e.vehAt("f/far", mB, 0.5, 0.3)) // moves in
	expect(t, kinds(t, next(t, s)), "up f/far@339")
	e.apply(t, e.vehAt("f/far", mB, 0.5, 0.9)) // moves out
	expect(t, kinds(t, next(t, s)), "rm f/far LEFT_AREA")
	e.apply(t, e.vehAt("f/far", mB, 0.5, 0.95)) // outside: nothing
	v := e.vehAt("f/near", mB, 0.5, 0.05)
	v.disp, v.reason = false, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
	e.apply(t, v)
	expect(t, kinds(t, next(t, s)), "rm f/near NOT_VACANT")
}

func TestClasses(t *testing.T) {
	e := newEnv(t)
	std := e.vehAt("f/std", mB, 0.5, 0.05)
	unspec := e.vehAt("f/unspec", mB, 0.5, 0.06)
	unspec.class = meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED
	std.class = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD
	van := e.vehAt("f/van", mB, 0.5, 0.07)
	van.class = meshcastv1.VehicleClass_VEHICLE_CLASS_VAN
	for _, v := range []veh{std, unspec, van} {
		e.apply(t, v)
	}
	req := riderReq()
	req.Classes = []meshcastv1.VehicleClass{meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD}
	s := newSession(t, e, req, e.o)
	expect(t, kinds(t, next(t, s)), "snapshot[f/std@56 f/unspec@68]")
	van.class = meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM
	e.apply(t, van)
	std.class = meshcastv1.VehicleClass_VEHICLE_CLASS_VAN // a class change takes it out
	e.apply(t, std)
	expect(t, kinds(t, next(t, s)), "rm f/std LEFT_AREA")
}

// TestMoveAcrossMeshesNoFlicker moves a vehicle from A to B inside the circle, with the
// removal on A arriving before and after the upsert on B: the rider sees one upsert, no removal.
func TestMoveAcrossMeshesNoFlicker(t *testing.T) {
	for _, removalFirst := range []bool{true, false} {
		t.Run(fmt.Sprint("removalFirst=", removalFirst), func(t *testing.T) {
			e := newEnv(t)
			ts := e.apply(t, e.vehAt("f/1", mA, 0.5, 0.95))
			s := newSession(t, e, riderReq(), e.o)
			expect(t, kinds(t, next(t, s)), "snapshot[f/1@56]")
			lat, lon := at(mB, 0.5, 0.1)
			up := upsertEvent("f/1", lat, lon, ts+1)
			rm := removalEvent("f/1", mA, ts+1, meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, mB)
			if removalFirst {
				e.deliver(rm)
				if !s.idle() {
					t.Fatal("the removal of a move to a watched mesh queued something")
				}
				e.deliver(up)
			} else {
				e.deliver(up)
				e.deliver(rm)
			}
			expect(t, kinds(t, next(t, s)), "up f/1@113")
			if !s.idle() {
				t.Fatal("more queued after the move")
			}
		})
	}
}

func TestMoveToUnwatchedMesh(t *testing.T) {
	e := newEnv(t)
	ts := e.apply(t, e.vehAt("f/1", mB, 0.5, 0.05))
	s := newSession(t, e, riderReq(), e.o)
	next(t, s)
	far := mustMesh("53394614")
	lat, lon := at(far, 0.5, 0.5)
	e.deliver(removalEvent("f/1", mB, ts+1, meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, far))
	e.deliver(upsertEvent("f/1", lat, lon, ts+1)) // on a mesh the rider does not watch: not delivered
	expect(t, kinds(t, next(t, s)), "rm f/1 LEFT_AREA")
}

// TestMoveUpsertLost: the removal says the vehicle moved to a watched mesh, but the upsert there
// never comes (pub/sub lost it): after the TTL the rider gets a STALE removal.
func TestMoveUpsertLost(t *testing.T) {
	e := newEnv(t)
	ts := e.apply(t, e.vehAt("f/1", mA, 0.5, 0.95))
	s := newSession(t, e, riderReq(), e.o)
	next(t, s)
	e.deliver(removalEvent("f/1", mA, ts+1, meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, mB))
	if !s.idle() {
		t.Fatal("queued something on the removal of a move")
	}
	e.clk.advance(ttl + time.Millisecond) // the removal's fix is 1 ms after the last upsert
	expect(t, kinds(t, next(t, s)), "rm f/1 STALE")

	// the same, but a resync of B shows the vehicle is not there: removed at once
	ts = e.apply(t, e.vehAt("f/2", mA, 0.5, 0.95))
	expect(t, kinds(t, next(t, s)), "up f/2@56")
	e.deliver(removalEvent("f/2", mA, ts+1, meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, mB))
	if err := e.hub.Resync(context.Background(), mA); err != nil { // another mesh: no effect
		t.Fatal(err)
	}
	if !s.idle() {
		t.Fatal("a resync of another mesh ended the move")
	}
	if err := e.hub.Resync(context.Background(), mB); err != nil {
		t.Fatal(err)
	}
	expect(t, kinds(t, next(t, s)), "rm f/2 STALE")
}

func TestStaleRemoval(t *testing.T) {
	e := newEnv(t)
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.05))
	s := newSession(t, e, riderReq(), e.o)
	next(t, s)
	e.clk.advance(ttl)
	e.hub.Sweep()
	expect(t, kinds(t, next(t, s)), "rm f/1 STALE")
}

func TestNearestN(t *testing.T) {
	e := newEnv(t)
	for i, fx := range []float64{0.05, 0.1, 0.2, 0.3} { // 57, 113, 226, 339 m
		e.apply(t, e.vehAt(fmt.Sprint("f/", i), mB, 0.5, fx))
	}
	req := riderReq()
	req.MaxVehicles = 2
	s := newSession(t, e, req, e.o)
	expect(t, kinds(t, next(t, s)), "snapshot[f/0@56 f/1@113]")

	e.apply(t, e.vehAt("f/new", mB, 0.5, 0.01))                        // nearer than both: the farthest shown goes
	expect(t, kinds(t, next(t, s)), "rm f/1 LEFT_AREA", "up f/new@11") // removal first: never more than N

	v := e.vehAt("f/0", mB, 0.5, 0.05)
	v.disp, v.reason = false, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
	e.apply(t, v) // a shown one leaves: the next nearest comes in
	expect(t, kinds(t, next(t, s)), "rm f/0 NOT_VACANT", "up f/1@113")
	if len(s.items) != 4 || s.shown.Len() != 2 || s.rest.Len() != 2 {
		t.Fatalf("view: %d items, %d shown, %d hidden; want 4, 2, 2", len(s.items), s.shown.Len(), s.rest.Len())
	}

	e.apply(t, e.vehAt("f/3", mB, 0.5, 0.25)) // a hidden one moves, still hidden: nothing
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.35)) // a shown one moves past a hidden one: swap
	expect(t, kinds(t, next(t, s)), "rm f/1 LEFT_AREA", "up f/2@226")
	e.apply(t, e.vehAt("f/new", mB, 0.5, 0.02)) // a shown one moves, still shown
	expect(t, kinds(t, next(t, s)), "up f/new@23")
}

func TestMinInterval(t *testing.T) {
	e := newEnv(t)
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.05))
	e.apply(t, e.vehAt("f/2", mB, 0.5, 0.1))
	req := riderReq()
	req.MinIntervalMs = 1000
	s := newSession(t, e, req, e.o)
	expect(t, kinds(t, next(t, s)), "snapshot[f/1@56 f/2@113]")
	for _, fx := range []float64{0.06, 0.07, 0.08} { // three updates within the interval
		e.apply(t, e.vehAt("f/1", mB, 0.5, fx))
	}
	if !s.idle() {
		t.Fatal("an update inside the interval is ready")
	}
	f2 := e.vehAt("f/2", mB, 0.5, 0.1)
	f2.disp, f2.reason = false, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
	e.apply(t, f2) // removals are not delayed
	expect(t, kinds(t, next(t, s)), "rm f/2 NOT_VACANT")
	e.apply(t, e.vehAt("f/new", mB, 0.5, 0.2)) // a new vehicle is not delayed
	expect(t, kinds(t, next(t, s)), "up f/new@226")
	e.clk.advance(time.Second)
	s.wake()
	expect(t, kinds(t, next(t, s)), "up f/1@90") // the latest position, once
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.09))
	if !s.idle() {
		t.Fatal("an update right after the last one is ready")
	}
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.9)) // leaves the radius: removed at once
	expect(t, kinds(t, next(t, s)), "rm f/1 LEFT_AREA")
}

func TestHeartbeat(t *testing.T) {
	e := newEnv(t)
	o := e.o
	o.Heartbeat = 15 * time.Second
	s := newSession(t, e, riderReq(), o)
	next(t, s)
	done := make(chan []Frame)
	go func() {
		fs, _ := s.Next(context.Background(), nil)
		done <- fs
	}()
	e.clk.advance(15 * time.Second)
	s.wake()
	fs := <-done
	expect(t, kinds(t, fs), "heartbeat")
	ev, _ := decode(fs[0])
	if got := ev.GetHeartbeat().GetServerTimeMs(); got != e.clk.ms.Load() {
		t.Fatalf("heartbeat time %d, want %d", got, e.clk.ms.Load())
	}
}

func TestMoveSendsNewSnapshot(t *testing.T) {
	e := newEnv(t)
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.05))
	e.apply(t, e.vehAt("f/2", mA, 0.5, 0.5))
	s := newSession(t, e, riderReq(), e.o)
	expect(t, kinds(t, next(t, s)), "snapshot[f/1@56]")
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.06)) // pending, then dropped by the move
	lat, lon := at(mA, 0.5, 0.5)
	if err := s.Move(&meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: 100}); err != nil {
		t.Fatal(err)
	}
	fs := next(t, s)
	expect(t, kinds(t, fs), "snapshot[f/2@0]")
	if fs[0].Seq != 2 { // the dropped update never got a seq
		t.Fatalf("snapshot after move has seq %d, want 2", fs[0].Seq)
	}
	if err := s.Move(&meshcastv1.WatchRequest{Lat: 91, Lon: lon}); err == nil {
		t.Fatal("Move to lat 91 succeeded")
	}
	e.apply(t, e.vehAt("f/2", mA, 0.5, 0.51)) // the failed move left the session as it was
	expect(t, kinds(t, next(t, s)), "up f/2@11")
	if st := e.hub.Stats(); st.Watchers != 1 {
		t.Fatalf("hub has %d registrations, want 1 (mesh A only)", st.Watchers)
	}
}

func TestCoalesceThenCut(t *testing.T) {
	e := newEnv(t)
	o := e.o
	o.QueueLimit = 4
	s := newSession(t, e, riderReq(), o)
	expect(t, kinds(t, next(t, s)), "snapshot[]")
	for round := range 5 { // 3 vehicles, 5 updates each: coalesced to 3
		for i := range 3 {
			e.apply(t, e.vehAt(fmt.Sprint("f/", i), mB, 0.5, 0.05*float64(i+1)+0.001*float64(round)))
		}
	}
	expect(t, kinds(t, next(t, s)), "up f/0@61", "up f/1@117", "up f/2@174")
	for i := range 5 { // 5 distinct vehicles pending > 4: cut
		e.apply(t, e.vehAt(fmt.Sprint("f/x", i), mB, 0.3, 0.05*float64(i+1)))
	}
	if _, err := s.Next(context.Background(), nil); !errors.Is(err, ErrTooSlow) {
		t.Fatalf("Next = %v, want ErrTooSlow", err)
	}
	if st := e.hub.Stats(); st.Watchers != 0 || st.Meshes != 0 {
		t.Fatalf("a cut rider is still in the hub: %+v", st)
	}
	if _, err := s.Next(context.Background(), nil); !errors.Is(err, ErrTooSlow) {
		t.Fatalf("second Next = %v, want ErrTooSlow", err)
	}
	s.Close()
	if _, err := s.Next(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
}

func TestMaxBatchAndFirstSeq(t *testing.T) {
	e := newEnv(t)
	o := e.o
	o.MaxBatch, o.FirstSeq = 4, 42
	s := newSession(t, e, riderReq(), o)
	if fs := next(t, s); fs[0].Seq != 42 {
		t.Fatalf("first seq %d, want 42", fs[0].Seq)
	}
	for i := range 10 {
		e.apply(t, e.vehAt(fmt.Sprint("f/", i), mB, 0.5, 0.01*float64(i+1)))
	}
	var sizes []int
	for range 3 {
		sizes = append(sizes, len(next(t, s)))
	}
	if fmt.Sprint(sizes) != "[4 4 2]" {
		t.Fatalf("batches %v, want [4 4 2]", sizes)
	}
}

func TestNextEnds(t *testing.T) {
	e := newEnv(t)
	s := newSession(t, e, riderReq(), e.o)
	next(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.Next(ctx, nil)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next = %v, want context.Canceled", err)
	}
	go func() {
		_, err := s.Next(context.Background(), nil)
		done <- err
	}()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next = %v, want ErrClosed", err)
	}
	if err := s.Move(riderReq()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Move after Close = %v, want ErrClosed", err)
	}
	if st := e.hub.Stats(); st.Watchers != 0 {
		t.Fatalf("closed session still registered: %+v", st)
	}

	s2 := newSession(t, e, riderReq(), e.o)
	next(t, s2)
	e.hub.Close()
	if _, err := s2.Next(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after hub Close = %v, want ErrClosed", err)
	}
	if _, err := New(e.hub, riderReq(), e.o); err == nil {
		t.Fatal("New on a closed hub succeeded")
	}
}

func TestNewInvalid(t *testing.T) {
	e := newEnv(t)
	_, err := New(e.hub, &meshcastv1.WatchRequest{Lat: 100}, e.o)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "lat" {
		t.Fatalf("New = %v, want an InvalidError for lat", err)
	}
}

// TestWriteDelay: with a write delay the snapshot goes at once; later updates are held for the
// delay after the first of them, coalesced by vehicle (latest wins) and leave in one batch; the
// updates a full batch left over are not held again.
func TestWriteDelay(t *testing.T) {
	e := newEnv(t)
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.05))
	o := e.o
	o.WriteDelay = 100 * time.Millisecond
	o.MaxBatch = 2
	s := newSession(t, e, riderReq(), o)
	if s.held(e.clk.Now()) != 0 {
		t.Fatal("the snapshot is held")
	}
	expect(t, kinds(t, next(t, s)), "snapshot[f/1@56]")

	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.06))
	first := e.clk.Now()
	e.clk.advance(40 * time.Millisecond)
	e.apply(t, e.vehAt("f/2", mB, 0.5, 0.1))
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.07)) // coalesced with f/1's first update
	s.mu.Lock()
	hold := s.held(e.clk.Now())
	s.mu.Unlock()
	if want := first.Add(100 * time.Millisecond).Sub(e.clk.Now()); hold != want {
		t.Fatalf("held for %v more, want %v (100ms after the first update)", hold, want)
	}
	e.clk.advance(hold)
	expect(t, kinds(t, next(t, s)), "up f/1@79", "up f/2@113")

	// three updates: a batch of two after the delay, the third right after it
	for i, id := range []string{"f/1", "f/2", "f/3"} {
		e.apply(t, e.vehAt(id, mB, 0.5, 0.2+0.01*float64(i)))
	}
	e.clk.advance(100 * time.Millisecond)
	if got := len(next(t, s)); got != 2 {
		t.Fatalf("batch of %d, want 2 (MaxBatch)", got)
	}
	s.mu.Lock()
	hold = s.held(e.clk.Now())
	s.mu.Unlock()
	if hold != 0 {
		t.Fatalf("the update left by a full batch is held for %v", hold)
	}
	expect(t, kinds(t, next(t, s)), "up f/3@248")
}

// lengthFraming frames each event as a 4-byte big-endian length and the event (the test's
// own framing, like the transports' length-prefixed ones).
type lengthFraming struct{ json bool }

func (f lengthFraming) JSON() bool { return f.json }
func (f lengthFraming) Begin(b []byte, i int, seq uint64, k Kind) []byte {
	return append(b, 0, 0, 0, 0)
}
func (f lengthFraming) End(b []byte, start int) []byte {
	n := len(b) - start
	b[start-4], b[start-3], b[start-2], b[start-1] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b
}

func splitLength(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("%d bytes left: no length", len(b))
		}
		n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out
}

// TestNextBatch: NextBatch encodes each event once, in the framing's encoding, after what the
// buffer already holds; the events are those Next would give (same seqs, same content in either
// encoding) and Batch reports their number, the last seq and the upserts' observed_at_ms.
func TestNextBatch(t *testing.T) {
	for _, js := range []bool{false, true} {
		e := newEnv(t)
		e.apply(t, e.vehAt("f/1", mB, 0.5, 0.05))
		a := newSession(t, e, riderReq(), e.o) // NextBatch
		b := newSession(t, e, riderReq(), e.o) // Next, for the expected events
		ctx := context.Background()
		check := func(prefix string) {
			t.Helper()
			buf, bt, err := a.NextBatch(ctx, lengthFraming{js}, func() []byte { return []byte(prefix) })
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf, []byte(prefix)) {
				t.Fatalf("the buffer's first bytes %q were not kept", buf[:len(prefix)])
			}
			want := next(t, b)
			got := splitLength(t, buf[len(prefix):])
			if len(got) != len(want) || bt.Events != len(want) || bt.LastSeq != want[len(want)-1].Seq {
				t.Fatalf("batch of %d events (Batch %+v), want %d up to seq %d", len(got), bt, len(want), want[len(want)-1].Seq)
			}
			var observed []int64
			for i, g := range got {
				w := want[i].Proto
				if js {
					w = want[i].JSON
				}
				if !bytes.Equal(g, w) {
					t.Fatalf("event %d: %q, want %q", i, g, w)
				}
				if ev, _ := decode(want[i]); ev.GetUpsert() != nil {
					observed = append(observed, ev.GetUpsert().ObservedAtMs)
				}
			}
			if !slices.Equal(bt.Observed, observed) {
				t.Fatalf("observed %v, want %v", bt.Observed, observed)
			}
		}
		check("")
		e.apply(t, e.vehAt("f/2", mB, 0.5, 0.1))
		e.apply(t, e.vehAt("f/1", mB, 0.5, 0.9)) // leaves: a removal
		check("head")
	}
}
