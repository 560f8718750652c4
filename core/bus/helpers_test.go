package bus_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// waitTimeout bounds every condition wait of the tests (a failure, not a pace).
const waitTimeout = 30 * time.Second

// clock is a settable clock for Options.Now.
type clock struct{ ms atomic.Int64 }

func newClock(ms int64) *clock { c := &clock{}; c.ms.Store(ms); return c }

func (c *clock) Now() time.Time                    { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Set(ms int64)                      { c.ms.Store(ms) }
func (c *clock) Advance(d time.Duration)           { c.ms.Add(d.Milliseconds()) }
func (c *clock) Ms() int64                         { return c.ms.Load() }
func (c *clock) At(d time.Duration) int64          { return c.ms.Load() + d.Milliseconds() }
func (c *clock) String() string                    { return fmt.Sprint(c.ms.Load()) }
func (c *clock) options(o bus.Options) bus.Options { o.Now = c.Now; return o }

var prefixSeq atomic.Int64

// uniquePrefix returns a fresh key prefix so that tests sharing one Redis do not see each other.
func uniquePrefix() string { return fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, prefixSeq.Add(1)) }

// rec is one received event.
type rec struct {
	m  mesh.Code
	ev *meshcastv1.MeshEvent
}

// recorder is a Handler that records everything and lets tests wait for conditions.
type recorder struct {
	mu      sync.Mutex
	events  []rec
	resyncs map[mesh.Code]int
	notify  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{resyncs: map[mesh.Code]int{}, notify: make(chan struct{}, 1)}
}

func (r *recorder) OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte) {
	r.mu.Lock()
	r.events = append(r.events, rec{m, ev})
	r.mu.Unlock()
	r.wake()
}

func (r *recorder) OnResync(m mesh.Code) {
	r.mu.Lock()
	r.resyncs[m]++
	r.mu.Unlock()
	r.wake()
}

func (r *recorder) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// snapshot returns a copy of the recorded events.
func (r *recorder) all() []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rec(nil), r.events...)
}

func (r *recorder) resyncCount(m mesh.Code) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resyncs[m]
}

// on returns the events of vehicle id (or all vehicles if id is "") on mesh m, in arrival order.
func (r *recorder) on(m mesh.Code, id string) []*meshcastv1.MeshEvent {
	var out []*meshcastv1.MeshEvent
	for _, e := range r.all() {
		if e.m == m && (id == "" || eventID(e.ev) == id) {
			out = append(out, e.ev)
		}
	}
	return out
}

// has reports whether an event of vehicle id at fix time ts arrived on mesh m.
func (r *recorder) has(m mesh.Code, id string, ts int64) bool {
	for _, ev := range r.on(m, id) {
		if ev.ObservedAtMs == ts {
			return true
		}
	}
	return false
}

// waitFor waits until cond holds (re-checked on every event, and every 50ms for conditions that
// depend on something else), failing the test after waitTimeout.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-r.notify:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func eventID(ev *meshcastv1.MeshEvent) string {
	if u := ev.GetUpsert(); u != nil {
		return u.Id
	}
	return ev.GetRemove().GetId()
}

// Test meshes: three neighbours around Tokyo Station.
var (
	mA = mustMesh("53394611")
	mB = mustMesh("53394612")
	mC = mustMesh("53394621")
)

func mustMesh(s string) mesh.Code {
	c, err := mesh.Parse(s)
	if err != nil {
		panic(err)
	}
	return c
}

// gridMeshes returns n distinct third-order meshes on a grid west of Tokyo.
func gridMeshes(n int) []mesh.Code {
	out := make([]mesh.Code, 0, n)
	for i := 0; len(out) < n; i++ {
		lat := 35.0 + float64(i/40)/120 + 1.0/240
		lon := 139.0 + float64(i%40)/80 + 1.0/160
		c, err := mesh.Third(lat, lon)
		if err != nil {
			panic(err)
		}
		out = append(out, c)
	}
	return out
}

// fix builds an update: dispatchable in m when m != 0, otherwise not dispatchable for reason.
func fix(id string, m mesh.Code, ts int64, dispatchable bool, reason meshcastv1.RemovalReason) bus.Update {
	v := &meshcastv1.Vehicle{
		Id:           id,
		Fleet:        "f",
		Lat:          35.68,
		Lon:          139.76,
		HeadingDeg:   90,
		SpeedKmh:     12.5,
		Class:        meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD,
		ObservedAtMs: ts,
	}
	if m != 0 {
		v.Mesh = m.String()
	}
	return bus.Update{Vehicle: v, Dispatchable: dispatchable, Reason: reason}
}

func upd(id string, m mesh.Code, ts int64) bus.Update { return fix(id, m, ts, true, 0) }

// meshKey returns a key or channel of mesh m: <prefix>:{m<n>}:<mesh>:<suffix> (suffix "veh" or "ev").
func meshKey(prefix string, m mesh.Code, suffix string) string {
	return prefix + ":" + bus.MeshHashTag(m) + ":" + m.String() + ":" + suffix
}

// vehicleKey returns the state key of a vehicle: <prefix>:{v<n>}:<id>.
func vehicleKey(prefix, id string) string { return prefix + ":" + bus.VehicleHashTag(id) + ":" + id }
