package bench

import (
	"strings"
	"testing"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func upsertEvent(seq uint64, observed int64) *meshcastv1.RiderEvent {
	return &meshcastv1.RiderEvent{Seq: seq, Kind: &meshcastv1.RiderEvent_Upsert{Upsert: &meshcastv1.Vehicle{
		Id: "f/v1", Fleet: "f", Lat: 35.68, Lon: 139.76, Mesh: "53394611", ObservedAtMs: observed, DistanceM: 12}}}
}

// TestScan checks that the byte scanners read seq, kind and observed_at_ms as the real
// decoders do, for both encodings.
func TestScan(t *testing.T) {
	tests := []struct {
		name     string
		ev       *meshcastv1.RiderEvent
		seq      uint64
		kind     byte
		observed int64
	}{
		{"upsert", upsertEvent(7, 1732260000123), 7, 'u', 1732260000123},
		{"snapshot", &meshcastv1.RiderEvent{Seq: 1, Kind: &meshcastv1.RiderEvent_Snapshot{Snapshot: &meshcastv1.Snapshot{
			Vehicles: []*meshcastv1.Vehicle{{Id: "f/v2", ObservedAtMs: 5}}}}}, 1, 's', 0},
		{"remove", &meshcastv1.RiderEvent{Seq: 9, Kind: &meshcastv1.RiderEvent_Remove{Remove: &meshcastv1.Removal{Id: "f/v1"}}}, 9, 0, 0},
		{"heartbeat", &meshcastv1.RiderEvent{Seq: 10, Kind: &meshcastv1.RiderEvent_Heartbeat{Heartbeat: &meshcastv1.Heartbeat{}}}, 10, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if seq, kind, obs := scanProto(b); seq != tt.seq || kind != tt.kind || obs != tt.observed {
				t.Errorf("scanProto = %d %q %d, want %d %q %d", seq, kind, obs, tt.seq, tt.kind, tt.observed)
			}
			j, err := protojson.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			j = []byte(strings.ReplaceAll(string(j), " ", "")) // protojson may add spaces; the edge does not
			if seq, kind, obs := scanJSON(j); seq != tt.seq || kind != tt.kind || obs != tt.observed {
				t.Errorf("scanJSON(%s) = %d %q %d, want %d %q %d", j, seq, kind, obs, tt.seq, tt.kind, tt.observed)
			}
		})
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    map[Transport]int
		wantErr bool
	}{
		{"ws=40,sse=20,grpc=30,grpcweb=10", map[Transport]int{WS: 40, SSE: 20, GRPC: 30, GRPCWeb: 10}, false},
		{" wsproto=1 , ws=1 ", map[Transport]int{WSProto: 1, WS: 1}, false},
		{"ws=1,ws=2", map[Transport]int{WS: 3}, false},
		{"", nil, true},
		{"quic=1", nil, true},
		{"ws=-1", nil, true},
		{"ws", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseMix(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseMix(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("ParseMix(%q) = %v, want %v", tt.in, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("ParseMix(%q)[%s] = %d, want %d", tt.in, k, got[k], v)
			}
		}
	}
}

// TestTransportOfFollowsMix: any run of riders as long as the weights' sum has the mix exactly.
func TestTransportOfFollowsMix(t *testing.T) {
	mix := map[Transport]int{WS: 4, SSE: 2, GRPC: 3, GRPCWeb: 1}
	count := map[Transport]int{}
	for i := 17; i < 17+10*100; i++ {
		count[transportOf(mix, i)]++
	}
	for tr, w := range mix {
		if count[tr] != w*100 {
			t.Errorf("%s: %d riders of 1000, want %d", tr, count[tr], w*100)
		}
	}
}

func TestPlaceOfIsDispatchableAndStable(t *testing.T) {
	z := tokyo(t)
	for i := range 50 {
		lat, lon := placeOf(z, 1, i)
		if !z.Classify(lat, lon).Dispatchable() {
			t.Errorf("rider %d at %v,%v: not a dispatchable point", i, lat, lon)
		}
		if lat2, lon2 := placeOf(z, 1, i); lat2 != lat || lon2 != lon {
			t.Errorf("rider %d: placed at %v,%v then %v,%v", i, lat, lon, lat2, lon2)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ProcSample
		wantErr bool
	}{
		{"both", "# HELP x\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1.048576e+06\nother 1\n", ProcSample{12.5, 1 << 20}, false},
		{"missing rss", "process_cpu_seconds_total 1\n", ProcSample{CPUSeconds: 1}, true},
		{"empty", "", ProcSample{}, true},
	}
	for _, tt := range tests {
		got, err := parseMetrics(strings.NewReader(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: parseMetrics = %+v, %v; want %+v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseChild(t *testing.T) {
	if i, o, n, err := ParseChild("2:2000:1000"); err != nil || i != 2 || o != 2000 || n != 1000 {
		t.Errorf("ParseChild = %d %d %d %v", i, o, n, err)
	}
	for _, bad := range []string{"", "1:2", "a:1:2", "1:2:3:4"} {
		if _, _, _, err := ParseChild(bad); err == nil {
			t.Errorf("ParseChild(%q): no error", bad)
		}
	}
}

// FuzzScan: the scanners read what edges send, and must not panic on anything.
func FuzzScan(f *testing.F) {
	b, _ := proto.Marshal(upsertEvent(3, 1732260000123))
	j, _ := protojson.Marshal(upsertEvent(3, 1732260000123))
	f.Add(b)
	f.Add(j)
	f.Add([]byte(`{"seq":"99999999999999999999999","upsert":{"observedAtMs":"-"}}`))
	f.Add([]byte{0x5a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		scanProto(data)
		scanJSON(data)
		parseMetrics(strings.NewReader(string(data)))
	})
}
