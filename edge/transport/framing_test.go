package transport

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// testFrames builds n upsert frames the way a session does (both encodings of a full RiderEvent).
func testFrames(tb testing.TB, n int) []session.Frame {
	tb.Helper()
	var out []session.Frame
	for i := range n {
		ev := &meshcastv1.RiderEvent{Seq: uint64(i + 1), Kind: &meshcastv1.RiderEvent_Upsert{Upsert: &meshcastv1.Vehicle{
			Id: "fleet/v" + strings.Repeat("x", i%5), Fleet: "fleet", Lat: 35.68 + float64(i)*1e-4, Lon: 139.76,
			HeadingDeg: 90, SpeedKmh: 20, Class: meshcastv1.VehicleClass_VEHICLE_CLASS_VAN, Mesh: "53394611",
			ObservedAtMs: 1732260000123, DistanceM: uint32(100 + i)}}}
		pb, err := proto.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		js, err := protojson.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, session.Frame{Seq: ev.Seq, Kind: session.KindUpsert, Proto: pb, JSON: js})
	}
	return out
}

// TestBatchFraming: a batch in either subprotocol splits back into the same events.
func TestBatchFraming(t *testing.T) {
	frames := testFrames(t, 7)
	for _, f := range []wireFormat{formatJSON, formatProto} {
		typ := websocket.MessageText
		if f == formatProto {
			typ = websocket.MessageBinary
		}
		evs, err := splitWSMessage(typ, appendBatch(nil, f, frames), f == formatProto)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != len(frames) {
			t.Fatalf("format %d: %d events, want %d", f, len(evs), len(frames))
		}
		for i, ev := range evs {
			want := new(meshcastv1.RiderEvent)
			proto.Unmarshal(frames[i].Proto, want)
			if !proto.Equal(ev, want) {
				t.Fatalf("format %d event %d: %v, want %v", f, i, ev, want)
			}
		}
	}
}

// TestSSEEventFraming: SSE events parse back with id = seq and event = kind; heartbeats carry
// the comment.
func TestSSEEventFraming(t *testing.T) {
	frames := testFrames(t, 3)
	hb := session.Frame{Seq: 4, Kind: session.KindHeartbeat, JSON: []byte(`{"seq":"4","heartbeat":{"serverTimeMs":"1"}}`)}
	var b []byte
	b = append(b, "retry: 1000\n\n"...)
	for i := range frames {
		b = appendEvent(b, &frames[i])
	}
	b = appendEvent(b, &hb)
	r := newRider("sse")
	if err := readSSE(bytes.NewReader(b), r, func(string) {}); err != nil {
		t.Fatal(err)
	}
	if len(r.events) != 4 || r.commentCount("hb") != 1 {
		t.Fatalf("%d events, comments %q", len(r.events), r.comments)
	}
}

func BenchmarkAppendBatchJSON(b *testing.B)  { benchBatch(b, formatJSON) }
func BenchmarkAppendBatchProto(b *testing.B) { benchBatch(b, formatProto) }

func benchBatch(b *testing.B, f wireFormat) {
	frames := testFrames(b, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf := getBuf()
		*buf = appendBatch(*buf, f, frames)
		putBuf(buf)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/event")
}

func BenchmarkAppendSSEEvents(b *testing.B) {
	frames := testFrames(b, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf := getBuf()
		for i := range frames {
			*buf = appendEvent(*buf, &frames[i])
		}
		putBuf(buf)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/event")
}

func BenchmarkCodecMarshalRaw(b *testing.B) {
	c := newCodec()
	frames := testFrames(b, 1)
	msg := &rawMessage{frames[0].Proto}
	b.ReportAllocs()
	for b.Loop() {
		bs, err := c.Marshal(msg)
		if err != nil || bs.Len() != len(frames[0].Proto) {
			b.Fatal(err)
		}
	}
}

func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "41", "18446744073709551614", "18446744073709551615", "-1", "x", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, _ := http.NewRequest("GET", "/v1/sse", nil)
		r.Header.Set("Last-Event-ID", v)
		first, err := lastEventID(r)
		if err == nil && first == 0 {
			t.Fatalf("first seq 0 for %q", v)
		}
	})
}
