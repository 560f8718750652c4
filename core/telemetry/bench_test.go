package telemetry

import (
	"testing"

	"google.golang.org/protobuf/proto"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

func BenchmarkDecodeJSON(b *testing.B) {
	p := []byte(goodJSON)
	var f Fix
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeJSON(p, &f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeProto(b *testing.B) {
	p := marshalTelemetry(b, goodTelemetry())
	var f Fix
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeProto(p, &f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeProtoUnmarshal is what DecodeProto would cost with
// proto.Unmarshal into a reused message (the comparison behind protowire).
func BenchmarkDecodeProtoUnmarshal(b *testing.B) {
	p := marshalTelemetry(b, goodTelemetry())
	var m meshcastv1.Telemetry
	var f Fix
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if err := proto.Unmarshal(p, &m); err != nil {
			b.Fatal(err)
		}
		f = Fix{Lat: m.Lat, Lon: m.Lon, TS: m.Ts, Status: m.Status, Heading: m.Heading,
			Speed: m.Speed, Accuracy: m.Accuracy, Class: m.Class}
		if err := f.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is the whole ingest step: size, topic, content type,
// JSON decoding and validation.
func BenchmarkDecode(b *testing.B) {
	p := []byte(goodJSON)
	var f Fix
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode("taxi/nihon-kotsu/T_0042/state", "application/json", p, &f); err != nil {
			b.Fatal(err)
		}
	}
}
