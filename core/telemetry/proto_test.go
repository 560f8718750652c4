package telemetry

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

func goodTelemetry() *meshcastv1.Telemetry {
	return &meshcastv1.Telemetry{Lat: 35.681236, Lon: 139.767125, Ts: 1732260000123,
		Status: vacant, Heading: 90, Speed: 12.5, Accuracy: 8, Class: standard}
}

func marshalTelemetry(t testing.TB, m *meshcastv1.Telemetry) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func telemetryWith(change func(*meshcastv1.Telemetry)) *meshcastv1.Telemetry {
	m := goodTelemetry()
	change(m)
	return m
}

// Hand-built wire fragments.
func tagVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func tagFixed64(num protowire.Number, v float64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), math.Float64bits(v))
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestDecodeProtoGood(t *testing.T) {
	minimal := &meshcastv1.Telemetry{Lat: 35.681236, Lon: 139.767125, Ts: 1732260000123, Status: vacant}
	base := marshalTelemetry(t, minimal)
	unknownGroup := cat(protowire.AppendTag(nil, 20, protowire.StartGroupType),
		tagVarint(21, 1), protowire.AppendTag(nil, 20, protowire.EndGroupType))
	tests := []struct {
		name string
		in   []byte
		want Fix
	}{
		{"all fields", marshalTelemetry(t, goodTelemetry()), goodFix},
		{"required fields only: class UNSPECIFIED means STANDARD", base, minimalFix},
		{"every class", marshalTelemetry(t, telemetryWith(func(m *meshcastv1.Telemetry) { m.Class = accessible; m.Status = outOfSvc })),
			with(goodFix, func(f *Fix) { f.Class = accessible; f.Status = outOfSvc })},
		{"unknown fields skipped", cat(base, tagVarint(99, 5), protowire.AppendString(protowire.AppendTag(nil, 100, protowire.BytesType), "x"), unknownGroup),
			minimalFix},
		{"last value wins", cat(base, tagFixed64(1, 10)), with(minimalFix, func(f *Fix) { f.Lat = 10 })},
		{"known field with another wire type is unknown", cat(base, tagVarint(1, 7)), minimalFix},
		{"enum number truncated to int32 like proto.Unmarshal", cat(base, tagVarint(4, 1<<32|2)),
			with(minimalFix, func(f *Fix) { f.Status = dispatched })},
		{"lat 0 lon 0 is a place", marshalTelemetry(t, &meshcastv1.Telemetry{Ts: 1, Status: occupied}),
			Fix{TS: 1, Status: occupied, Class: standard}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Fix{Fleet: "keep", Heading: 5, Class: van}
			if err := DecodeProto(tt.in, &f); err != nil {
				t.Fatalf("DecodeProto: %v", err)
			}
			want := tt.want
			want.Fleet = "keep"
			if !sameFix(f, want) {
				t.Errorf("got  %+v\nwant %+v", f, want)
			}
		})
	}
}

var badProtoCases = func() []struct {
	badCase
	in []byte
} {
	m := func(change func(*meshcastv1.Telemetry)) []byte {
		b, err := proto.Marshal(telemetryWith(change))
		if err != nil {
			panic(err)
		}
		return b
	}
	good := m(func(*meshcastv1.Telemetry) {})
	type c = struct {
		badCase
		in []byte
	}
	return []c{
		{badCase{"truncated", "", ReasonMalformed, "accuracy", "~invalid protobuf: unexpected EOF"}, good[:len(good)-3]},
		{badCase{"bad tag", "", ReasonMalformed, "", "~invalid protobuf"}, []byte{0x80}},
		{badCase{"field number 0", "", ReasonMalformed, "", "~invalid field number"}, []byte{0x00, 0x01}},
		{badCase{"field number too large", "", ReasonMalformed, "", "~field number 536870912 out of range"},
			tagVarint(protowire.MaxValidNumber+1, 1)},
		{badCase{"stray end group", "", ReasonMalformed, "", "~unexpected end group"},
			cat(good, protowire.AppendTag(nil, 20, protowire.EndGroupType))},
		{badCase{"unclosed group", "", ReasonMalformed, "", "~invalid protobuf"},
			cat(good, protowire.AppendTag(nil, 20, protowire.StartGroupType))},
		{badCase{"reserved wire type", "", ReasonMalformed, "", "~invalid protobuf"}, cat(good, []byte{20<<3 | 6})},
		{badCase{"no ts", "", ReasonMissingField, "ts", `field "ts": required, got 0 or absent`}, m(func(t *meshcastv1.Telemetry) { t.Ts = 0 })},
		{badCase{"status UNSPECIFIED", "", ReasonMissingField, "status", `field "status": required, got VEHICLE_STATUS_UNSPECIFIED`},
			m(func(t *meshcastv1.Telemetry) { t.Status = 0 })},
		{badCase{"unknown status", "", ReasonBadEnum, "status", `field "status": 9 is not a VehicleStatus (want vacant, dispatched, occupied, out_of_service)`},
			m(func(t *meshcastv1.Telemetry) { t.Status = 9 })},
		{badCase{"negative status", "", ReasonBadEnum, "status", "~-1 is not a VehicleStatus"},
			m(func(t *meshcastv1.Telemetry) { t.Status = -1 })},
		{badCase{"unknown class", "", ReasonBadEnum, "class", `field "class": 5 is not a VehicleClass (want standard, premium, van, accessible)`},
			m(func(t *meshcastv1.Telemetry) { t.Class = 5 })},
		{badCase{"negative ts", "", ReasonOutOfRange, "ts", `field "ts": -5 out of range: want Unix milliseconds > 0`},
			m(func(t *meshcastv1.Telemetry) { t.Ts = -5 })},
		{badCase{"lat out of range", "", ReasonOutOfRange, "lat", `field "lat": 91.5 out of range [-90, 90]`},
			m(func(t *meshcastv1.Telemetry) { t.Lat = 91.5 })},
		{badCase{"lat NaN", "", ReasonOutOfRange, "lat", `field "lat": NaN out of range [-90, 90]`},
			m(func(t *meshcastv1.Telemetry) { t.Lat = math.NaN() })},
		{badCase{"lon infinite", "", ReasonOutOfRange, "lon", `field "lon": -Inf out of range [-180, 180]`},
			m(func(t *meshcastv1.Telemetry) { t.Lon = math.Inf(-1) })},
		{badCase{"heading 360", "", ReasonOutOfRange, "heading", `field "heading": 360 out of range [0, 360)`},
			m(func(t *meshcastv1.Telemetry) { t.Heading = 360 })},
		{badCase{"heading NaN", "", ReasonOutOfRange, "heading", "~NaN out of range"},
			m(func(t *meshcastv1.Telemetry) { t.Heading = float32(math.NaN()) })},
		{badCase{"speed infinite", "", ReasonOutOfRange, "speed", `field "speed": +Inf out of range: want a finite number >= 0`},
			m(func(t *meshcastv1.Telemetry) { t.Speed = float32(math.Inf(1)) })},
		{badCase{"accuracy negative", "", ReasonOutOfRange, "accuracy", "~-3 out of range"},
			m(func(t *meshcastv1.Telemetry) { t.Accuracy = -3 })},
	}
}()

func TestDecodeProtoBad(t *testing.T) {
	for _, tt := range badProtoCases {
		t.Run(tt.name, func(t *testing.T) {
			var f Fix
			err := DecodeProto(tt.in, &f)
			checkBad(t, err, tt.badCase)
			// proto.Unmarshal must agree on what is malformed.
			uerr := proto.Unmarshal(tt.in, new(meshcastv1.Telemetry))
			if (tt.reason == ReasonMalformed) != (uerr != nil) {
				t.Errorf("proto.Unmarshal error %v, DecodeProto reason %s", uerr, tt.reason)
			}
		})
	}
}

func TestDecodeProtoAllocs(t *testing.T) {
	b := marshalTelemetry(t, goodTelemetry())
	var f Fix
	if n := testing.AllocsPerRun(100, func() {
		if err := Decode("taxi/a/b/state", ContentTypeProtobuf, b, &f); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Decode(protobuf) allocates %v times, want 0", n)
	}
}
