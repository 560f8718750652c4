package session

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/meshcast/meshcast/edge/hub"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func randEntry(t testing.TB, r *rand.Rand) *hub.Entry {
	t.Helper()
	meshes := []string{"53394611", "53394612", "53393699"}
	v := &meshcastv1.Vehicle{
		Id: "f" + string(rune('a'+r.IntN(26))) + "/v" + string(rune('0'+r.IntN(10))), Fleet: "f",
		Lat: 35 + r.Float64(), Lon: 139 + r.Float64(),
		Class: meshcastv1.VehicleClass(r.IntN(5)), Mesh: meshes[r.IntN(len(meshes))], ObservedAtMs: r.Int64N(1 << 42),
	}
	if r.IntN(2) == 0 {
		v.HeadingDeg, v.SpeedKmh = float32(r.Float64()*360), float32(r.Float64()*80)
	}
	if r.IntN(10) == 0 {
		v.Lat, v.HeadingDeg = math.Copysign(0, -1), float32(math.NaN())
	}
	e, err := hub.NewEntry(v)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func withDist(v *meshcastv1.Vehicle, d uint32) *meshcastv1.Vehicle {
	// field by field: proto.Clone drops a -0 float
	return &meshcastv1.Vehicle{Id: v.Id, Fleet: v.Fleet, Lat: v.Lat, Lon: v.Lon, HeadingDeg: v.HeadingDeg,
		SpeedKmh: v.SpeedKmh, Class: v.Class, Mesh: v.Mesh, ObservedAtMs: v.ObservedAtMs, DistanceM: d}
}

// TestFrameEncodings checks every kind of frame built from shared bytes against the message it
// stands for, in both wire formats.
func TestFrameEncodings(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	dist := func() uint32 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return math.MaxUint32
		}
		return r.Uint32N(3001)
	}
	for i := range 3000 {
		var fs []Frame
		add := func(seq uint64, o out, vs []vehicle, nowMs int64) {
			fs = append(fs, Frame{Seq: seq, Kind: o.kind, Proto: appendEventBody(nil, false, seq, &o, vs, nowMs),
				JSON: appendEventBody(nil, true, seq, &o, vs, nowMs)})
		}
		var want []*meshcastv1.RiderEvent
		seq := r.Uint64N(1<<40) + 1
		for range 1 + r.IntN(4) {
			seq++
			switch r.IntN(4) {
			case 0:
				e, d := randEntry(t, r), dist()
				add(seq, out{kind: KindUpsert, v: vehicle{e, d}}, nil, 0)
				want = append(want, &meshcastv1.RiderEvent{Seq: seq, Kind: &meshcastv1.RiderEvent_Upsert{Upsert: withDist(e.V, d)}})
			case 1:
				reason := meshcastv1.RemovalReason(r.IntN(7))
				rem := hub.NewRemoval("f/v"+string(rune('a'+r.IntN(26))), reason)
				add(seq, out{kind: KindRemove, r: rem}, nil, 0)
				want = append(want, &meshcastv1.RiderEvent{Seq: seq, Kind: &meshcastv1.RiderEvent_Remove{Remove: &meshcastv1.Removal{Id: rem.ID, Reason: reason}}})
			case 2:
				ms := r.Int64N(1<<42) * int64(r.IntN(2))
				add(seq, out{kind: KindHeartbeat}, nil, ms)
				want = append(want, &meshcastv1.RiderEvent{Seq: seq, Kind: &meshcastv1.RiderEvent_Heartbeat{Heartbeat: &meshcastv1.Heartbeat{ServerTimeMs: ms}}})
			case 3:
				var vs []vehicle
				snap := &meshcastv1.Snapshot{}
				for range r.IntN(5) {
					e, d := randEntry(t, r), dist()
					vs = append(vs, vehicle{e, d})
					snap.Vehicles = append(snap.Vehicles, withDist(e.V, d))
				}
				add(seq, out{kind: KindSnapshot}, vs, 0)
				want = append(want, &meshcastv1.RiderEvent{Seq: seq, Kind: &meshcastv1.RiderEvent_Snapshot{Snapshot: snap}})
			}
		}
		if len(fs) != len(want) {
			t.Fatalf("#%d: %d frames, want %d", i, len(fs), len(want))
		}
		for j, f := range fs {
			var fromPB, fromJSON meshcastv1.RiderEvent
			if err := proto.Unmarshal(f.Proto, &fromPB); err != nil {
				t.Fatalf("#%d/%d: proto.Unmarshal: %v", i, j, err)
			}
			if err := protojson.Unmarshal(f.JSON, &fromJSON); err != nil {
				t.Fatalf("#%d/%d: protojson.Unmarshal(%s): %v", i, j, f.JSON, err)
			}
			if !proto.Equal(&fromPB, want[j]) {
				t.Fatalf("#%d/%d: proto frame decodes to %v, want %v", i, j, &fromPB, want[j])
			}
			if !proto.Equal(&fromJSON, want[j]) {
				t.Fatalf("#%d/%d: JSON frame %s decodes to %v, want %v", i, j, f.JSON, &fromJSON, want[j])
			}
			if f.Seq != want[j].Seq {
				t.Fatalf("#%d/%d: Frame.Seq %d, want %d", i, j, f.Seq, want[j].Seq)
			}
			// the protobuf is byte for byte what a deterministic Marshal gives
			if pb, _ := (proto.MarshalOptions{Deterministic: true}).Marshal(want[j]); string(pb) != string(f.Proto) {
				t.Fatalf("#%d/%d: proto bytes differ from proto.Marshal", i, j)
			}
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindSnapshot: "snapshot", KindUpsert: "upsert", KindRemove: "remove", KindHeartbeat: "heartbeat", 0: "kind(0)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), want)
		}
	}
}
