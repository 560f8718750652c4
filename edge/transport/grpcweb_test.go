package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// webBinRider calls Watch with binary gRPC-Web (application/grpc-web+proto) over HTTP/1.1, as
// a browser's fetch does, with extra headers; resp receives the response (its headers) when not
// nil. body, when not nil, replaces the encoded request.
func webBinRider(t testing.TB, base string, req *meshcastv1.WatchRequest, body []byte, hdr http.Header, client *http.Client) (*rider, *http.Response) {
	t.Helper()
	if body == nil {
		msg, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		body = grpcWebFrame(msg)
	}
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	hr, _ := http.NewRequestWithContext(ctx, "POST", base+meshcastv1.RiderService_Watch_FullMethodName, bytes.NewReader(body))
	for k, v := range hdr {
		hr.Header[k] = v
	}
	hr.Header.Set("Content-Type", "application/grpc-web+proto")
	hr.Header.Set("Accept", "application/grpc-web+proto")
	hr.Header.Set("X-Grpc-Web", "1")
	resp, err := client.Do(hr)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := newRider("grpcweb-binary")
	r.close = cancel
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/grpc-web+proto" {
		t.Fatalf("grpc-web answered %d with content type %q", resp.StatusCode, ct)
	}
	go func() {
		defer resp.Body.Close()
		if st := headerStatus(resp.Header); st != nil {
			r.finish(st) // trailers-only response
			return
		}
		fr := webFrameReader{resp.Body}
		for {
			flag, payload, err := fr.next()
			if err != nil {
				r.finish(err)
				return
			}
			if flag&0x80 != 0 {
				err := parseWebTrailers(payload)
				if _, _, more := fr.next(); more != io.EOF {
					err = fmt.Errorf("after the trailer frame: %v (status %v)", more, err)
				}
				r.finish(err)
				return
			}
			if flag != 0 {
				r.finish(fmt.Errorf("frame flag %#x", flag))
				return
			}
			ev := new(meshcastv1.RiderEvent)
			if err := proto.Unmarshal(payload, ev); err != nil {
				r.finish(err)
				return
			}
			r.events <- ev
		}
	}()
	return r, resp
}

// webReaders counts the socket readers of direct gRPC-Web riders (of every stream on a hijacked
// connection: the tests using it have no SSE riders).
func webReaders() int { return goroutinesIn("transport.readHangUp") }

// TestGRPCWebDirect: a binary gRPC-Web Watch over HTTP/1.1 is served on the direct-write path
// (its socket reader, no writer goroutine while idle, no net/http goroutine or grpc-go handler
// left), with the package's CORS headers on the response, its events as gRPC-Web data frames in
// HTTP/1.1 chunks (Go's chunked reader and the frame reader check both), updates written by the
// flusher, and the trailer frame with UNAVAILABLE and the reason when the server drains; the
// response is complete (the last chunk) before the connection closes.
func TestGRPCWebDirect(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("write-delay=%v", delay), func(t *testing.T) {
			b := bus.NewMemory(bus.Options{})
			t.Cleanup(func() { b.Close() })
			ts := startServer(t, b, nil, Options{Session: session.Options{WriteDelay: delay},
				AllowedOrigins: []string{"https://app.example.com"}})
			sc := &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}
			centre := pt{35.681236, 139.767125}
			req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}
			hdr := http.Header{"Origin": {"https://app.example.com"}}
			var rs []*tracked
			var resps []*http.Response
			for range 3 {
				r, resp := webBinRider(t, ts.base, req, nil, hdr, nil)
				rs = append(rs, &tracked{rider: r})
				resps = append(resps, resp)
			}
			t.Cleanup(func() {
				for _, r := range rs {
					r.close()
				}
			})
			for _, resp := range resps {
				h := resp.Header
				if h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" ||
					!strings.Contains(strings.ToLower(strings.Join(h.Values("Access-Control-Expose-Headers"), ",")), "grpc-status") ||
					h.Get("Vary") != "Origin" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
					t.Fatalf("response headers %v (transfer encoding %v): want the package's CORS headers, chunked", h, resp.TransferEncoding)
				}
			}
			expectAll(t, rs, "snapshot []")
			waitFor(t, func() bool { return writers() == 0 })
			if n := webReaders(); n != 3 {
				t.Fatalf("%d gRPC-Web socket readers, want 3", n)
			}
			if n := goroutinesIn("transport.(*Server).serveWebWatch", "grpc.(*Server).handleStream", "net/http.(*conn).serve"); n != 0 {
				t.Fatalf("%d goroutines of net/http or grpc-go left for idle gRPC-Web riders, want 0", n)
			}
			for i, p := range []pt{{35.6800, 139.7670}, {35.6805, 139.7672}} {
				sc.fix("f/v1", p, 0)
				expectAll(t, rs, fmt.Sprintf("upsert f/v1@%.4f,%.4f %s", p.lat, p.lon, meshOf(t, p)))
				waitFor(t, func() bool { return writers() == 0 })
				t.Logf("update %d delivered, no writer goroutine after it", i+1)
			}
			ts.srv.Drain(0)
			for _, r := range rs {
				err := r.endError(t)
				if code, msg := statusOf(err); code != codes.Unavailable || msg != errDrainEnd.Error() {
					t.Fatalf("%s ended with %v, want UNAVAILABLE %q", r.name, err, errDrainEnd)
				}
			}
			waitStreams(t, ts.srv, 0)
			var m dto.Metric
			ts.srv.m.ended.WithLabelValues("drain").Write(&m)
			if n := m.GetCounter().GetValue(); n != 3 {
				t.Fatalf("streams ended by the drain: %v, want 3", n)
			}
			waitFor(t, func() bool { return webReaders() == 0 })
		})
	}
}

// TestGRPCWebDirectFallsBackWhenSocketFull: a binary gRPC-Web rider whose client stops reading
// fills its socket; what the socket does not take goes to the rider's goroutine, and once the
// client reads again it gets every frame whole and in order (contiguous seqs; the chunked and
// frame readers check the framing) with each vehicle's latest position, and the rider has no
// writer goroutine again. -send-buffer off: the socket itself is full.
func TestGRPCWebDirectFallsBackWhenSocketFull(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("write-delay=%v", delay), func(t *testing.T) {
			b := bus.NewMemory(bus.Options{})
			t.Cleanup(func() { b.Close() })
			ts := startServer(t, b, nil, Options{
				Session:      session.Options{WriteDelay: delay, QueueLimit: 1024},
				WriteTimeout: waitLimit,
				SendBuffer:   -1,
			})
			centre := pt{35.681236, 139.767125}
			req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}
			client := &http.Client{Transport: &http.Transport{DialContext: fixedRcvBufDialer().DialContext}}
			r, _ := webBinRider(t, ts.base, req, nil, nil, client)
			t.Cleanup(r.close)
			// r.events holds 4096 events: the client stops reading when it is full.
			if ev := <-r.events; ev.GetSnapshot() == nil {
				t.Fatalf("first event %s, want the snapshot", logical(ev))
			}
			seq := uint64(1)
			want := fillSocket(t, &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}, centre)
			latest := map[string]string{}
			read := func() {
				t.Helper()
				var ev *meshcastv1.RiderEvent
				select {
				case ev = <-r.events:
				default:
					select {
					case ev = <-r.events:
					case <-r.done:
						t.Fatalf("stream ended: %v", r.end)
					case <-time.After(waitLimit):
						t.Fatal("no event")
					}
				}
				if ev.Seq != seq+1 {
					t.Fatalf("seq %d after %d", ev.Seq, seq)
				}
				seq = ev.Seq
				if u := ev.GetUpsert(); u != nil {
					latest[u.Id] = fmt.Sprintf("%.5f,%.5f", u.Lat, u.Lon)
				}
			}
			readUntilLatest(read, latest, want)
			waitFor(t, func() bool { return writers() == 0 })
		})
	}
}

// TestGRPCWebDirectRefusals: binary gRPC-Web requests that do not become a stream get their
// status through the package's wrapper (200, the trailer frame), as grpc-go answered them: bad
// WatchRequests, bodies that are not one gRPC message, a message over the limit, and a
// malformed grpc-timeout; none is left counted.
func TestGRPCWebDirectRefusals(t *testing.T) {
	ts := badServer(t)
	for _, tt := range badRequests {
		t.Run(tt.name, func(t *testing.T) {
			field := tt.field
			if tt.req.Lat == 0 {
				field = "lat,lon"
			}
			r, _ := webBinRider(t, ts.base, tt.req, nil, nil, nil)
			wantCode(t, r, codes.InvalidArgument, field)
		})
	}
	msg, _ := proto.Marshal(tokyo)
	big := make([]byte, 5000)
	for _, tt := range []struct {
		name string
		body []byte
		hdr  http.Header
		code codes.Code
		want string
	}{
		{"empty body", []byte{}, nil, codes.InvalidArgument, "missing"},
		{"cut header", []byte{0, 0}, nil, codes.InvalidArgument, "inside a message header"},
		{"cut message", grpcWebFrame(msg)[:len(msg)], nil, codes.InvalidArgument, "inside the message"},
		{"garbage", grpcWebFrame([]byte{0xff, 0xff}), nil, codes.InvalidArgument, "not a WatchRequest"},
		{"two messages", append(grpcWebFrame(msg), grpcWebFrame(msg)...), nil, codes.InvalidArgument, "one WatchRequest"},
		{"compressed", append([]byte{1}, grpcWebFrame(msg)[1:]...), nil, codes.Internal, "compressed"},
		{"over the limit", grpcWebFrame(big), nil, codes.ResourceExhausted, "larger than max (5000 vs. 4096)"},
		{"bad grpc-timeout", grpcWebFrame(msg), http.Header{"Grpc-Timeout": {"soon"}}, codes.Internal, "malformed grpc-timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := webBinRider(t, ts.base, nil, tt.body, tt.hdr, nil)
			wantCode(t, r, tt.code, tt.want)
		})
	}
	waitStreams(t, ts.srv, 0)
}

// TestGRPCWebDirectTimeout: a grpc-timeout ends the stream with DEADLINE_EXCEEDED, as grpc-go's
// handler transport did.
func TestGRPCWebDirectTimeout(t *testing.T) {
	ts := badServer(t)
	r, _ := webBinRider(t, ts.base, tokyo, nil, http.Header{"Grpc-Timeout": {"200m"}}, nil)
	tr := &tracked{rider: r}
	tr.expect(t, "snapshot []")
	if code, _ := statusOf(tr.endError(t)); code != codes.DeadlineExceeded {
		t.Fatalf("ended with %v, want DEADLINE_EXCEEDED", r.end)
	}
	waitStreams(t, ts.srv, 0)
}

// TestWebWriterFraming: a batch framed by webWriter is HTTP/1.1 chunks, each holding one
// gRPC-Web data frame of one event, whatever the event's size (the chunk-size line's length
// varies with it); webTrailer is a trailer-frame chunk and the last chunk.
func TestWebWriterFraming(t *testing.T) {
	var w webWriter
	sizes := []int{0, 1, 10, 250, 4091, 4096, 70000}
	var b []byte
	for i, n := range sizes {
		b = w.Begin(b, i, uint64(i+1), session.KindUpsert)
		start := len(b)
		for j := range n {
			b = append(b, byte(j))
		}
		b = w.End(b, start)
	}
	b = append(b, webTrailer(status.Error(codes.ResourceExhausted, "too slow: 100% é"))...)
	body := bufio.NewReader(httpChunked(t, b))
	fr := webFrameReader{body}
	for _, n := range sizes {
		flag, payload, err := fr.next()
		if err != nil || flag != 0 || len(payload) != n {
			t.Fatalf("frame of %d bytes: flag %#x, %d bytes, %v", n, flag, len(payload), err)
		}
		for j := range payload {
			if payload[j] != byte(j) {
				t.Fatalf("frame of %d bytes: byte %d is %d", n, j, payload[j])
			}
		}
	}
	flag, payload, err := fr.next()
	if err != nil || flag != 0x80 {
		t.Fatalf("trailer frame: flag %#x, %v", flag, err)
	}
	var st *webStatus
	if !errors.As(parseWebTrailers(payload), &st) || st.code != codes.ResourceExhausted || st.msg != "too slow: 100% é" {
		t.Fatalf("trailers %q: %v", payload, st)
	}
	if _, err := body.ReadByte(); err != io.EOF {
		t.Fatalf("after the trailer frame: %v, want the end of the body", err)
	}
}

// httpChunked reads b as a chunked HTTP/1.1 response body (net/http's reader).
func httpChunked(t *testing.T, b []byte) io.Reader {
	t.Helper()
	head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(head), bytes.NewReader(b))), nil)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("chunked body: %v", err)
	}
	return bytes.NewReader(all)
}

// FuzzReadWebRequest: the gRPC-Web request decoder never panics, never reads past one message
// and the end of the body, and accepts exactly one whole frame of a WatchRequest within the limit.
func FuzzReadWebRequest(f *testing.F) {
	msg, _ := proto.Marshal(tokyo)
	f.Add(grpcWebFrame(msg))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 8})
	f.Add(append(grpcWebFrame(msg), 0))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := readWebRequest(bytes.NewReader(body), 256)
		if err != nil {
			if req != nil {
				t.Fatal("a request with an error")
			}
			var inv *session.InvalidError
			if _, ok := status.FromError(err); !ok && !errors.As(err, &inv) {
				t.Fatalf("error %T %v is neither a status nor an invalid argument", err, err)
			}
			return
		}
		if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 || len(body)-5 > 256 {
			t.Fatalf("accepted %x", body)
		}
		if err := proto.Unmarshal(body[5:], new(meshcastv1.WatchRequest)); err != nil {
			t.Fatalf("accepted a message that does not decode: %v", err)
		}
	})
}

// FuzzGRPCTimeout: grpc-timeout values parse as grpc-go parses them, or are refused.
func FuzzGRPCTimeout(f *testing.F) {
	for _, v := range []string{"", "1S", "200m", "99999999H", "0n", "1x", "S", "123456789S", "-1S"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := grpcTimeout(v)
		switch {
		case err != nil:
			if st, ok := status.FromError(err); !ok || st.Code() != codes.Internal {
				t.Fatalf("%q: error %v", v, err)
			}
		case v == "":
			if d != 0 {
				t.Fatalf("no header: %v", d)
			}
		case d <= 0:
			t.Fatalf("%q: %v", v, d)
		}
	})
}

// TestGRPCWebDirectOnlyOnPlainTCP: a binary gRPC-Web Watch on a connection that transforms its
// bytes (HTTP/1.1 over TLS, as a server wrapped in TLS would accept it) is not hijacked (direct
// writes would bypass TLS): it is served through the package over grpc-go, as before, and the
// client reads its events through TLS.
func TestGRPCWebDirectOnlyOnPlainTCP(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{Session: session.Options{WriteDelay: 10 * time.Millisecond}})
	h1 := httptest.NewUnstartedServer(ts.srv) // HTTP/1.1 only: no h2 offered
	h1.StartTLS()
	defer h1.Close()
	req := &meshcastv1.WatchRequest{Lat: 35.681236, Lon: 139.767125, RadiusM: 1000}
	r, resp := webBinRider(t, h1.URL, req, nil, nil, h1.Client())
	defer r.close()
	if resp.ProtoMajor != 1 || resp.TLS == nil {
		t.Fatalf("%s, TLS %v: want HTTP/1.1 over TLS", resp.Proto, resp.TLS != nil)
	}
	tr := &tracked{rider: r}
	tr.expect(t, "snapshot []")
	if n := webReaders(); n != 0 {
		t.Fatalf("%d direct gRPC-Web riders over TLS, want 0", n)
	}
	sc := &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}
	p := pt{35.6800, 139.7670}
	sc.fix("f/v1", p, 0)
	tr.expect(t, fmt.Sprintf("upsert f/v1@%.4f,%.4f %s", p.lat, p.lon, meshOf(t, p)))
}
