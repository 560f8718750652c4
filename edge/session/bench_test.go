package session

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"

	"github.com/meshcast/meshcast/edge/hub"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// benchEvents returns a function making the i-th mesh event: an upsert of one of 64 vehicles
// inside the test rider's circle, newer every time (built afresh, as the bus decodes each event).
func benchEvents(e *env) func(i int) *meshcastv1.MeshEvent {
	base := e.clk.ms.Load()
	pos := make([][2]float64, 64)
	for k := range pos {
		pos[k][0], pos[k][1] = at(mB, 0.3+0.4*float64(k)/64, 0.01+0.3*float64(k%8)/8)
	}
	return func(i int) *meshcastv1.MeshEvent {
		p := pos[i%64]
		return upsertEvent(fmt.Sprint("f/", i%64), p[0], p[1], base+int64(i)+1)
	}
}

type allocMeter struct {
	ms     runtime.MemStats
	allocs uint64
	bytes  uint64
}

func (a *allocMeter) start() {
	runtime.ReadMemStats(&a.ms)
	a.allocs, a.bytes = a.ms.Mallocs, a.ms.TotalAlloc
}

// report adds per-delivery figures: ns, allocations and bytes per event delivered to one rider.
func (a *allocMeter) report(b *testing.B, deliveries int) {
	runtime.ReadMemStats(&a.ms)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(deliveries), "ns/delivery")
	b.ReportMetric(float64(a.ms.Mallocs-a.allocs)/float64(deliveries), "allocs/delivery")
	b.ReportMetric(float64(a.ms.TotalAlloc-a.bytes)/float64(deliveries), "B/delivery")
}

// BenchmarkFanout delivers one event to N riders watching the same mesh, and each rider's Next
// turns it into its frame (both wire formats): the edge's hot path minus the socket write.
// One op = one event; ns/delivery and allocs/delivery are per rider.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("riders=%d", n), func(b *testing.B) { benchFanout(b, n, true) })
	}
	// the hub→session hand-off alone (updates coalesce per vehicle, nobody reads)
	b.Run("riders=1000/deliver-only", func(b *testing.B) { benchFanout(b, 1000, false) })
}

func benchFanout(b *testing.B, n int, read bool) {
	e := newEnv(b)
	ctx := context.Background()
	ss := make([]*Session, n)
	for i := range ss {
		s, err := New(e.hub, riderReq(), e.o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		if _, err := s.Next(ctx, nil); err != nil { // the snapshot
			b.Fatal(err)
		}
		ss[i] = s
	}
	mk := benchEvents(e)
	h := e.tap.handler()
	m := mB
	frames := make([]Frame, 0, 64)
	var meter allocMeter
	b.ReportAllocs()
	b.ResetTimer()
	meter.start()
	for i := range b.N {
		h.OnEvent(m, mk(i), nil)
		if !read {
			continue
		}
		for _, s := range ss {
			fs, err := s.Next(ctx, frames[:0])
			if err != nil || len(fs) != 1 {
				b.Fatalf("Next = %d frames, %v", len(fs), err)
			}
		}
	}
	b.StopTimer()
	meter.report(b, b.N*n)
}

// BenchmarkSessionNext measures one rider's own work: one op = events handed over by the hub
// (pre-built, shared entries, as after the hub's encode-once) and returned by Next as frames in
// both wire formats (enc=both, Next), or encoded once into a reused buffer in one format
// (enc=json, enc=proto: NextBatch, as the transports do): one event per call (batch=1) or 64
// events of 64 vehicles per call (batch=64). ns/delivery is per frame.
func BenchmarkSessionNext(b *testing.B) {
	for _, c := range []struct {
		batch int
		enc   string
	}{{1, "both"}, {1, "json"}, {1, "proto"}, {64, "both"}, {64, "json"}, {64, "proto"}} {
		batch := c.batch
		b.Run(fmt.Sprintf("batch=%d/enc=%s", batch, c.enc), func(b *testing.B) {
			e := newEnv(b)
			ctx := context.Background()
			o := e.o
			o.MaxBatch = 64
			s, err := New(e.hub, riderReq(), o)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			if _, err := s.Next(ctx, nil); err != nil {
				b.Fatal(err)
			}
			// two positions per vehicle, alternated: every event is a move
			mk := benchEvents(e)
			evs := make([]*hub.Event, 128)
			for i := range evs {
				me := mk(i)
				en, err := hub.NewEntry(me.GetUpsert())
				if err != nil {
					b.Fatal(err)
				}
				en.ObservedAtMs = e.clk.ms.Load() + 1 // the same fix time: accepted as not older
				evs[i] = &hub.Event{Mesh: mB, ID: en.ID, ObservedAtMs: en.ObservedAtMs, Upsert: en}
			}
			frames := make([]Frame, 0, 64)
			buf := make([]byte, 0, 64<<10)
			f := lengthFraming{c.enc == "json"}
			var meter allocMeter
			b.ReportAllocs()
			b.ResetTimer()
			meter.start()
			for i := range b.N {
				for j := range batch {
					s.w.Deliver(evs[(i*batch+j)%128])
				}
				if c.enc == "both" {
					fs, err := s.Next(ctx, frames[:0])
					if err != nil || len(fs) != batch {
						b.Fatalf("Next = %d frames, %v", len(fs), err)
					}
					continue
				}
				_, bt, err := s.NextBatch(ctx, f, func() []byte { return buf[:0] })
				if err != nil || bt.Events != batch {
					b.Fatalf("NextBatch = %d events, %v", bt.Events, err)
				}
			}
			b.StopTimer()
			meter.report(b, b.N*batch)
		})
	}
}

// BenchmarkSnapshot measures New and the first Next (the Snapshot) of a rider whose area (12
// meshes, already watched by another rider) holds 200 vehicles.
func BenchmarkSnapshot(b *testing.B) {
	e := newEnv(b)
	for i := range 200 {
		e.apply(b, e.vehAt(fmt.Sprint("f/", i), mB, 0.2+0.6*float64(i)/200, 0.02+0.3*float64(i%10)/10))
	}
	req := riderReq()
	req.RadiusM = 1000
	ctx := context.Background()
	keeper, err := New(e.hub, req, e.o) // keeps the meshes subscribed: the warm path
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(keeper.Close)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s, err := New(e.hub, req, e.o)
		if err != nil {
			b.Fatal(err)
		}
		fs, err := s.Next(ctx, nil)
		if err != nil || fs[0].Kind != KindSnapshot {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkHubFanout is the hub's fan-out into sessions at the scale of the fan-out harness
// (core/bench): 5,000 riders at the centres of the inner 8x8 meshes of a 10x10 block, radius
// 1,000 m (each watches a 3x3 block: ~700 watchers per mesh), and 2,000 vehicles walking 30 m per
// fix over the block. One op = one bus event (decode into an Entry, fan-out, the sessions' work;
// nobody reads: updates coalesce per vehicle). filter=on is the hub's circle pre-filter,
// filter=off the same with hub.Options.DeliverAll. skipped/event: watchers not called;
// delivered/event: Deliver calls.
func BenchmarkHubFanout(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("filter=%v", map[bool]string{true: "on", false: "off"}[on]), func(b *testing.B) {
			benchHubFanout(b, !on)
		})
	}
}

func benchHubFanout(b *testing.B, deliverAll bool) {
	clk := newClock()
	bs := bus.NewMemory(bus.Options{TTL: ttl, Now: clk.Now})
	tap := &tapBus{Bus: bs}
	h, err := hub.New(tap, hub.Options{TTL: ttl, Sweep: time.Hour, Now: clk.Now, DeliverAll: deliverAll})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		h.Close()
		bs.Close()
	})
	o := Options{Now: clk.Now, Heartbeat: time.Hour}
	// the block: 10x10 third meshes around Tokyo Station, as core/bench's world
	m0, err := mesh.Third(35.681, 139.767)
	if err != nil {
		b.Fatal(err)
	}
	bd := m0.Bounds()
	dLat, dLon := bd.MaxLat-bd.MinLat, bd.MaxLon-bd.MinLon
	minLat, minLon := bd.MinLat-5*dLat, bd.MinLon-5*dLon
	for i := range 5000 {
		r, c := 1+(i%64)/8, 1+(i%64)%8
		req := &meshcastv1.WatchRequest{Lat: minLat + (float64(r)+0.5)*dLat, Lon: minLon + (float64(c)+0.5)*dLon, RadiusM: 1000}
		s, err := New(h, req, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
	}
	const nveh, steps = 2000, 64
	rnd := rand.New(rand.NewPCG(1, 1))
	type fix struct {
		lat, lon float64
		m        string
	}
	fixes := make([]fix, nveh*steps) // vehicle i's step k at [k*nveh+i]
	latPerM := 1 / (mesh.EarthRadiusM * math.Pi / 180)
	lonPerM := latPerM / math.Cos(35.681*math.Pi/180)
	for i := range nveh {
		lat, lon := minLat+rnd.Float64()*10*dLat, minLon+rnd.Float64()*10*dLon
		for k := range steps {
			a := rnd.Float64() * 2 * math.Pi
			lat = min(max(lat+30*latPerM*math.Sin(a), minLat), minLat+10*dLat-1e-9)
			lon = min(max(lon+30*lonPerM*math.Cos(a), minLon), minLon+10*dLon-1e-9)
			m, err := mesh.Third(lat, lon)
			if err != nil {
				b.Fatal(err)
			}
			fixes[k*nveh+i] = fix{lat, lon, m.String()}
		}
	}
	handler := tap.handler()
	base := clk.ms.Load()
	codes := map[string]mesh.Code{}
	for _, f := range fixes {
		codes[f.m] = mustMesh(f.m)
	}
	event := func(j int) {
		f := &fixes[j%len(fixes)]
		ts := base + int64(j) + 1
		handler.OnEvent(codes[f.m], &meshcastv1.MeshEvent{Mesh: f.m, ObservedAtMs: ts, Kind: &meshcastv1.MeshEvent_Upsert{
			Upsert: &meshcastv1.Vehicle{Id: fmt.Sprintf("bench/v%04d", j%nveh), Fleet: "bench", Lat: f.lat, Lon: f.lon,
				Class: meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD, Mesh: f.m, ObservedAtMs: ts}}}, nil)
	}
	for j := range 2 * nveh { // every vehicle placed and settled
		event(j)
	}
	s0 := h.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for j := range b.N {
		event(2*nveh + j)
	}
	b.StopTimer()
	s1 := h.Stats()
	ev := float64(s1.Events - s0.Events)
	skipped := float64(s1.Skipped - s0.Skipped)
	b.ReportMetric(skipped/ev, "skipped/event")
	b.ReportMetric(float64(s1.Deliveries-s0.Deliveries)/ev, "delivered/event")
}
