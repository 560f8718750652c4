package session

import (
	"context"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/edge/hub"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	b := bus.NewMemory(bus.Options{})
	h, err := hub.New(b, hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lat, lon := 35.681236, 139.767125
	m, _ := mesh.Third(lat, lon)
	now := time.Now().UnixMilli()
	b.Apply(ctx, bus.Update{Vehicle: &meshcastv1.Vehicle{Id: "f/1", Fleet: "f", Lat: lat + 0.001, Lon: lon, Mesh: m.String(), ObservedAtMs: now}, Dispatchable: true})
	s, err := New(h, &meshcastv1.WatchRequest{Lat: lat, Lon: lon}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fs, err := s.Next(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s", fs[0].Kind, fs[0].JSON)
	b.Apply(ctx, bus.Update{Vehicle: &meshcastv1.Vehicle{Id: "f/1", Fleet: "f", Lat: lat + 0.002, Lon: lon, Mesh: m.String(), ObservedAtMs: now + 1}, Dispatchable: true})
	fs, err = s.Next(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s", fs[0].Kind, fs[0].JSON)
	b.Apply(ctx, bus.Update{Vehicle: &meshcastv1.Vehicle{Id: "f/1", Fleet: "f", Lat: lat + 0.002, Lon: lon, Mesh: m.String(), ObservedAtMs: now + 2}, Dispatchable: false, Reason: meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT})
	fs, err = s.Next(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s", fs[0].Kind, fs[0].JSON)
}
