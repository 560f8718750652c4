package session

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// The churn region: about 3.3 × 3.6 km around Tokyo Station, some 20 third-order meshes.
const (
	churnMinLat, churnMaxLat = 35.665, 35.695
	churnMinLon, churnMaxLon = 139.745, 139.785
)

// churnVeh is the ground truth of one test vehicle: its last applied fix.
type churnVeh struct {
	veh
	ts      int64
	applied bool
	last    mesh.Code // mesh of the last applied fix
}

// churnRider is a session, the goroutine reading it like a transport would, and its view.
type churnRider struct {
	s    *Session
	req  *meshcastv1.WatchRequest // the last area asked for (guarded by mu)
	mu   sync.Mutex
	v    *view
	err  error
	done chan struct{}
}

func randPoint(r *rand.Rand) (lat, lon float64) {
	return churnMinLat + r.Float64()*(churnMaxLat-churnMinLat), churnMinLon + r.Float64()*(churnMaxLon-churnMinLon)
}

func randClass(r *rand.Rand) meshcastv1.VehicleClass {
	return meshcastv1.VehicleClass(1 + r.IntN(4))
}

func randRequest(r *rand.Rand) *meshcastv1.WatchRequest {
	lat, lon := randPoint(r)
	req := &meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: uint32(200 + r.IntN(1800))}
	if r.IntN(10) < 3 {
		for c := range 4 {
			if r.IntN(2) == 0 {
				req.Classes = append(req.Classes, meshcastv1.VehicleClass(c+1))
			}
		}
	}
	if r.IntN(10) < 4 {
		req.MaxVehicles = uint32(1 + r.IntN(8))
	}
	if r.IntN(10) < 3 {
		req.MinIntervalMs = uint32(100 + r.IntN(400))
	}
	return req
}

// truth is the server's truth for a request: every dispatchable, fresh vehicle within the radius
// and classes, the nearest N with a cap, as "id lat lon ts class distance" lines.
func truth(vs []*churnVeh, req *meshcastv1.WatchRequest, nowMs int64) []string {
	type cand struct {
		v *churnVeh
		d float64
	}
	var cs []cand
	for _, v := range vs {
		if !v.applied || !v.disp || v.ts <= nowMs-ttl.Milliseconds() {
			continue
		}
		d := mesh.DistanceM(req.Lat, req.Lon, v.lat, v.lon)
		if d > float64(req.RadiusM) {
			continue
		}
		if len(req.Classes) > 0 && !slices.Contains(req.Classes, v.class) {
			continue
		}
		cs = append(cs, cand{v, d})
	}
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.v.id, b.v.id)) })
	if req.MaxVehicles > 0 && len(cs) > int(req.MaxVehicles) {
		cs = cs[:req.MaxVehicles]
	}
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s %v %v %d %v %d", c.v.id, c.v.lat, c.v.lon, c.v.ts, c.v.class, uint32(math.Round(c.d))))
	}
	sort.Strings(out)
	return out
}

func (v *view) lines() []string {
	var out []string
	for _, x := range v.vs {
		out = append(out, fmt.Sprintf("%s %v %v %d %v %d", x.Id, x.Lat, x.Lon, x.ObservedAtMs, x.Class, x.DistanceM))
	}
	sort.Strings(out)
	return out
}

// TestChurn applies random vehicle events (appear, move within and across meshes, become occupied
// and vacant again, change class, go stale), random rider moves (some concurrent with the events)
// and random lost-message periods repaired by resyncs, then checks that every rider's view
// (snapshot + events, applied in order) equals the server's truth for its area.
func TestChurn(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	if testing.Short() {
		seeds = seeds[:2]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { churn(t, seed, 1500) })
	}
}

func churn(t *testing.T, seed uint64, steps int) {
	e := newEnv(t)
	r := rand.New(rand.NewPCG(seed, 99))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progress := make(chan struct{}, 1)

	vehicles := make([]*churnVeh, 80)
	for i := range vehicles {
		lat, lon := randPoint(r)
		vehicles[i] = &churnVeh{veh: veh{id: fmt.Sprintf("f%d/v%d", i%3, i), lat: lat, lon: lon, class: randClass(r), disp: true}}
	}
	riders := make([]*churnRider, 10)
	for i := range riders {
		req := randRequest(r)
		s, err := New(e.hub, req, e.o)
		if err != nil {
			t.Fatal(err)
		}
		cr := &churnRider{s: s, req: req, v: newView(), done: make(chan struct{})}
		riders[i] = cr
		go func() { // the transport's writer
			defer close(cr.done)
			var buf []Frame
			for {
				fs, err := s.Next(ctx, buf[:0])
				cr.mu.Lock()
				if err == nil {
					err = cr.v.apply(fs)
				}
				if err != nil {
					cr.err = err
				}
				cr.mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
				if err != nil {
					return
				}
				buf = fs
			}
		}()
	}
	t.Cleanup(func() {
		for _, cr := range riders {
			cr.s.Close()
			<-cr.done
		}
	})

	// a second goroutine moves riders while events are applied
	moverDone := make(chan struct{})
	stopMover := make(chan struct{})
	go func() {
		defer close(moverDone)
		mr := rand.New(rand.NewPCG(seed, 7))
		for {
			select {
			case <-stopMover:
				return
			default:
			}
			cr := riders[mr.IntN(len(riders))]
			req := randRequest(mr)
			cr.mu.Lock() // held across Move so that req is the area in force
			if err := cr.s.Move(req); err != nil {
				t.Errorf("Move: %v", err)
			}
			cr.req = req
			cr.mu.Unlock()
			select {
			case <-stopMover:
				return
			case <-time.After(time.Millisecond): // pacing only: correctness never depends on it
			}
		}
	}()

	lr := rand.New(rand.NewPCG(seed, 13))
	e.tap.lose = func() bool { return lr.IntN(2) == 0 } // lose half the events while muted
	muted := map[mesh.Code]bool{}                       // meshes whose events the hub may have missed
	mute := 0                                           // events left to lose
	applyFix := func(v *churnVeh) {
		v.ts = e.apply(t, v.veh)
		v.applied = true
		m, _ := mesh.Third(v.lat, v.lon)
		if mute > 0 { // the events of both meshes may be lost
			muted[m] = true
			if v.last != 0 {
				muted[v.last] = true
			}
		}
		v.last = m
	}
	for step := 0; step < steps; step++ {
		v := vehicles[r.IntN(len(vehicles))]
		if mute > 0 {
			if mute--; mute == 0 {
				e.tap.mute(false)
			}
		}
		switch x := r.IntN(100); {
		case x < 45: // move a little (often across a mesh border)
			v.lat = min(max(v.lat+(r.Float64()-0.5)*0.002, churnMinLat), churnMaxLat)
			v.lon = min(max(v.lon+(r.Float64()-0.5)*0.002, churnMinLon), churnMaxLon)
			applyFix(v)
		case x < 55: // jump anywhere
			v.lat, v.lon = randPoint(r)
			applyFix(v)
		case x < 70: // taken, or free again
			v.disp = !v.disp
			v.reason = meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
			applyFix(v)
		case x < 73:
			v.class = randClass(r)
			applyFix(v)
		case x < 77: // time passes: vehicles not reporting go stale
			e.clk.advance(time.Duration(r.IntN(3000)) * time.Millisecond)
			e.hub.Sweep()
		case x < 80: // a rider moves
			cr := riders[r.IntN(len(riders))]
			req := randRequest(r)
			cr.mu.Lock()
			if err := cr.s.Move(req); err != nil {
				t.Fatalf("Move: %v", err)
			}
			cr.req = req
			cr.mu.Unlock()
		case x < 82 && mute == 0: // the hub misses the next few events, then resyncs
			mute = 1 + r.IntN(6)
			e.tap.mute(true)
		default:
			applyFix(v)
		}
		if mute == 0 && len(muted) > 0 {
			for m := range muted {
				if err := e.hub.Resync(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			clear(muted)
		}
	}
	close(stopMover)
	<-moverDone
	e.tap.mute(false)
	for m := range muted {
		if err := e.hub.Resync(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	e.clk.advance(600 * time.Millisecond) // past every min_interval_ms
	e.hub.Sweep()
	for _, cr := range riders {
		cr.s.wake()
	}

	// quiescence: every session has nothing pending and its reader has applied all it was given
	quiet := func() bool {
		for _, cr := range riders {
			cr.s.mu.Lock()
			idle := !cr.s.needSnap && !cr.s.joining && cr.s.npend == 0 && cr.s.err == nil
			seq := cr.s.seq
			cr.s.mu.Unlock()
			cr.mu.Lock()
			applied, err := cr.v.seq, cr.err
			cr.mu.Unlock()
			if err != nil {
				t.Fatalf("rider: %v", err)
			}
			if !idle || applied != seq {
				return false
			}
		}
		return true
	}
	deadline := time.After(30 * time.Second)
	for !quiet() {
		select {
		case <-progress:
		case <-deadline:
			t.Fatal("riders did not settle")
		}
	}
	nowMs := e.clk.ms.Load()
	var sizes []int
	for i, cr := range riders {
		cr.mu.Lock()
		want := truth(vehicles, cr.req, nowMs)
		got := cr.v.lines()
		snaps := cr.v.snap
		cr.mu.Unlock()
		sizes = append(sizes, len(want))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rider %d (area %v, %d snapshots): view differs from the truth\n got %q\nwant %q", i, cr.req, snaps, got, want)
		}
	}
	st := e.hub.Stats()
	t.Logf("seed %d: views of %v vehicles; hub: %d meshes, %d vehicles, %d events fanned out, %d expired",
		seed, sizes, st.Meshes, st.Vehicles, st.Events, st.Expired)
}
