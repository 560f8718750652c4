package transport

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// frameBatch frames pre-encoded events with f, as NextBatch does with the events it encodes.
func frameBatch(f session.Framing, frames []session.Frame) []byte {
	var b []byte
	for i := range frames {
		b = f.Begin(b, i, frames[i].Seq, frames[i].Kind)
		start := len(b)
		if f.JSON() {
			b = append(b, frames[i].JSON...)
		} else {
			b = append(b, frames[i].Proto...)
		}
		b = f.End(b, start)
	}
	return b
}

// TestBatchFraming: a batch in either subprotocol splits back into the same events, whatever
// their size (the proto framing's varint length takes 1, 2 or 3 bytes).
func TestBatchFraming(t *testing.T) {
	frames := testFrames(t, 7)
	for _, n := range []int{100, 20000} { // events past 127 and 16,383 bytes
		ev := &meshcastv1.RiderEvent{Seq: 8, Kind: &meshcastv1.RiderEvent_Upsert{Upsert: &meshcastv1.Vehicle{
			Id: "fleet/" + strings.Repeat("y", n), Fleet: "fleet", ObservedAtMs: 1}}}
		pb, _ := proto.Marshal(ev)
		js, _ := protojson.Marshal(ev)
		frames = append(frames, session.Frame{Seq: 8, Kind: session.KindUpsert, Proto: pb, JSON: js})
	}
	for _, f := range []wireFormat{formatJSON, formatProto} {
		typ := websocket.MessageText
		if f == formatProto {
			typ = websocket.MessageBinary
		}
		evs, err := splitWSMessage(typ, frameBatch(newWSWriter(nil, nil, f, 0), frames), f == formatProto)
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
	b := []byte("retry: 1000\n\n")
	b = append(b, frameBatch(sseWriter{}, append(frames, hb))...)
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
	w := newWSWriter(nil, nil, f, 0)
	for b.Loop() {
		frameBatch(w, frames)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/event")
}

func BenchmarkAppendSSEEvents(b *testing.B) {
	frames := testFrames(b, 16)
	b.ReportAllocs()
	for b.Loop() {
		frameBatch(sseWriter{}, frames)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/event")
}

func BenchmarkCodecMarshalRaw(b *testing.B) {
	c := newCodec()
	frames := testFrames(b, 1)
	msg := &rawMessage{b: frames[0].Proto}
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

// countingConn counts the writes made to it and keeps their bytes.
type countingConn struct {
	net.Conn
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestFrameWriterOneWritePerFrame: under a 16-byte bufio.Writer written as coder/websocket
// writes (header, payload, flush), every WebSocket frame reaches the socket in one write, whole,
// whatever its size; frames that come whole in one piece pass straight through.
func TestFrameWriterOneWritePerFrame(t *testing.T) {
	c := &countingConn{}
	bw := bufio.NewWriterSize(&frameWriter{s: &sockWriter{conn: c}}, wsWriteBuffer)
	var want [][]byte
	for _, n := range []int{0, 10, 13, 200, 70000, 125, 126, 65535, 65536} {
		var hdr []byte
		switch {
		case n < 126:
			hdr = []byte{0x82, byte(n)}
		case n < 1<<16:
			hdr = []byte{0x82, 126, byte(n >> 8), byte(n)}
		default:
			hdr = []byte{0x82, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		}
		payload := bytes.Repeat([]byte{byte(n)}, n)
		bw.Write(hdr)
		bw.Write(payload)
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		want = append(want, append(hdr, payload...))
	}
	if len(c.writes) != len(want) {
		t.Fatalf("%d writes for %d frames", len(c.writes), len(want))
	}
	for i := range want {
		if !bytes.Equal(c.writes[i], want[i]) {
			t.Fatalf("write %d: %d bytes, want the %d-byte frame", i, len(c.writes[i]), len(want[i]))
		}
	}
}

// flushCounter is a ResponseWriter that counts flushes.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

// TestGRPCWebBatchFlushedOnce: grpc-go's handler transport flushes after every message; with a
// batch's n-1 flushes to skip, the deadlineWriter flushes a batch once, after its last message,
// and batches queued back to back never leave the last flush skipped.
func TestGRPCWebBatchFlushedOnce(t *testing.T) {
	var skip atomic.Int32
	var cut atomic.Bool
	fc := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	d := &deadlineWriter{ResponseWriter: fc, rc: http.NewResponseController(fc), timeout: time.Second, cut: &cut, skip: &skip}
	for _, n := range []int{3, 1, 5} { // one batch at a time
		skip.Add(int32(n - 1))
		for range n {
			d.Write([]byte("m"))
			d.Flush()
		}
	}
	if fc.flushes != 3 {
		t.Fatalf("%d flushes for 3 batches, want 3", fc.flushes)
	}
	skip.Add(2) // two batches of 3 queued before their messages are written
	skip.Add(2)
	for range 6 {
		d.Flush()
	}
	if fc.flushes != 5 || skip.Load() != 0 {
		t.Fatalf("%d flushes (skip %d) after two queued batches, want 5 (the last two of the six)", fc.flushes, skip.Load())
	}
}
