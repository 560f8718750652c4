package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Stalled requests and streams: every gRPC and gRPC-Web stream is admitted (auth, limits) from
// its headers, counts against the limits while it waits for its request message, and is cut
// with DEADLINE_EXCEEDED, counted in meshcast_edge_stalled_total, when the message is not
// complete within the handshake timeout.

func stalledServer(t *testing.T, o Options) (*testServer, *prometheus.Registry) {
	t.Helper()
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	return startServer(t, b, nil, o), reg
}

// stalledWebRequest sends a gRPC-Web Watch whose body announces 23 bytes and sends 2, with the
// extra headers, on a raw HTTP/1.1 connection, and returns the connection.
func stalledWebRequest(t *testing.T, addr string, extra ...string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit)) // a failure guard, not a measurement
	req := "POST " + meshcastv1.RiderService_Watch_FullMethodName + " HTTP/1.1\r\nHost: x\r\n" +
		"Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: 23\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n\x00\x00"); err != nil {
		t.Fatal(err)
	}
	return c
}

// webResponseStatus reads a gRPC-Web response to its end and returns its gRPC status, and
// whether the server closed the connection after it.
func webResponseStatus(t *testing.T, c net.Conn) (*webStatus, bool) {
	t.Helper()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	st := headerStatus(resp.Header)
	fr := webFrameReader{bytes.NewReader(body)}
	for st == nil {
		flag, payload, err := fr.next()
		if err != nil {
			t.Fatalf("HTTP %d %q: no grpc-status (%v)", resp.StatusCode, body, err)
		}
		if flag&0x80 != 0 {
			if !errors.As(parseWebTrailers(payload), &st) {
				t.Fatalf("trailers %q", payload)
			}
		}
	}
	_, err = br.ReadByte()
	return st, errors.Is(err, io.EOF)
}

func TestStalledGRPCWebBodyIsCut(t *testing.T) {
	ts, reg := stalledServer(t, Options{HandshakeTimeout: 300 * time.Millisecond, MaxConns: 1})
	c := stalledWebRequest(t, ts.addr)
	// Counted against the limits from its headers: the process is full.
	waitStreams(t, ts.srv, 1)
	_, resp, err := wsDial(t, watchURL(ts.base, PathWebSocket, here, nil))
	if err == nil {
		t.Fatal("a second stream was admitted while the stalled one held the only slot")
	}
	httpErrorOf(t, resp, http.StatusServiceUnavailable, "unavailable", "full")

	st, closed := webResponseStatus(t, c)
	if st.code != codes.DeadlineExceeded || !strings.Contains(st.msg, "300ms") {
		t.Fatalf("stalled body answered %v %q, want DEADLINE_EXCEEDED naming the bound", st.code, st.msg)
	}
	if !closed {
		t.Fatal("the connection of the stalled body was kept open")
	}
	waitStreams(t, ts.srv, 0)
	if got := counterValue(t, reg, "meshcast_edge_stalled_total", "grpc_web_request"); got != 1 {
		t.Fatalf("meshcast_edge_stalled_total{reason=grpc_web_request} = %v, want 1", got)
	}
	// The slot is free again.
	hold(t, ts, "ws", "")()
}

// TestGRPCWebAuthBeforeBody: without a token, a gRPC-Web request is refused from its headers,
// without waiting for its body (the bound is an hour here: the answer must not wait for it).
func TestGRPCWebAuthBeforeBody(t *testing.T) {
	ts, reg := stalledServer(t, Options{HandshakeTimeout: time.Hour,
		Authenticate: func(tok string) (Grant, error) {
			if tok != "good" {
				return Grant{}, errors.New("bad token")
			}
			return Grant{}, nil
		}})
	st, _ := webResponseStatus(t, stalledWebRequest(t, ts.addr))
	if st.code != codes.Unauthenticated {
		t.Fatalf("answered %v %q, want UNAUTHENTICATED", st.code, st.msg)
	}
	if got := counterValue(t, reg, "meshcast_edge_rejected_total", "unauthenticated"); got != 1 {
		t.Fatalf("rejected{unauthenticated} = %v", got)
	}
	// With a token the stalled body is admitted and waits (counted).
	stalledWebRequest(t, ts.addr, "Authorization: Bearer good")
	waitStreams(t, ts.srv, 1)
}

func TestGRPCWebForeignOriginRefused(t *testing.T) {
	ts := badServer(t)
	msg, _ := proto.Marshal(tokyo)
	for _, o := range []struct {
		origin string
		status int
	}{{"https://evil.example.net", http.StatusForbidden}, {"https://app.example.com", http.StatusOK}, {"", http.StatusOK}} {
		t.Run(o.origin, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.base+meshcastv1.RiderService_Watch_FullMethodName, bytes.NewReader(grpcWebFrame(msg)))
			req.Header.Set("Content-Type", "application/grpc-web+proto")
			req.Header.Set("X-Grpc-Web", "1")
			if o.origin != "" {
				req.Header.Set("Origin", o.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != o.status {
				t.Fatalf("origin %q: HTTP %d, want %d", o.origin, resp.StatusCode, o.status)
			}
			if o.status == http.StatusForbidden {
				httpErrorOf(t, resp, 403, "permission_denied", "origin")
				return
			}
			// Allowed: the stream opens (the first frame is the snapshot).
			var h [5]byte
			if _, err := io.ReadFull(resp.Body, h[:]); err != nil || h[0] != 0 {
				t.Fatalf("no event: %v %v", h, err)
			}
		})
	}
}

// --- native gRPC over a raw HTTP/2 connection ---

// h2Client speaks HTTP/2 frames to the server, to send what a gRPC library would not.
type h2Client struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32
	// lenient: write errors (the server closed the connection) are left for wait to report.
	lenient bool
}

func (h *h2Client) check(err error) {
	h.t.Helper()
	if err != nil && !h.lenient {
		h.t.Fatal(err)
	}
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit)) // a failure guard
	h := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c), next: 1}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// open sends the HEADERS of a new stream on path (content type ct), with extra header fields,
// split into CONTINUATION frames as needed; end half-closes it at once.
func (h *h2Client) open(path, ct string, end bool, extra ...hpack.HeaderField) uint32 {
	h.t.Helper()
	h.hbuf.Reset()
	fields := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: "x"}, {Name: "content-type", Value: ct}, {Name: "te", Value: "trailers"}}
	for _, f := range append(fields, extra...) {
		h.enc.WriteField(f)
	}
	block := h.hbuf.Bytes()
	id := h.next
	h.next += 2
	const chunk = 16384
	first := block[:min(chunk, len(block))]
	block = block[len(first):]
	h.check(h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0}))
	for len(block) > 0 {
		part := block[:min(chunk, len(block))]
		block = block[len(part):]
		h.check(h.fr.WriteContinuation(id, len(block) == 0, part))
	}
	return id
}

// send sends one gRPC message on the stream, and half-closes it when end.
func (h *h2Client) send(id uint32, msg []byte, end bool) {
	h.t.Helper()
	h.check(h.fr.WriteData(id, end, grpcWebFrame(msg))) // the same 5-byte framing
}

// h2End is how a stream ended: its trailers' grpc-status, a RST_STREAM code, or the
// connection's end (GOAWAY, EOF).
type h2End struct {
	status  *webStatus
	rst     http2.ErrCode
	closed  error
	gotData bool
}

// wait reads frames until stream id ends (trailers with END_STREAM, or RST_STREAM).
func (h *h2Client) wait(id uint32) h2End {
	h.t.Helper()
	var end h2End
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			end.closed = err
			return end
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			end.closed = fmt.Errorf("GOAWAY %v", f.ErrCode)
			return end
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				end.rst = f.ErrCode
				return end
			}
		case *http2.DataFrame:
			if f.StreamID == id && len(f.Data()) > 0 {
				end.gotData = true
				h.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id || !f.StreamEnded() {
				continue
			}
			hdr := http.Header{}
			for _, hf := range f.Fields {
				hdr.Add(hf.Name, hf.Value)
			}
			end.status = headerStatus(hdr)
			if end.status == nil {
				h.t.Fatalf("stream %d ended without grpc-status: %v", id, hdr)
			}
			return end
		}
	}
}

func TestStalledGRPCStreamIsCut(t *testing.T) {
	ts, reg := stalledServer(t, Options{HandshakeTimeout: 300 * time.Millisecond, MaxConns: 1})
	h := dialH2(t, ts.addr)
	id := h.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false)
	waitStreams(t, ts.srv, 1) // counted from its headers
	r := grpcWatch(t, dialGRPC(t, ts.addr), tokyo)
	wantCode(t, r, codes.Unavailable, "full")

	end := h.wait(id)
	if end.status == nil || end.status.code != codes.DeadlineExceeded || !strings.Contains(end.status.msg, "300ms") {
		t.Fatalf("stalled stream ended with %+v %v, want DEADLINE_EXCEEDED naming the bound", end, end.status)
	}
	waitStreams(t, ts.srv, 0)
	if got := counterValue(t, reg, "meshcast_edge_stalled_total", "grpc_request"); got != 1 {
		t.Fatalf("meshcast_edge_stalled_total{reason=grpc_request} = %v, want 1", got)
	}

	// A unary call (health) whose request never completes is cut too: grpc-go reads a unary
	// request before any handler.
	id = h.open("/grpc.health.v1.Health/Check", "application/grpc", false)
	if end := h.wait(id); end.status == nil || end.status.code != codes.DeadlineExceeded {
		t.Fatalf("stalled health check ended with %+v, want DEADLINE_EXCEEDED", end)
	}
	if got := counterValue(t, reg, "meshcast_edge_stalled_total", "grpc_request"); got != 2 {
		t.Fatalf("meshcast_edge_stalled_total{reason=grpc_request} = %v, want 2", got)
	}

	// A stream that sends its request in time is served, on the same connection.
	msg, _ := proto.Marshal(tokyo)
	id = h.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false)
	h.send(id, msg, true)
	waitStreams(t, ts.srv, 1)
}

// TestGRPCStalledAuthFirst: a stream without a token is refused from its metadata at once,
// without waiting for its request (the bound is an hour).
func TestGRPCStalledAuthFirst(t *testing.T) {
	ts, _ := stalledServer(t, Options{HandshakeTimeout: time.Hour,
		Authenticate: func(string) (Grant, error) { return Grant{}, errors.New("bad token") }})
	h := dialH2(t, ts.addr)
	end := h.wait(h.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false))
	if end.status == nil || end.status.code != codes.Unauthenticated {
		t.Fatalf("ended with %+v, want UNAUTHENTICATED", end)
	}
}

// TestGRPCMaxStreamsPerConn: one HTTP/2 connection holds at most 100 streams by default
// (Options.MaxStreamsPerConn); the 101st is refused (RST_STREAM REFUSED_STREAM).
func TestGRPCMaxStreamsPerConn(t *testing.T) {
	ts, _ := stalledServer(t, Options{HandshakeTimeout: time.Hour})
	h := dialH2(t, ts.addr)
	for range 100 {
		h.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false)
	}
	waitStreams(t, ts.srv, 100)
	id := h.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false)
	if end := h.wait(id); end.rst != http2.ErrCodeRefusedStream {
		t.Fatalf("the 101st stream of a connection ended with %+v, want RST_STREAM REFUSED_STREAM", end)
	}
	// Another connection has its own streams.
	h2 := dialH2(t, ts.addr)
	h2.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false)
	waitStreams(t, ts.srv, 101)
}

// TestGRPCMetadataCap: native gRPC metadata is capped like HTTP headers (16 KiB by default): a
// stream with 20 KB of metadata is reset before any handler, the same stream with 1 KB is served.
func TestGRPCMetadataCap(t *testing.T) {
	ts, _ := stalledServer(t, Options{HandshakeTimeout: time.Hour})
	msg, _ := proto.Marshal(tokyo)
	for _, size := range []int{1 << 10, 20 << 10, 100 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			h := dialH2(t, ts.addr)
			h.lenient = size > 16<<10
			id := h.open(meshcastv1.RiderService_Watch_FullMethodName, "application/grpc", false,
				hpack.HeaderField{Name: "x-padding", Value: strings.Repeat("p", size)})
			h.send(id, msg, true)
			if size < 16<<10 {
				waitStreams(t, ts.srv, 1)
				h.c.Close()
				waitStreams(t, ts.srv, 0)
				return
			}
			end := h.wait(id)
			if (end.rst == 0 && end.closed == nil) || end.gotData || end.status != nil {
				t.Fatalf("%d bytes of metadata: %+v, want the stream or connection reset without an answer", size, end)
			}
			if n := ts.srv.Streams(); n != 0 {
				t.Fatalf("%d streams admitted", n)
			}
		})
	}
	// HTTP: a request with 20 KB of headers gets 431.
	req, _ := http.NewRequest("GET", watchURL(ts.base, PathSSE, here, nil), nil)
	req.Header.Set("X-Padding", strings.Repeat("p", 20<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("HTTP with 20 KB of headers: %d", resp.StatusCode)
	}
}

// TestPreflightSSEAndWebSocket: OPTIONS on /v1/sse and /v1/ws answers a CORS preflight for the
// allowed origins (a fetch-based EventSource sending Authorization needs it), 403 for others.
func TestPreflightSSEAndWebSocket(t *testing.T) {
	ts := badServer(t)
	for _, p := range []string{PathSSE, PathWebSocket} {
		for _, o := range []struct {
			origin string
			status int
		}{{"https://app.example.com", http.StatusNoContent}, {"https://evil.example.net", http.StatusForbidden}} {
			t.Run(p+"/"+o.origin, func(t *testing.T) {
				req, _ := http.NewRequest("OPTIONS", ts.base+p+"?lat=35.68&lon=139.76", nil)
				req.Header.Set("Origin", o.origin)
				req.Header.Set("Access-Control-Request-Method", "GET")
				req.Header.Set("Access-Control-Request-Headers", "authorization")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != o.status {
					t.Fatalf("HTTP %d, want %d", resp.StatusCode, o.status)
				}
				if o.status != http.StatusNoContent {
					return
				}
				h := resp.Header
				if h.Get("Access-Control-Allow-Origin") != o.origin || !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization") ||
					!strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") {
					t.Fatalf("preflight headers %v", h)
				}
			})
		}
	}
}

// TestMalformedQuery: a query that does not parse is called malformed, not "lat is required".
func TestMalformedQuery(t *testing.T) {
	ts := badServer(t)
	for _, q := range []string{"lat=%zz&lon=139.7", "lat=35.6;lon=139.7"} {
		t.Run("sse/"+q, func(t *testing.T) {
			resp, err := http.Get(ts.base + PathSSE + "?" + q)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			httpErrorOf(t, resp, 400, "invalid_argument", "malformed")
		})
		t.Run("ws/"+q, func(t *testing.T) {
			_, resp, err := wsDial(t, "ws://"+ts.addr+PathWebSocket+"?"+q)
			if err == nil {
				t.Fatal("upgraded")
			}
			httpErrorOf(t, resp, 400, "invalid_argument", "malformed")
		})
	}
}

// wsCloseOf sends data on a fresh WebSocket rider and returns how the server closed it.
func wsCloseOf(t *testing.T, ts *testServer, typ websocket.MessageType, data []byte) *wsEnd {
	t.Helper()
	r := &tracked{rider: wsRider(t, ts.base, tokyo, SubprotocolJSON)}
	r.expect(t, "snapshot []")
	if err := r.send(t.Context(), typ, data); err != nil {
		t.Fatal(err)
	}
	var end *wsEnd
	if err := r.endError(t); !errors.As(err, &end) {
		t.Fatalf("ended with %v", err)
	}
	return end
}

// TestWebSocketOversizedFrame: a client frame over MaxMessageBytes closes with 1008 and says so,
// as API.md says for anything but a move.
func TestWebSocketOversizedFrame(t *testing.T) {
	ts := badServer(t)
	end := wsCloseOf(t, ts, websocket.MessageText, []byte(`{"lat":35.6,"lon":139.7,"classes":[`+strings.Repeat(`"VEHICLE_CLASS_VAN",`, 300)+`"VEHICLE_CLASS_VAN"]}`))
	if end.code != closePolicy || !strings.Contains(end.reason, "over 4096 bytes") {
		t.Fatalf("close %d %q, want 1008 naming the limit", end.code, end.reason)
	}
}

// TestWebSocketBadMoveSaysWhy: a move that is not a WatchRequest is answered with what is wrong.
func TestWebSocketBadMoveSaysWhy(t *testing.T) {
	ts := badServer(t)
	for _, tt := range []struct{ data, want string }{
		{`{"latitude":35}`, `unknown field "latitude"`},
		{`{"lat":"north","lon":139.7}`, `lat`},
		{`{"lat":35.6,`, `unexpected`},
	} {
		t.Run(tt.data, func(t *testing.T) {
			end := wsCloseOf(t, ts, websocket.MessageText, []byte(tt.data))
			if end.code != closePolicy || !strings.Contains(end.reason, "not a protojson WatchRequest: ") || !strings.Contains(end.reason, tt.want) {
				t.Fatalf("close %d %q, want 1008 saying %q", end.code, end.reason, tt.want)
			}
		})
	}
}

// --- plain-text HTTP/2 (h2c) for gRPC-Web, SSE and the page ---

// h2cClient is an HTTP client that speaks only HTTP/2 with prior knowledge, on one connection.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestH2C: gRPC-Web, SSE and the page over HTTP/2 with prior knowledge, as API.md says (they
// used to reach grpc-go, which answered 415), and native gRPC on a connection that began with
// one of them.
func TestH2C(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{Fallback: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page over "+r.Proto)
	})})
	hc := h2cClient(t)
	msg, _ := proto.Marshal(tokyo)

	t.Run("page", func(t *testing.T) {
		resp, err := hc.Get(ts.base + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || string(body) != "page over HTTP/2.0" {
			t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, body)
		}
	})
	t.Run("sse", func(t *testing.T) {
		resp, err := hc.Get(watchURL(ts.base, PathSSE, tokyo, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s %d %v", resp.Proto, resp.StatusCode, resp.Header)
		}
		r := newRider("sse-h2c")
		go readSSE(resp.Body, r, func(string) {})
		select {
		case ev := <-r.events:
			if ev.GetSnapshot() == nil {
				t.Fatalf("first event %v", ev)
			}
		case <-r.done:
			t.Fatalf("ended: %v", r.end)
		case <-time.After(waitLimit):
			t.Fatal("no snapshot")
		}
	})
	t.Run("grpc-web", func(t *testing.T) {
		req, _ := http.NewRequest("POST", ts.base+meshcastv1.RiderService_Watch_FullMethodName, bytes.NewReader(grpcWebFrame(msg)))
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("X-Grpc-Web", "1")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc-web") {
			t.Fatalf("%s %d %v", resp.Proto, resp.StatusCode, resp.Header)
		}
		flag, payload, err := webFrameReader{resp.Body}.next()
		ev := new(meshcastv1.RiderEvent)
		if err != nil || flag != 0 || proto.Unmarshal(payload, ev) != nil || ev.GetSnapshot() == nil {
			t.Fatalf("first frame %d %q %v", flag, payload, err)
		}
	})
	t.Run("native grpc on the same connection", func(t *testing.T) {
		req, _ := http.NewRequest("POST", ts.base+meshcastv1.RiderService_Watch_FullMethodName, bytes.NewReader(grpcWebFrame(msg)))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "application/grpc" {
			t.Fatalf("%s %d %v", resp.Proto, resp.StatusCode, resp.Header)
		}
		flag, payload, err := webFrameReader{resp.Body}.next() // the same 5-byte framing
		ev := new(meshcastv1.RiderEvent)
		if err != nil || flag != 0 || proto.Unmarshal(payload, ev) != nil || ev.GetSnapshot() == nil {
			t.Fatalf("first message %d %q %v", flag, payload, err)
		}
	})
}

// TestSilentConnectionCounted: a connection that sends nothing is closed after the handshake
// timeout and counted in meshcast_edge_stalled_total{reason="first_bytes"}.
func TestSilentConnectionCounted(t *testing.T) {
	ts, reg := stalledServer(t, Options{HandshakeTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection: %v, want closed by the server", err)
	}
	waitFor(t, func() bool { return counterValue(t, reg, "meshcast_edge_stalled_total", "first_bytes") == 1 })
}

// TestStalledGRPCWebBodyOverH2C: a gRPC-Web request over h2c whose body never completes is cut
// within the bound too (its stream's read deadline), and the connection keeps serving.
func TestStalledGRPCWebBodyOverH2C(t *testing.T) {
	ts, reg := stalledServer(t, Options{HandshakeTimeout: 300 * time.Millisecond})
	hc := h2cClient(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte{0, 0}) // 2 bytes of a 5-byte frame header, then nothing
	req, _ := http.NewRequest("POST", ts.base+meshcastv1.RiderService_Watch_FullMethodName, pr)
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	st := headerStatus(resp.Header)
	if st == nil {
		flag, payload, err := webFrameReader{bytes.NewReader(body)}.next()
		if err != nil || flag&0x80 == 0 || !errors.As(parseWebTrailers(payload), &st) {
			t.Fatalf("%s %d %q: no status", resp.Proto, resp.StatusCode, body)
		}
	}
	if resp.ProtoMajor != 2 || st.code != codes.DeadlineExceeded {
		t.Fatalf("%s: %v %q, want DEADLINE_EXCEEDED", resp.Proto, st.code, st.msg)
	}
	if got := counterValue(t, reg, "meshcast_edge_stalled_total", "grpc_web_request"); got != 1 {
		t.Fatalf("stalled{grpc_web_request} = %v", got)
	}
	waitStreams(t, ts.srv, 0)
}
