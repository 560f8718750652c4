package session

import (
	"context"
	"fmt"
	"runtime"
	"testing"

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
