package hub

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// randVehicle returns a vehicle with random, sometimes extreme, field values.
func randVehicle(r *rand.Rand) *meshcastv1.Vehicle {
	floats := []float64{0, math.Copysign(0, -1), 1e-7, -1e-7, 1e21, 123456789.123, 35.681236, 139.767125,
		math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64}
	f64 := func() float64 {
		if r.IntN(3) == 0 {
			return floats[r.IntN(len(floats))]
		}
		return (r.Float64() - 0.5) * math.Pow(10, float64(r.IntN(30)-10))
	}
	str := func() string {
		alphabet := []string{"a", "Z", "0", "-", "_", "/", "\"", "\\", "\n", "\x01", "é", "東京", "\u2028", "<", "&"}
		n := r.IntN(12)
		s := ""
		for range n {
			s += alphabet[r.IntN(len(alphabet))]
		}
		return s
	}
	v := &meshcastv1.Vehicle{
		Id: str(), Fleet: str(), Lat: f64(), Lon: f64(),
		HeadingDeg: float32(f64()), SpeedKmh: float32(f64()),
		Class: meshcastv1.VehicleClass(r.IntN(7)), Mesh: str(),
		ObservedAtMs: r.Int64() - r.Int64(), DistanceM: r.Uint32(),
	}
	// zero some fields: omission is part of the format
	if r.IntN(2) == 0 {
		v.ObservedAtMs, v.DistanceM, v.Class = 0, 0, 0
	}
	return v
}

func TestAppendVehicleJSONRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		v := randVehicle(r)
		b := AppendVehicleJSON(nil, v)
		var got meshcastv1.Vehicle
		if err := protojson.Unmarshal(b, &got); err != nil {
			t.Fatalf("#%d: protojson.Unmarshal(%s): %v", i, b, err)
		}
		if !proto.Equal(&got, v) {
			t.Fatalf("#%d: round trip of %s\n got %v\nwant %v", i, b, &got, v)
		}
		if !json.Valid(b) {
			t.Fatalf("#%d: invalid JSON %s", i, b)
		}
	}
}

// TestAppendVehicleJSONMatchesProtojson checks the bytes against protojson's once its random
// spacing is taken out (protojson adds spaces at random on purpose; it is otherwise the same).
func TestAppendVehicleJSONMatchesProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		v := randVehicle(r)
		v.Id, v.Fleet, v.Mesh = "f/v-1", "f", "53394611" // no spaces inside strings
		want, err := protojson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendVehicleJSON(nil, v)
		if string(got) != despace(want) {
			t.Fatalf("AppendVehicleJSON = %s\n  protojson     = %s", got, want)
		}
	}
}

func despace(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != ' ' {
			out = append(out, c)
		}
	}
	return string(out)
}

func TestNewRemoval(t *testing.T) {
	for _, tc := range []struct {
		id     string
		reason meshcastv1.RemovalReason
		json   string
	}{
		{"f/v1", meshcastv1.RemovalReason_REMOVAL_REASON_STALE, `{"id":"f/v1","reason":"REMOVAL_REASON_STALE"}`},
		{"f/v1", meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, `{"id":"f/v1","reason":"REMOVAL_REASON_LEFT_AREA"}`},
		{"f/v1", 0, `{"id":"f/v1"}`},
		{"f/v1", 42, `{"id":"f/v1","reason":42}`},
		{`a"b\c`, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT, `{"id":"a\"b\\c","reason":"REMOVAL_REASON_NOT_VACANT"}`},
	} {
		r := NewRemoval(tc.id, tc.reason)
		if string(r.JSON) != tc.json {
			t.Errorf("NewRemoval(%q, %v).JSON = %s, want %s", tc.id, tc.reason, r.JSON, tc.json)
		}
		want := &meshcastv1.Removal{Id: tc.id, Reason: tc.reason}
		var fromPB, fromJSON meshcastv1.Removal
		if err := proto.Unmarshal(r.Proto, &fromPB); err != nil || !proto.Equal(&fromPB, want) {
			t.Errorf("NewRemoval(%q, %v).Proto decodes to %v (%v), want %v", tc.id, tc.reason, &fromPB, err, want)
		}
		if err := protojson.Unmarshal(r.JSON, &fromJSON); err != nil || !proto.Equal(&fromJSON, want) {
			t.Errorf("NewRemoval(%q, %v).JSON decodes to %v (%v), want %v", tc.id, tc.reason, &fromJSON, err, want)
		}
	}
}

func TestNewEntry(t *testing.T) {
	v := &meshcastv1.Vehicle{Id: "f/1", Fleet: "f", Lat: 35.68, Lon: 139.76, Mesh: "53394611", ObservedAtMs: 5, DistanceM: 9}
	e, err := NewEntry(v)
	if err != nil {
		t.Fatal(err)
	}
	if v.DistanceM != 9 {
		t.Error("NewEntry modified its argument")
	}
	var got meshcastv1.Vehicle
	if err := proto.Unmarshal(e.Proto, &got); err != nil || got.DistanceM != 0 || got.Id != "f/1" || got.Mesh != "53394611" {
		t.Errorf("Entry.Proto = %v (%v), want the vehicle without distance", &got, err)
	}
	if e.Mesh.String() != "53394611" || e.ObservedAtMs != 5 || e.Lat != 35.68 {
		t.Errorf("entry fields %+v", e)
	}
	for _, bad := range []*meshcastv1.Vehicle{
		{Mesh: "53394611"},
		{Id: "x", Mesh: "5339"},
		{Id: "x", Mesh: "zz"},
	} {
		if _, err := NewEntry(bad); err == nil {
			t.Errorf("NewEntry(%v) succeeded", bad)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "f/v1", `"\`, "\x00\x1f\x7f", "東京", "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", b, err)
		}
		// encoding/json also turns invalid UTF-8 into U+FFFD
		want := string([]rune(s))
		if got != want {
			t.Fatalf("round trip of %q = %q, want %q", s, got, want)
		}
	})
}

func FuzzAppendVehicleJSON(f *testing.F) {
	f.Add("f/v1", "f", 35.68, 139.76, float32(90), float32(12.5), int32(1), "53394611", int64(1732260000123), uint32(5))
	f.Add("", "", math.NaN(), math.Inf(-1), float32(math.Inf(1)), float32(math.Copysign(0, -1)), int32(-3), "\xff", int64(-1), uint32(0))
	f.Fuzz(func(t *testing.T, id, fleet string, lat, lon float64, hd, sp float32, class int32, m string, ts int64, d uint32) {
		v := &meshcastv1.Vehicle{Id: id, Fleet: fleet, Lat: lat, Lon: lon, HeadingDeg: hd, SpeedKmh: sp,
			Class: meshcastv1.VehicleClass(class), Mesh: m, ObservedAtMs: ts, DistanceM: d}
		b := AppendVehicleJSON(nil, v)
		var got meshcastv1.Vehicle
		if err := protojson.Unmarshal(b, &got); err != nil {
			t.Fatalf("protojson.Unmarshal(%s): %v", b, err)
		}
		// invalid UTF-8 is written as U+FFFD per bad byte
		v.Id, v.Fleet, v.Mesh = string([]rune(id)), string([]rune(fleet)), string([]rune(m))
		if !proto.Equal(&got, v) {
			t.Fatalf("round trip of %s: got %v want %v", b, &got, v)
		}
	})
}
