package transport

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Frames builds what a client sends after its preface: SETTINGS, then, in the order given,
// the acknowledgement of ours and the first request's HEADERS with content type ct.
func h2Frames(t testing.TB, ct string, ackFirst bool) []byte {
	var buf, hb bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/meshcast.v1.RiderService/Watch"}, {Name: ":authority", Value: "x"}, {Name: "content-type", Value: ct}} {
		enc.WriteField(f)
	}
	if ackFirst {
		fr.WriteSettingsAck()
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	if !ackFirst {
		fr.WriteSettingsAck()
	}
	fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
	return buf.Bytes()
}

var settingsAck = []byte{0, 0, 0, 4, 1, 0, 0, 0, 0}

func TestH2Route(t *testing.T) {
	for _, tt := range []struct {
		ct       string
		ackFirst bool
		grpc     bool
	}{
		{"application/grpc", true, true},
		{"application/grpc", false, true},
		{"application/grpc+proto", false, true},
		{"application/grpc-web+proto", true, false},
		{"application/grpc-web-text", false, false},
		{"text/plain", false, false},
	} {
		in := h2Frames(t, tt.ct, tt.ackFirst)
		var out bytes.Buffer
		grpc, head, err := h2route(bytes.NewReader(in), &out, 16<<10)
		if err != nil {
			t.Fatalf("%s: %v", tt.ct, err)
		}
		if grpc != tt.grpc {
			t.Fatalf("%s: to grpc %v", tt.ct, grpc)
		}
		if !bytes.Equal(out.Bytes(), emptySettings) {
			t.Fatalf("server preface %x", out.Bytes())
		}
		// What is replayed is what was read up to the headers (and, routed to HTTP, the
		// acknowledgement), without the acknowledgement of our settings.
		want := bytes.Replace(in, settingsAck, nil, 1)
		if !bytes.HasPrefix(want, head) || bytes.Contains(head, settingsAck) || len(head) < 20 {
			t.Fatalf("%s: replay %x of %x", tt.ct, head, in)
		}
	}
	// Garbage after the preface closes the connection.
	if _, _, err := h2route(bytes.NewReader([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), io.Discard, 16<<10); err == nil {
		t.Fatal("garbage routed")
	}
}

// FuzzH2Route: whatever follows an HTTP/2 preface, h2route neither panics nor replays more
// than it read, and what it replays is what it read minus at most one settings acknowledgement.
func FuzzH2Route(f *testing.F) {
	f.Add(h2Frames(f, "application/grpc", true))
	f.Add(h2Frames(f, "application/grpc-web+proto", false))
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 5, 1, 4, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		_, head, err := h2route(bytes.NewReader(in), io.Discard, 4096)
		if err != nil {
			return
		}
		if len(head) > len(in) {
			t.Fatalf("replays %d bytes of %d", len(head), len(in))
		}
		if bytes.HasPrefix(in, head) {
			return
		}
		i := 0
		for head[i] == in[i] {
			i++
		}
		// The first difference must be an acknowledgement left out (it may begin a byte early
		// when the byte before it equals the acknowledgement's first byte).
		for j := max(0, i-len(settingsAck)); j <= i; j++ {
			if bytes.HasPrefix(in[j:], settingsAck) && bytes.Equal(head, append(in[:j:j], in[j+len(settingsAck):len(head)+len(settingsAck)]...)) {
				return
			}
		}
		t.Fatalf("replay %x is not the input %x less one acknowledgement", head, in)
	})
}
