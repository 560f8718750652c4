package session

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/edge/hub"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const ttl = 10 * time.Second

// Tokyo Station and the meshes around it.
const tokyoLat, tokyoLon = 35.681236, 139.767125

// clock is a settable clock.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *clock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// tapBus wraps a bus and keeps the hub's handler, so tests can deliver events in any order, and
// can mute delivery (lost pub/sub messages).
type tapBus struct {
	bus.Bus
	mu    sync.Mutex
	h     bus.Handler
	muted bool
	lose  func() bool // while muted: whether to lose an event (nil: all)
}

func (t *tapBus) Subscribe(h bus.Handler) (bus.Subscription, error) {
	t.mu.Lock()
	t.h = h
	t.mu.Unlock()
	return t.Bus.Subscribe(tapHandler{t})
}

func (t *tapBus) handler() bus.Handler {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.h
}

func (t *tapBus) mute(on bool) {
	t.mu.Lock()
	t.muted = on
	t.mu.Unlock()
}

type tapHandler struct{ t *tapBus }

func (x tapHandler) OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte) {
	x.t.mu.Lock()
	h, muted, lose := x.t.h, x.t.muted, x.t.lose
	x.t.mu.Unlock()
	if !muted || lose != nil && !lose() {
		h.OnEvent(m, ev, raw)
	}
}

func (x tapHandler) OnResync(m mesh.Code) { x.t.handler().OnResync(m) }

type env struct {
	clk *clock
	bus bus.Bus
	tap *tapBus
	hub *hub.Hub
	o   Options
}

func newEnv(t testing.TB) *env {
	t.Helper()
	clk := newClock()
	b := bus.NewMemory(bus.Options{TTL: ttl, Now: clk.Now})
	tap := &tapBus{Bus: b}
	h, err := hub.New(tap, hub.Options{TTL: ttl, Sweep: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		b.Close()
	})
	return &env{clk: clk, bus: b, tap: tap, hub: h, o: Options{Now: clk.Now, Heartbeat: time.Hour}}
}

// veh is a test vehicle's fix.
type veh struct {
	id       string
	lat, lon float64
	class    meshcastv1.VehicleClass
	disp     bool
	reason   meshcastv1.RemovalReason
}

// apply applies a fix of v at the current time (advanced by 1 ms) and returns the fix time.
func (e *env) apply(t testing.TB, v veh) int64 {
	t.Helper()
	e.clk.advance(time.Millisecond)
	ts := e.clk.ms.Load()
	m, err := mesh.Third(v.lat, v.lon)
	if err != nil {
		t.Fatal(err)
	}
	fleet, _, _ := strings.Cut(v.id, "/")
	_, err = e.bus.Apply(context.Background(), bus.Update{
		Vehicle: &meshcastv1.Vehicle{Id: v.id, Fleet: fleet, Lat: v.lat, Lon: v.lon, Class: v.class,
			HeadingDeg: 90, SpeedKmh: 20, Mesh: m.String(), ObservedAtMs: ts},
		Dispatchable: v.disp, Reason: v.reason,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// deliver hands a crafted mesh event straight to the hub (bypassing the bus).
func (e *env) deliver(ev *meshcastv1.MeshEvent) {
	m, err := mesh.Parse(ev.Mesh)
	if err != nil {
		panic(err)
	}
	e.tap.handler().OnEvent(m, ev, nil)
}

func upsertEvent(id string, lat, lon float64, ts int64) *meshcastv1.MeshEvent {
	m, err := mesh.Third(lat, lon)
	if err != nil {
		panic(err)
	}
	return &meshcastv1.MeshEvent{Mesh: m.String(), ObservedAtMs: ts, Kind: &meshcastv1.MeshEvent_Upsert{
		Upsert: &meshcastv1.Vehicle{Id: id, Fleet: "f", Lat: lat, Lon: lon, Mesh: m.String(), ObservedAtMs: ts}}}
}

func removalEvent(id string, m mesh.Code, ts int64, reason meshcastv1.RemovalReason, movedTo mesh.Code) *meshcastv1.MeshEvent {
	ev := &meshcastv1.MeshEvent{Mesh: m.String(), ObservedAtMs: ts, Kind: &meshcastv1.MeshEvent_Remove{
		Remove: &meshcastv1.Removal{Id: id, Reason: reason}}}
	if movedTo != 0 {
		ev.MovedTo = movedTo.String()
	}
	return ev
}

// view is a rider's picture of the area, built from frames as a client would.
type view struct {
	seq  uint64
	vs   map[string]*meshcastv1.Vehicle
	log  []string // what was applied, for failure messages
	snap int      // snapshots seen
}

func newView() *view { return &view{vs: map[string]*meshcastv1.Vehicle{}} }

// decode checks that a frame's two encodings say the same thing and returns the event.
func decode(f Frame) (*meshcastv1.RiderEvent, error) {
	var fromPB, fromJSON meshcastv1.RiderEvent
	if err := proto.Unmarshal(f.Proto, &fromPB); err != nil {
		return nil, fmt.Errorf("frame %d: proto: %v", f.Seq, err)
	}
	if err := protojson.Unmarshal(f.JSON, &fromJSON); err != nil {
		return nil, fmt.Errorf("frame %d: protojson: %v (%s)", f.Seq, err, f.JSON)
	}
	if !proto.Equal(&fromPB, &fromJSON) {
		return nil, fmt.Errorf("frame %d: proto %v != json %s", f.Seq, &fromPB, f.JSON)
	}
	if strings.ContainsAny(string(f.JSON), "\n") {
		return nil, fmt.Errorf("frame %d: JSON has a newline", f.Seq)
	}
	if fromPB.Seq != f.Seq {
		return nil, fmt.Errorf("frame seq %d carries seq %d", f.Seq, fromPB.Seq)
	}
	var k Kind
	switch fromPB.Kind.(type) {
	case *meshcastv1.RiderEvent_Snapshot:
		k = KindSnapshot
	case *meshcastv1.RiderEvent_Upsert:
		k = KindUpsert
	case *meshcastv1.RiderEvent_Remove:
		k = KindRemove
	case *meshcastv1.RiderEvent_Heartbeat:
		k = KindHeartbeat
	}
	if k != f.Kind {
		return nil, fmt.Errorf("frame %d: kind %v carries %T", f.Seq, f.Kind, fromPB.Kind)
	}
	return &fromPB, nil
}

// apply applies frames in order; it fails on gaps in seq, mismatched encodings and removals of
// vehicles the view does not have.
func (v *view) apply(fs []Frame) error {
	for _, f := range fs {
		ev, err := decode(f)
		if err != nil {
			return err
		}
		if err := v.applyEvent(ev); err != nil {
			return err
		}
	}
	return nil
}

// applyEvent applies one decoded event (see apply).
func (v *view) applyEvent(ev *meshcastv1.RiderEvent) error {
	if v.seq != 0 && ev.Seq != v.seq+1 {
		return fmt.Errorf("seq %d after %d", ev.Seq, v.seq)
	}
	v.seq = ev.Seq
	switch k := ev.Kind.(type) {
	case *meshcastv1.RiderEvent_Snapshot:
		v.snap++
		clear(v.vs)
		for _, x := range k.Snapshot.Vehicles {
			v.vs[x.Id] = x
		}
		v.log = append(v.log[:0], fmt.Sprintf("snapshot %d", len(k.Snapshot.Vehicles)))
	case *meshcastv1.RiderEvent_Upsert:
		v.vs[k.Upsert.Id] = k.Upsert
		v.log = append(v.log, "up "+k.Upsert.Id)
	case *meshcastv1.RiderEvent_Remove:
		if _, ok := v.vs[k.Remove.Id]; !ok {
			return fmt.Errorf("seq %d removes %s, which the rider does not have (log %v)", ev.Seq, k.Remove.Id, v.log)
		}
		delete(v.vs, k.Remove.Id)
		v.log = append(v.log, "rm "+k.Remove.Id+" "+k.Remove.Reason.String())
	}
	return nil
}

// next returns the frames of one Next call, failing the test after 10 s.
func next(t testing.TB, s *Session) []Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs, err := s.Next(ctx, nil)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return fs
}

// pending reports whether s has nothing left for Next (no snapshot, no ready update).
func (s *Session) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.needSnap && !s.joining && s.npend == len(s.later) && s.err == nil
}

// kinds returns the frames' kinds and contents in short form.
func kinds(t testing.TB, fs []Frame) []string {
	t.Helper()
	var out []string
	for _, f := range fs {
		ev, err := decode(f)
		if err != nil {
			t.Fatal(err)
		}
		switch k := ev.Kind.(type) {
		case *meshcastv1.RiderEvent_Snapshot:
			var ids []string
			for _, v := range k.Snapshot.Vehicles {
				ids = append(ids, fmt.Sprintf("%s@%d", v.Id, v.DistanceM))
			}
			out = append(out, fmt.Sprintf("snapshot%v", ids))
		case *meshcastv1.RiderEvent_Upsert:
			out = append(out, fmt.Sprintf("up %s@%d", k.Upsert.Id, k.Upsert.DistanceM))
		case *meshcastv1.RiderEvent_Remove:
			out = append(out, fmt.Sprintf("rm %s %s", k.Remove.Id, strings.TrimPrefix(k.Remove.Reason.String(), "REMOVAL_REASON_")))
		case *meshcastv1.RiderEvent_Heartbeat:
			out = append(out, "heartbeat")
		}
	}
	return out
}
