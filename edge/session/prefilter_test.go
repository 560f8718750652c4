package session

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/edge/hub"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/proto"
)

// twinEnv is one bus and clock feeding two hubs: one with the circle pre-filter, one delivering
// every event to every watcher (hub.Options.DeliverAll). The memory bus hands each event to both
// hubs synchronously, in the same order.
type twinEnv struct {
	clk       *clock
	bus       bus.Bus
	taps      [2]*tapBus
	hubs      [2]*hub.Hub // 0: filtered, 1: DeliverAll
	o         Options
	minLat    float64 // the block the vehicles move in
	minLon    float64
	dLat      float64
	dLon      float64
	blockSide int
}

func newTwinEnv(t testing.TB) *twinEnv {
	t.Helper()
	clk := newClock()
	b := bus.NewMemory(bus.Options{TTL: ttl, Now: clk.Now})
	te := &twinEnv{clk: clk, bus: b, o: Options{Now: clk.Now, Heartbeat: time.Hour, MaxBatch: 16}}
	for i := range te.hubs {
		te.taps[i] = &tapBus{Bus: b}
		h, err := hub.New(te.taps[i], hub.Options{TTL: ttl, Sweep: time.Hour, Now: clk.Now, DeliverAll: i == 1})
		if err != nil {
			t.Fatal(err)
		}
		te.hubs[i] = h
	}
	t.Cleanup(func() {
		te.hubs[0].Close()
		te.hubs[1].Close()
		b.Close()
	})
	// a 5x5 block of third meshes with mA in the middle
	bd := mA.Bounds()
	te.dLat, te.dLon = bd.MaxLat-bd.MinLat, bd.MaxLon-bd.MinLon
	te.blockSide = 5
	te.minLat, te.minLon = bd.MinLat-2*te.dLat, bd.MinLon-2*te.dLon
	return te
}

// twinRider is one rider's request served by a session on each hub.
type twinRider struct {
	s     [2]*Session
	views [2]*view
	req   *meshcastv1.WatchRequest
}

func (te *twinEnv) randomReq(rnd *rand.Rand) *meshcastv1.WatchRequest {
	// centres in the inner 3x3 meshes, radii from 100 m to 1.5 km
	req := &meshcastv1.WatchRequest{
		Lat:     te.minLat + (1+3*rnd.Float64())*te.dLat,
		Lon:     te.minLon + (1+3*rnd.Float64())*te.dLon,
		RadiusM: uint32(100 + rnd.IntN(1400)),
	}
	if rnd.IntN(4) == 0 {
		req.MaxVehicles = uint32(1 + rnd.IntN(4))
	}
	if rnd.IntN(5) == 0 {
		req.Classes = []meshcastv1.VehicleClass{meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM}
	}
	if rnd.IntN(5) == 0 {
		req.MinIntervalMs = uint32(200 + rnd.IntN(800))
	}
	return req
}

func (te *twinEnv) newRider(t testing.TB, req *meshcastv1.WatchRequest) *twinRider {
	t.Helper()
	r := &twinRider{req: req}
	for i := range r.s {
		s, err := New(te.hubs[i], proto.CloneOf(req), te.o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		r.s[i], r.views[i] = s, newView()
	}
	return r
}

// drain takes every batch s has now (TryBatch, protobuf) and returns its frames in short form,
// grouped per vehicle in order (frames of different vehicles may be ordered differently by two
// hubs: a reseed and a sweep walk maps), snapshots in order, and the error.
func drain(t testing.TB, s *Session, v *view) (map[string][]string, []string, error) {
	t.Helper()
	per := map[string][]string{}
	var snaps []string
	for range 1000 {
		b, _, next, err := s.TryBatch(lengthFraming{}, func() []byte { return nil })
		if err != nil {
			return per, snaps, err
		}
		if b == nil {
			return per, snaps, nil
		}
		var fs []Frame
		for len(b) > 0 {
			n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
			body := b[4 : 4+n]
			b = b[4+n:]
			var ev meshcastv1.RiderEvent
			if err := proto.Unmarshal(body, &ev); err != nil {
				t.Fatalf("frame: %v", err)
			}
			switch k := ev.Kind.(type) {
			case *meshcastv1.RiderEvent_Snapshot:
				var ids []string
				for _, x := range k.Snapshot.Vehicles {
					ids = append(ids, fmt.Sprintf("%s@%d/%d", x.Id, x.DistanceM, x.ObservedAtMs))
				}
				snaps = append(snaps, strings.Join(ids, " "))
				clear(per) // what came before the snapshot is replaced by it
			case *meshcastv1.RiderEvent_Upsert:
				x := k.Upsert
				per[x.Id] = append(per[x.Id], fmt.Sprintf("up@%d/%d/%v", x.DistanceM, x.ObservedAtMs, x.Class))
			case *meshcastv1.RiderEvent_Remove:
				per[k.Remove.Id] = append(per[k.Remove.Id], "rm "+k.Remove.Reason.String())
			case *meshcastv1.RiderEvent_Heartbeat:
				snaps = append(snaps, "heartbeat")
			}
			// rebuild a Frame for the view (both encodings are not needed: proto only)
			fs = append(fs, Frame{Seq: ev.Seq, Kind: kindOf(&ev), Proto: body, JSON: nil})
		}
		if err := v.applyProto(fs); err != nil {
			t.Fatal(err)
		}
		if next != 0 {
			return per, snaps, nil
		}
	}
	t.Fatal("drain: more than 1000 batches")
	return nil, nil, nil
}

func kindOf(ev *meshcastv1.RiderEvent) Kind {
	switch ev.Kind.(type) {
	case *meshcastv1.RiderEvent_Snapshot:
		return KindSnapshot
	case *meshcastv1.RiderEvent_Upsert:
		return KindUpsert
	case *meshcastv1.RiderEvent_Remove:
		return KindRemove
	}
	return KindHeartbeat
}

// applyProto is view.apply for frames with the protobuf encoding only.
func (v *view) applyProto(fs []Frame) error {
	for _, f := range fs {
		var ev meshcastv1.RiderEvent
		if err := proto.Unmarshal(f.Proto, &ev); err != nil {
			return err
		}
		if err := v.applyEvent(&ev); err != nil {
			return err
		}
	}
	return nil
}

// twinVeh is a vehicle of the property test.
type twinVeh struct {
	id       string
	lat, lon float64
	class    meshcastv1.VehicleClass
	last     *meshcastv1.Vehicle // last fix applied (for replays)
}

// TestPrefilterSkipsOnlyIgnoredEvents drives the same random event stream through a hub with the
// circle pre-filter and one without (DeliverAll), each serving the same riders, and checks after
// every step that every rider got the same frames from both: the filter skips only watchers that
// would have ignored the event. The stream has vehicles walking across meshes (moves: removal
// with MovedTo and upsert), jumping far, going off duty and back (removals with a reason),
// changing class, older and duplicate events, events lost by the bus (stale mesh states), resyncs
// (reseeds), TTL sweeps, and riders moving their area (Move) with nearest-N caps, class filters
// and min_interval_ms.
func TestPrefilterSkipsOnlyIgnoredEvents(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runPrefilterTwin(t, seed, 1000) })
	}
}

func runPrefilterTwin(t *testing.T, seed uint64, steps int) {
	te := newTwinEnv(t)
	rnd := rand.New(rand.NewPCG(seed, 0x70726566))
	ctx := context.Background()
	// a rider watching the whole block keeps every mesh subscribed in both hubs: no mesh is
	// unsubscribed (asynchronously) and subscribed afresh in one hub and not the other
	lat, lon := mA.Center()
	riders := []*twinRider{te.newRider(t, &meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: 3000})}
	for range 24 {
		riders = append(riders, te.newRider(t, te.randomReq(rnd)))
	}
	vehs := make([]*twinVeh, 50)
	for i := range vehs {
		vehs[i] = &twinVeh{id: fmt.Sprintf("f/v%02d", i),
			lat:   te.minLat + rnd.Float64()*float64(te.blockSide)*te.dLat,
			lon:   te.minLon + rnd.Float64()*float64(te.blockSide)*te.dLon,
			class: meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD}
	}
	latPerM := 1 / (mesh.EarthRadiusM * math.Pi / 180)
	apply := func(v *twinVeh, disp bool, reason meshcastv1.RemovalReason) {
		te.clk.advance(time.Millisecond)
		m, err := mesh.Third(v.lat, v.lon)
		if err != nil {
			t.Fatal(err)
		}
		x := &meshcastv1.Vehicle{Id: v.id, Fleet: "f", Lat: v.lat, Lon: v.lon, Class: v.class, HeadingDeg: 90,
			SpeedKmh: 20, Mesh: m.String(), ObservedAtMs: te.clk.ms.Load()}
		if _, err := te.bus.Apply(ctx, bus.Update{Vehicle: x, Dispatchable: disp, Reason: reason}); err != nil {
			t.Fatal(err)
		}
		v.last = x
	}
	// both hubs get a crafted event straight from the "bus"
	deliver := func(ev *meshcastv1.MeshEvent) {
		m, err := mesh.Parse(ev.Mesh)
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range te.taps {
			tp.handler().OnEvent(m, proto.CloneOf(ev), nil)
		}
	}
	clamp := func(v *twinVeh) {
		side := float64(te.blockSide)
		v.lat = min(max(v.lat, te.minLat+1e-7), te.minLat+side*te.dLat-1e-7)
		v.lon = min(max(v.lon, te.minLon+1e-7), te.minLon+side*te.dLon-1e-7)
	}
	for step := range steps {
		te.clk.advance(time.Duration(20+rnd.IntN(200)) * time.Millisecond)
		v := vehs[rnd.IntN(len(vehs))]
		what := rnd.IntN(100)
		switch {
		case what < 60: // walk 20-200 m
			d := 20 + rnd.Float64()*180
			a := rnd.Float64() * 2 * math.Pi
			v.lat += d * latPerM * sinCos(a, true)
			v.lon += d * latPerM / 0.81 * sinCos(a, false)
			clamp(v)
			apply(v, true, 0)
		case what < 65: // jump anywhere in the block
			v.lat = te.minLat + rnd.Float64()*float64(te.blockSide)*te.dLat
			v.lon = te.minLon + rnd.Float64()*float64(te.blockSide)*te.dLon
			apply(v, true, 0)
		case what < 69: // off duty
			apply(v, false, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT)
		case what < 71: // class change, same place
			if v.class == meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD {
				v.class = meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM
			} else {
				v.class = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD
			}
			apply(v, true, 0)
		case what < 74: // an event lost by the bus (both hubs miss it): stale mesh states
			for _, tp := range te.taps {
				tp.mute(true)
			}
			d := 50 + rnd.Float64()*600
			v.lat += d * latPerM * sinCos(rnd.Float64()*6.28, true)
			clamp(v)
			apply(v, true, 0)
			for _, tp := range te.taps {
				tp.mute(false)
			}
		case what < 77: // a walk whose removal from the old mesh is lost (only the upsert arrives)
			for _, tp := range te.taps {
				tp.mute(true)
			}
			d := 100 + rnd.Float64()*400
			a := rnd.Float64() * 2 * math.Pi
			v.lat += d * latPerM * sinCos(a, true)
			v.lon += d * latPerM / 0.81 * sinCos(a, false)
			clamp(v)
			apply(v, true, 0)
			for _, tp := range te.taps {
				tp.mute(false)
			}
			deliver(&meshcastv1.MeshEvent{Mesh: v.last.Mesh, ObservedAtMs: v.last.ObservedAtMs,
				Kind: &meshcastv1.MeshEvent_Upsert{Upsert: proto.CloneOf(v.last)}})
		case what < 79: // an older upsert (dropped by the hub) or a duplicate of the last fix
			if v.last != nil {
				x := proto.CloneOf(v.last)
				if rnd.IntN(2) == 0 {
					x.ObservedAtMs -= int64(1 + rnd.IntN(500))
				}
				deliver(&meshcastv1.MeshEvent{Mesh: x.Mesh, ObservedAtMs: x.ObservedAtMs,
					Kind: &meshcastv1.MeshEvent_Upsert{Upsert: x}})
			}
		case what < 81: // a removal with MovedTo to a random neighbour (a move whose upsert is lost)
			if v.last != nil {
				m := mustMesh(v.last.Mesh)
				to, err := mesh.Third(v.lat+te.dLat*float64(rnd.IntN(3)-1), v.lon+te.dLon*float64(rnd.IntN(3)-1))
				if err == nil && to != m {
					te.clk.advance(time.Millisecond)
					deliver(removalEvent(v.id, m, te.clk.ms.Load(), 0, to))
				}
			}
		case what < 84: // resync a mesh on both hubs
			m, err := mesh.Third(te.minLat+rnd.Float64()*5*te.dLat, te.minLon+rnd.Float64()*5*te.dLon)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range te.hubs {
				if err := h.Resync(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
		case what < 86: // time passes: the TTL sweep removes the silent vehicles
			te.clk.advance(time.Duration(rnd.IntN(int(ttl/time.Millisecond))) * time.Millisecond)
			for _, h := range te.hubs {
				h.Sweep()
			}
		case what < 92: // a rider moves its area (sometimes only a little: it keeps meshes)
			r := riders[1+rnd.IntN(len(riders)-1)]
			req := te.randomReq(rnd)
			if rnd.IntN(2) == 0 {
				req = proto.CloneOf(r.req)
				req.Lat += (rnd.Float64() - 0.5) * 0.3 * te.dLat
				req.RadiusM = uint32(100 + rnd.IntN(1400))
			}
			for i, s := range r.s {
				if err := s.Move(proto.CloneOf(req)); err != nil {
					t.Fatalf("rider %d Move: %v", i, err)
				}
			}
			r.req = req
		default: // a short walk: stays in the mesh, mostly
			v.lat += 10 * latPerM
			clamp(v)
			apply(v, true, 0)
		}
		for ri, r := range riders {
			pa, sa, ea := drain(t, r.s[0], r.views[0])
			pb, sb, eb := drain(t, r.s[1], r.views[1])
			if ea != eb {
				t.Fatalf("step %d rider %d: errors differ: filtered %v, all %v", step, ri, ea, eb)
			}
			if !slices.Equal(sa, sb) || fmt.Sprint(pa) != fmt.Sprint(pb) {
				t.Fatalf("step %d rider %d (%v): frames differ\nfiltered: %v %v\nall:      %v %v", step, ri, r.req, sa, pa, sb, pb)
			}
			if len(r.views[0].vs) != len(r.views[1].vs) {
				t.Fatalf("step %d rider %d: views differ: %d and %d vehicles", step, ri, len(r.views[0].vs), len(r.views[1].vs))
			}
			for id, x := range r.views[0].vs {
				if !proto.Equal(x, r.views[1].vs[id]) {
					t.Fatalf("step %d rider %d: %s differs: %v and %v", step, ri, id, x, r.views[1].vs[id])
				}
			}
		}
	}
	sf, sa := te.hubs[0].Stats(), te.hubs[1].Stats()
	if sa.Skipped != 0 {
		t.Fatalf("DeliverAll hub skipped %d", sa.Skipped)
	}
	if sf.Events != sa.Events {
		t.Fatalf("events fanned out: filtered %d, all %d", sf.Events, sa.Events)
	}
	// the filter did work: the comparison above is not vacuous
	if sf.Skipped < uint64(steps)/4 {
		t.Fatalf("filtered hub skipped only %d watchers in %d steps", sf.Skipped, steps)
	}
	t.Logf("events %d, watchers skipped %d", sf.Events, sf.Skipped)
}

func sinCos(a float64, sin bool) float64 {
	s, c := math.Sincos(a)
	if sin {
		return s
	}
	return c
}

// up hands both hubs an upsert of id at fractions of mesh m, at the next millisecond.
func (te *twinEnv) up(id string, m mesh.Code, fy, fx float64) {
	te.clk.advance(time.Millisecond)
	lat, lon := at(m, fy, fx)
	te.deliverBoth(upsertEvent(id, lat, lon, te.clk.ms.Load()))
}

func (te *twinEnv) deliverBoth(ev *meshcastv1.MeshEvent) {
	m := mustMesh(ev.Mesh)
	for _, tp := range te.taps {
		tp.handler().OnEvent(m, proto.CloneOf(ev), nil)
	}
}

// frames drains r's two sessions, fails if they differ and returns the filtered one's frames.
func (te *twinEnv) frames(t *testing.T, r *twinRider) string {
	t.Helper()
	pa, sa, ea := drain(t, r.s[0], r.views[0])
	pb, sb, eb := drain(t, r.s[1], r.views[1])
	if ea != nil || eb != nil {
		t.Fatalf("errors: %v, %v", ea, eb)
	}
	a, b := fmt.Sprint(sa, pa), fmt.Sprint(sb, pb)
	if a != b {
		t.Fatalf("frames differ:\nfiltered %s\nall      %s", a, b)
	}
	return a
}

// TestPrefilterTraps: the situations where a filter on "previous and new position outside the
// circle" alone would skip an event the rider needs; each checks the frames against a hub
// without the filter and names the frame the rider must get.
func TestPrefilterTraps(t *testing.T) {
	// a vehicle held through another mesh, whose entry in this mesh is stale (its removal was
	// lost), comes back outside the circle: it must be removed (LEFT_AREA)
	t.Run("stale entry in the mesh", func(t *testing.T) {
		te := newTwinEnv(t)
		r := te.newRider(t, riderReq()) // centre on the A|B border, 500 m: watches A and B
		te.frames(t, r)
		te.up("f/1", mB, 0.5, 0.90) // ~1 km east: outside
		te.up("f/1", mB, 0.5, 0.92)
		te.frames(t, r)
		te.up("f/1", mA, 0.5, 0.90) // into A, inside; B's removal lost
		if got := te.frames(t, r); !strings.Contains(got, "f/1:[up@") {
			t.Fatalf("frames %s, want the upsert", got)
		}
		te.up("f/1", mB, 0.5, 0.95) // back in B, outside; B still holds the old entry
		if got := te.frames(t, r); !strings.Contains(got, "f/1:[rm REMOVAL_REASON_LEFT_AREA]") {
			t.Fatalf("frames %s, want the LEFT_AREA removal", got)
		}
	})
	// the same with the move's removal (MovedTo B) arriving first: the rider holds the vehicle
	// in transit to B and must get its upsert there
	t.Run("transit to a stale mesh", func(t *testing.T) {
		te := newTwinEnv(t)
		r := te.newRider(t, riderReq())
		te.frames(t, r)
		te.up("f/1", mB, 0.5, 0.90)
		te.up("f/1", mB, 0.5, 0.92)
		te.up("f/1", mA, 0.5, 0.90)
		te.frames(t, r)
		te.clk.advance(time.Millisecond)
		ts := te.clk.ms.Load()
		te.deliverBoth(removalEvent("f/1", mA, ts, 0, mB))
		lat, lon := at(mB, 0.5, 0.95)
		te.deliverBoth(upsertEvent("f/1", lat, lon, ts))
		if got := te.frames(t, r); !strings.Contains(got, "f/1:[rm REMOVAL_REASON_LEFT_AREA]") {
			t.Fatalf("frames %s, want the LEFT_AREA removal", got)
		}
	})
	// a rider's Move that keeps a mesh: the next upsert there is judged by the new circle
	t.Run("move keeps the mesh", func(t *testing.T) {
		te := newTwinEnv(t)
		r := te.newRider(t, riderReq())
		te.frames(t, r)
		te.up("f/1", mB, 0.5, 0.90)
		te.up("f/1", mB, 0.5, 0.91)
		te.up("f/1", mB, 0.5, 0.92) // skipped by the filtered hub
		lat, lon := at(mB, 0.5, 0.3)
		req := &meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: 300} // still watches B
		for _, s := range r.s {
			if err := s.Move(proto.CloneOf(req)); err != nil {
				t.Fatal(err)
			}
		}
		if got := te.frames(t, r); !strings.Contains(got, "[] map[]") {
			t.Fatalf("frames %s, want an empty snapshot", got)
		}
		te.up("f/1", mB, 0.5, 0.45) // outside the old circle, inside the new one
		if got := te.frames(t, r); !strings.Contains(got, "f/1:[up@") {
			t.Fatalf("frames %s, want the upsert", got)
		}
	})
	// a rider joining meshes whose states disagree (a stale entry in the mesh seeded last)
	// holds the vehicle from the seed: the next upsert outside the circle must reach it
	t.Run("seed of a stale entry", func(t *testing.T) {
		te := newTwinEnv(t)
		keeper := te.newRider(t, riderReq()) // keeps A and B subscribed: joins seed from the hub
		te.frames(t, keeper)
		te.up("f/1", mB, 0.5, 0.1)  // in B, inside
		te.up("f/1", mA, 0.5, 0.05) // into A far west, outside; B's removal lost
		te.up("f/1", mA, 0.5, 0.06)
		te.frames(t, keeper)
		r := te.newRider(t, riderReq()) // seeds A (outside), then B: the stale entry, inside
		if got := te.frames(t, r); !strings.Contains(got, "f/1@") {
			t.Fatalf("frames %s, want the stale vehicle in the snapshot (the session's seed)", got)
		}
		te.up("f/1", mA, 0.5, 0.07)
		if got := te.frames(t, r); !strings.Contains(got, "f/1:[rm REMOVAL_REASON_LEFT_AREA]") {
			t.Fatalf("frames %s, want the LEFT_AREA removal", got)
		}
	})
}

// TestReplacingAPendingUpdateDoesNotCut: QueueLimit counts vehicles with an update ready; a new
// position of a vehicle whose update is already pending adds none, so it does not cut the rider,
// even when updates deferred by min_interval_ms all came due at once and left it above the
// limit (the hub's pre-filter relies on it: it skips exactly such no-op deliveries too). A new
// vehicle then does cut it.
func TestReplacingAPendingUpdateDoesNotCut(t *testing.T) {
	e := newEnv(t)
	o := e.o
	o.QueueLimit, o.MaxBatch = 2, 1
	req := riderReq()
	req.MinIntervalMs = 1000
	for i := range 4 {
		e.apply(t, e.vehAt(fmt.Sprint("f/", i), mB, 0.5, 0.05+0.02*float64(i)))
	}
	s := newSession(t, e, req, o)
	if got := kinds(t, next(t, s)); len(got) != 1 || !strings.HasPrefix(got[0], "snapshot[") {
		t.Fatalf("frames %v, want the snapshot", got)
	}
	for i := range 4 { // each deferred by the interval: not the rider's fault
		e.apply(t, e.vehAt(fmt.Sprint("f/", i), mB, 0.5, 0.06+0.02*float64(i)))
	}
	e.clk.advance(time.Second)
	s.wake()
	if got := kinds(t, next(t, s)); len(got) != 1 { // one of four: three left ready, over the limit
		t.Fatalf("frames %v, want one", got)
	}
	e.apply(t, e.vehAt("f/1", mB, 0.5, 0.065)) // a pending vehicle's newer position
	e.apply(t, e.vehAt("f/2", mB, 0.5, 0.9))   // one leaves: its pending upsert becomes a removal
	if pend := s.Pending(); pend != 3 {
		t.Fatalf("Pending %d, want 3", pend)
	}
	e.apply(t, e.vehAt("f/new", mB, 0.5, 0.01)) // a new vehicle: 4 ready > 2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Next(ctx, nil); err != ErrTooSlow {
		t.Fatalf("Next: %v, want ErrTooSlow", err)
	}
}
