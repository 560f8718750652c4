package hub

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// TestCircleOutsideIsSafeAndTight: a position within the radius by mesh.DistanceM (the riders'
// metric) is never outside the circle in its mesh's plane, and one farther than the radius plus
// the filter's slack and margin (and 0.5% more) always is, for radii from 1 m to 3 km, centres
// up to 3 km from the position's mesh, across Japan's latitudes (24-46°) and at the mesh
// domain's northern end (66°).
func TestCircleOutsideIsSafeAndTight(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 300_000 {
		clat, clon := 24+rnd.Float64()*22, 123+rnd.Float64()*22
		if i%10 == 0 {
			clat = 65 + rnd.Float64()
		}
		r := 1 + rnd.Float64()*2999
		if i%4 == 0 {
			r = float64(1 + rnd.IntN(20))
		}
		// points around the circle's edge, and some anywhere near
		d := r * (0.9 + 0.2*rnd.Float64())
		if i%3 == 0 {
			d = rnd.Float64() * 3 * r
		}
		a := rnd.Float64() * 2 * math.Pi
		lat := clat + d*math.Sin(a)/111_195
		lon := clon + d*math.Cos(a)/(111_195*math.Cos(clat*math.Pi/180))
		m, err := mesh.Third(lat, lon)
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEntry(&meshcastv1.Vehicle{Id: "f/1", Lat: lat, Lon: lon, Mesh: m.String()})
		if err != nil {
			t.Fatal(err)
		}
		lc := NewCircle(clat, clon, r).inMesh(m)
		if lc.q == 0 {
			if d+r < circleMaxM-1000 {
				t.Fatalf("circle of %v m at %v m from mesh %s not filtered", r, d, m)
			}
			continue
		}
		dist := mesh.DistanceM(clat, clon, lat, lon)
		out := lc.outside(e)
		if dist <= r && out {
			t.Fatalf("(%v,%v) at %.6f m from (%v,%v) is within %v m but outside", lat, lon, dist, clat, clon, r)
		}
		if dist > r*(1+circleSlack+0.005)+CircleMarginM && !out {
			t.Fatalf("(%v,%v) at %.6f m from (%v,%v) is beyond %v m + slack and margin but not outside", lat, lon, dist, clat, clon, r)
		}
	}
	var zero localCircle
	e, _ := NewEntry(&meshcastv1.Vehicle{Id: "f/1", Lat: 35.7, Lon: 139.7, Mesh: "53394611"})
	if zero.outside(e) {
		t.Fatal("the zero localCircle filters")
	}
	if lc := NewCircle(35.68, 139.76, 100).inMesh(mA); lc.outside(&Entry{ID: "x"}) {
		t.Fatal("an Entry not built by NewEntry is filtered")
	}
}

// upsertAt is a bus upsert event of vehicle id at fractions (fy north, fx east) of mesh m.
func upsertAt(id string, m mesh.Code, fy, fx float64, ts int64) *meshcastv1.MeshEvent {
	b := m.Bounds()
	lat, lon := b.MinLat+fy*(b.MaxLat-b.MinLat), b.MinLon+fx*(b.MaxLon-b.MinLon)
	return &meshcastv1.MeshEvent{Mesh: m.String(), ObservedAtMs: ts, Kind: &meshcastv1.MeshEvent_Upsert{
		Upsert: &meshcastv1.Vehicle{Id: id, Fleet: "f", Lat: lat, Lon: lon, Mesh: m.String(), ObservedAtMs: ts}}}
}

func removal(id string, m mesh.Code, ts int64, movedTo mesh.Code) *meshcastv1.MeshEvent {
	ev := &meshcastv1.MeshEvent{Mesh: m.String(), ObservedAtMs: ts, Kind: &meshcastv1.MeshEvent_Remove{
		Remove: &meshcastv1.Removal{Id: id, Reason: meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT}}}
	if movedTo != 0 {
		ev.MovedTo = movedTo.String()
	}
	return ev
}

func times(evs []*Event) []string {
	var out []string
	for _, ev := range evs {
		k := "up"
		if ev.Upsert == nil {
			k = "rm"
		}
		out = append(out, fmt.Sprintf("%s%d", k, ev.ObservedAtMs-1_700_000_000_000))
	}
	return out
}

// TestPrefilterSkipsAfterASettledOutsideFix: a watcher with a circle is skipped for an upsert
// only when the vehicle's previous fix in the mesh, written after the circle was set, and the new
// one are both outside it, and nothing of the vehicle (a removal here or on another mesh, a first
// fix) came in between; a watcher without a circle gets everything.
func TestPrefilterSkipsAfterASettledOutsideFix(t *testing.T) {
	e := newEnv(t)
	w, all := newRecorder(), newRecorder()
	seedIDs(t, e.hub, w, mA, mB)
	seedIDs(t, e.hub, all, mA, mB)
	lat, lon := mA.Center()
	c := NewCircle(lat, lon, 200)
	const base = 1_700_000_000_000
	on := func(ev *meshcastv1.MeshEvent) {
		m, _ := mesh.Parse(ev.Mesh)
		e.hub.onEvent(m, ev)
	}
	e.clk.ms.Store(base + 100)
	on(upsertAt("f/1", mA, 0.05, 0.05, base+1)) // a first fix
	on(upsertAt("f/1", mA, 0.05, 0.06, base+2)) // settled, but written before the circle
	e.hub.SetCircle(w, []mesh.Code{mA, mB}, &c)
	on(upsertAt("f/1", mA, 0.05, 0.07, base+3))  // delivered: the previous predates the circle
	on(upsertAt("f/1", mA, 0.05, 0.08, base+4))  // both outside, settled: skipped
	on(upsertAt("f/1", mA, 0.05, 0.09, base+5))  // skipped
	on(upsertAt("f/1", mA, 0.5, 0.5, base+6))    // inside: delivered
	on(upsertAt("f/1", mA, 0.05, 0.08, base+7))  // out of the circle (a LEFT_AREA): delivered
	on(upsertAt("f/1", mA, 0.05, 0.09, base+8))  // skipped
	on(upsertAt("f/1", mA, 0.5, 0.5, base+7))    // older: dropped by the hub, nobody gets it
	on(upsertAt("f/1", mA, 0.05, 0.10, base+9))  // skipped (the dropped one did not count)
	on(removal("f/1", mB, base+10, 0))           // a removal elsewhere (not held there): delivered
	on(upsertAt("f/1", mA, 0.05, 0.11, base+11)) // delivered: the removal came in between
	on(upsertAt("f/1", mA, 0.05, 0.12, base+12)) // skipped
	on(removal("f/1", mA, base+13, mB))          // a move to B: delivered
	on(upsertAt("f/1", mB, 0.05, 0.5, base+13))  // arrives in B: no previous entry there
	on(upsertAt("f/1", mB, 0.05, 0.5, base+14))  // delivered: the previous tied with the removal
	on(upsertAt("f/1", mB, 0.05, 0.5, base+15))  // skipped
	on(upsertAt("f/1", mB, 0.05, 0.5, base+15))  // a duplicate: skipped (it changes nothing)
	on(upsertAt("f/1", mB, 0.05, 0.5, base+16))  // delivered: the duplicate is not strictly newer
	e.hub.SetCircle(w, []mesh.Code{mB}, nil)
	on(upsertAt("f/1", mB, 0.05, 0.5, base+17)) // no circle: delivered
	on(upsertAt("f/1", mB, 0.05, 0.5, base+18)) // no circle: delivered
	want := "[up1 up2 up3 up6 up7 rm10 up11 rm13 up13 up14 up16 up17 up18]"
	if got := fmt.Sprint(times(w.events())); got != want {
		t.Fatalf("watcher with a circle got %s, want %s", got, want)
	}
	if got := len(all.events()); got != 20 {
		t.Fatalf("watcher without a circle got %d events (%v), want 20", got, times(all.events()))
	}
	if s := e.hub.Stats(); s.Skipped != 7 || s.Events != 20 {
		t.Fatalf("Stats: Skipped %d, Events %d; want 7 and 20", s.Skipped, s.Events)
	}
}

// blocker is a watcher whose Deliver, while armed, says it entered and waits for a release:
// an event of the vehicle held in flight on another mesh's fan-out.
type blocker struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocker) Deliver(ev *Event) {
	if b.entered != nil {
		b.entered <- struct{}{}
		<-b.release
	}
}
func (b *blocker) Resynced(mesh.Code) {}
func (b *blocker) HubClosed()         {}

// TestPrefilterWaitsForEventsInFlight: an upsert fanned out while an older event of the vehicle
// is still being fanned out on another mesh (it may reach a watcher after the upsert) does not
// become the basis for skipping the next upsert: the watcher gets it.
func TestPrefilterWaitsForEventsInFlight(t *testing.T) {
	e := newEnv(t)
	w := newRecorder()
	seedIDs(t, e.hub, w, mA, mB)
	bl := &blocker{}
	if err := e.hub.Join(t.Context(), bl, []mesh.Code{mB}, nil); err != nil {
		t.Fatal(err)
	}
	lat, lon := mA.Center()
	c := NewCircle(lat, lon, 200)
	e.hub.SetCircle(w, []mesh.Code{mA, mB}, &c)
	const base = 1_700_000_000_000
	e.clk.ms.Store(base + 100)
	e.hub.onEvent(mA, upsertAt("f/1", mA, 0.05, 0.05, base+1))
	e.hub.onEvent(mA, upsertAt("f/1", mA, 0.05, 0.06, base+2)) // skipped: the first fix settled
	e.hub.onEvent(mA, upsertAt("f/1", mA, 0.05, 0.07, base+3)) // skipped
	bl.entered, bl.release = make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.hub.onEvent(mB, upsertAt("f/1", mB, 0.05, 0.5, base+4)) // held in bl's Deliver
	}()
	<-bl.entered
	bl.entered = nil                                           // (read by the held Deliver only before it blocked)
	e.hub.onEvent(mA, upsertAt("f/1", mA, 0.05, 0.08, base+5)) // delivered: B's event came in between
	close(bl.release)
	<-done
	e.hub.onEvent(mA, upsertAt("f/1", mA, 0.05, 0.09, base+6)) // delivered: 5 went out with 4 in flight
	e.hub.onEvent(mA, upsertAt("f/1", mA, 0.05, 0.10, base+7)) // skipped
	want := "[up1 up4 up5 up6]"
	if got := fmt.Sprint(times(w.events())); got != want {
		t.Fatalf("watcher got %s, want %s", got, want)
	}
}
