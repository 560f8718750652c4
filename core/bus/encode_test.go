package bus

import (
	"bytes"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/proto"
)

func testVehicle() *meshcastv1.Vehicle {
	return &meshcastv1.Vehicle{
		Id: "fleet-1/car_42", Fleet: "fleet-1", Lat: 35.681236, Lon: 139.767125, HeadingDeg: 90,
		SpeedKmh: 12.5, Class: meshcastv1.VehicleClass_VEHICLE_CLASS_VAN, Mesh: "53394611",
		ObservedAtMs: 1732260000123,
	}
}

// TestAppendEventMatchesProto checks the hand-written MeshEvent encoding against proto.Marshal.
func TestAppendEventMatchesProto(t *testing.T) {
	v := testVehicle()
	vb, err := marshalVehicle(v)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		o         op
		observed  int64
		published int64
		want      *meshcastv1.MeshEvent
	}{
		{"upsert", op{mesh: "53394611", upsert: true}, 1732260000123, 1732260000200,
			&meshcastv1.MeshEvent{Mesh: "53394611", Kind: &meshcastv1.MeshEvent_Upsert{Upsert: v}, ObservedAtMs: 1732260000123, PublishedAtMs: 1732260000200}},
		{"removal moved", op{mesh: "53394611", reason: meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, moved: "53394612"}, 5, 6,
			&meshcastv1.MeshEvent{Mesh: "53394611", Kind: &meshcastv1.MeshEvent_Remove{Remove: &meshcastv1.Removal{Id: v.Id, Reason: meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA}}, ObservedAtMs: 5, MovedTo: "53394612", PublishedAtMs: 6}},
		{"removal unspecified reason, zero times", op{mesh: "53394611"}, 0, 0,
			&meshcastv1.MeshEvent{Mesh: "53394611", Kind: &meshcastv1.MeshEvent_Remove{Remove: &meshcastv1.Removal{Id: v.Id}}}},
		{"negative time", op{mesh: "53394611", reason: meshcastv1.RemovalReason_REMOVAL_REASON_STALE}, -1, 1,
			&meshcastv1.MeshEvent{Mesh: "53394611", Kind: &meshcastv1.MeshEvent_Remove{Remove: &meshcastv1.Removal{Id: v.Id, Reason: meshcastv1.RemovalReason_REMOVAL_REASON_STALE}}, ObservedAtMs: -1, PublishedAtMs: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendEvent(nil, tt.o, v.Id, vb, tt.observed, tt.published)
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("appendEvent = %x\nproto.Marshal = %x", got, want)
			}
			ev, err := DecodeEvent(mesh.Code(53394611), got)
			if err != nil || !proto.Equal(ev, tt.want) {
				t.Fatalf("DecodeEvent = %v, %v", ev, err)
			}
		})
	}
}

func TestDecodeEventRejects(t *testing.T) {
	m := mesh.Code(53394611)
	enc := func(ev *meshcastv1.MeshEvent) []byte {
		b, _ := proto.Marshal(ev)
		return b
	}
	bad := map[string][]byte{
		"garbage":       {0xff, 0xff, 0xff},
		"empty":         nil,
		"other mesh":    enc(&meshcastv1.MeshEvent{Mesh: "53394612", Kind: &meshcastv1.MeshEvent_Remove{Remove: &meshcastv1.Removal{Id: "a/b"}}}),
		"no kind":       enc(&meshcastv1.MeshEvent{Mesh: "53394611"}),
		"upsert no id":  enc(&meshcastv1.MeshEvent{Mesh: "53394611", Kind: &meshcastv1.MeshEvent_Upsert{Upsert: &meshcastv1.Vehicle{}}}),
		"removal no id": enc(&meshcastv1.MeshEvent{Mesh: "53394611", Kind: &meshcastv1.MeshEvent_Remove{Remove: &meshcastv1.Removal{}}}),
	}
	for name, raw := range bad {
		if _, err := DecodeEvent(m, raw); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	vb, _ := marshalVehicle(testVehicle())
	f.Add(uint64(53394611), appendEvent(nil, op{mesh: "53394611", upsert: true}, "fleet-1/car_42", vb, 1, 2))
	f.Add(uint64(53394611), appendEvent(nil, op{mesh: "53394611", moved: "53394612", reason: 1}, "a/b", nil, 1, 2))
	f.Add(uint64(53394612), appendEvent(nil, op{mesh: "53394611", reason: 2}, "a/b", nil, 1, 2))
	f.Add(uint64(53394611), []byte{0x0a, 0x08, '5', '3', '3', '9', '4', '6', '1', '1', 0x12, 0x00})
	f.Add(uint64(0), []byte{0xff})
	f.Fuzz(func(t *testing.T, m uint64, raw []byte) {
		ev, err := DecodeEvent(mesh.Code(m), raw)
		if err != nil {
			return
		}
		if ev.Mesh != mesh.Code(m).String() || (ev.GetUpsert().GetId() == "" && ev.GetRemove().GetId() == "") {
			t.Fatalf("accepted %v for mesh %d", ev, m)
		}
	})
}

func TestParseAddr(t *testing.T) {
	tests := []struct {
		addr string
		want endpoint
	}{
		{"memory://", endpoint{memory: true}},
		{"redis://127.0.0.1:6379", endpoint{hosts: []string{"127.0.0.1:6379"}}},
		{"redis://localhost:6379/2", endpoint{hosts: []string{"localhost:6379"}, db: 2}},
		{"redis://u:p@h:1", endpoint{hosts: []string{"h:1"}, user: "u", pwd: "p"}},
		{"redis://:secret@h:1/0", endpoint{hosts: []string{"h:1"}, pwd: "secret"}},
		{"redis+cluster://a:1,b:2,c:3", endpoint{cluster: true, hosts: []string{"a:1", "b:2", "c:3"}}},
		{"redis+cluster://[::1]:7000", endpoint{cluster: true, hosts: []string{"[::1]:7000"}}},
	}
	for _, tt := range tests {
		got, err := parseAddr(tt.addr)
		if err != nil {
			t.Errorf("parseAddr(%q): %v", tt.addr, err)
			continue
		}
		if got.memory != tt.want.memory || got.cluster != tt.want.cluster || strings.Join(got.hosts, ",") != strings.Join(tt.want.hosts, ",") ||
			got.db != tt.want.db || got.user != tt.want.user || got.pwd != tt.want.pwd {
			t.Errorf("parseAddr(%q) = %+v, want %+v", tt.addr, got, tt.want)
		}
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"memory://", "redis://h:1", "redis://u:p@h:1/3", "redis+cluster://a:1,b:2",
		"redis://", "redis+cluster://a:1/0", "http://x", "redis://h:0", "redis://h:1,h:2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := parseAddr(s)
		if err != nil {
			return
		}
		if ep.memory {
			if s != "memory://" {
				t.Fatalf("%q accepted as memory", s)
			}
			return
		}
		if len(ep.hosts) == 0 || (!ep.cluster && len(ep.hosts) != 1) || ep.db < 0 || (ep.cluster && ep.db != 0) {
			t.Fatalf("%q accepted as %+v", s, ep)
		}
		for _, h := range ep.hosts {
			if strings.Contains(h, ",") || !strings.Contains(h, ":") {
				t.Fatalf("%q: bad host %q", s, h)
			}
		}
	})
}

func TestPlan(t *testing.T) {
	const A, B = "53394611", "53394612"
	notVacant := meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
	left := meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA
	tests := []struct {
		name     string
		old, cur vstate
		want     []op
	}{
		{"new dispatchable", vstate{}, vstate{A, true}, []op{{mesh: A, upsert: true}}},
		{"stays in A", vstate{A, true}, vstate{A, true}, []op{{mesh: A, upsert: true}}},
		{"moves A to B", vstate{A, true}, vstate{B, true}, []op{{mesh: A, reason: left, moved: B}, {mesh: B, upsert: true}}},
		{"becomes dispatchable", vstate{A, false}, vstate{B, true}, []op{{mesh: B, upsert: true}}},
		{"becomes non-dispatchable", vstate{A, true}, vstate{B, false}, []op{{mesh: A, reason: notVacant}}},
		{"leaves the domain", vstate{A, true}, vstate{"", false}, []op{{mesh: A, reason: notVacant}}},
		{"stays non-dispatchable", vstate{A, false}, vstate{B, false}, nil},
		{"new non-dispatchable", vstate{}, vstate{A, false}, nil},
	}
	for _, tt := range tests {
		got := plan(nil, tt.old, tt.cur, notVacant)
		if len(got) != len(tt.want) {
			t.Errorf("%s: plan = %+v, want %+v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: plan = %+v, want %+v", tt.name, got, tt.want)
			}
		}
	}
}
