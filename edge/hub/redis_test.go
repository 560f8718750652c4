package hub

import (
	"context"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// TestRedisRestartResyncs runs the hub over a real Redis: events arrive through sharded pub/sub,
// and when the server restarts empty (no persistence) the bus resubscribes, the hub re-reads the
// snapshot and the watchers get STALE removals for the vehicles that are gone.
func TestRedisRestartResyncs(t *testing.T) {
	srv := redistest.StartSingle(t)
	ctx := context.Background()
	b, err := bus.Open(ctx, srv.URL(), bus.Options{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h, err := New(b, Options{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	apply := func(id string, disp bool) {
		t.Helper()
		lat, lon := mA.Center()
		_, err := b.Apply(ctx, bus.Update{Vehicle: &meshcastv1.Vehicle{Id: id, Fleet: "f", Lat: lat, Lon: lon, Mesh: mA.String(),
			ObservedAtMs: time.Now().UnixMilli()}, Dispatchable: disp, Reason: meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT})
		if err != nil {
			t.Fatal(err)
		}
	}
	apply("f/1", true)
	w := newRecorder()
	if got := seedIDs(t, h, w, mA); len(got) != 1 {
		t.Fatalf("seeded %v, want f/1", got)
	}
	apply("f/2", true)
	apply("f/1", false)
	evs := w.waitEvents(t, 2)
	if evs[0].Upsert == nil || evs[0].ID != "f/2" || evs[1].Removal == nil || evs[1].ID != "f/1" {
		t.Fatalf("events %v", describe(evs))
	}
	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	evs = w.waitEvents(t, 3)
	if r := evs[2]; r.Removal == nil || r.ID != "f/2" || r.Removal.Reason != meshcastv1.RemovalReason_REMOVAL_REASON_STALE {
		t.Fatalf("after the restart: %v, want f/2 removed as STALE", describe(evs))
	}
	// the subscription is live again
	apply("f/3", true)
	evs = w.waitEvents(t, 4)
	if evs[3].Upsert == nil || evs[3].ID != "f/3" {
		t.Fatalf("after the restart: %v, want f/3's upsert", describe(evs))
	}
	h.Leave(w, []mesh.Code{mA})
}
