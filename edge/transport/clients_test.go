package transport

// Test clients, one per transport, each a real client of its protocol: grpc-go (Watch, Track),
// coder/websocket (both subprotocols), a raw SSE reader (net/http + bufio), Node's
// @connectrpc/connect-web (gRPC-Web binary over fetch), and small Go clients for the two gRPC-Web
// variants no packaged client here speaks: grpc-web-text over HTTP/1.1 and the improbable
// grpc-websockets transport (Track).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// rider is one client stream as the tests see it: events in arrival order, then the end.
type rider struct {
	name   string
	events chan *meshcastv1.RiderEvent
	done   chan struct{}
	end    error // why the stream ended (set before done closes)

	mu       sync.Mutex
	comments []string // SSE comment lines

	move  func(*meshcastv1.WatchRequest) error                       // nil when the transport cannot move
	send  func(context.Context, websocket.MessageType, []byte) error // WebSocket: any message
	close func()
}

func newRider(name string) *rider {
	return &rider{name: name, events: make(chan *meshcastv1.RiderEvent, 4096), done: make(chan struct{})}
}

// finish records why the stream ended.
func (r *rider) finish(err error) {
	r.end = err
	close(r.done)
}

func (r *rider) addComment(c string) {
	r.mu.Lock()
	r.comments = append(r.comments, c)
	r.mu.Unlock()
}

func (r *rider) commentCount(c string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.comments {
		if x == c {
			n++
		}
	}
	return n
}

// endError waits for the end of the stream.
func (r *rider) endError(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.end
	case <-time.After(waitLimit):
		t.Fatalf("%s: stream did not end within %v", r.name, waitLimit)
		return nil
	}
}

// waitLimit bounds every wait for a condition in these tests (not a speed assertion).
const waitLimit = 20 * time.Second

func watchURL(base, path string, req *meshcastv1.WatchRequest, extra url.Values) string {
	q := url.Values{}
	q.Set("lat", strconv.FormatFloat(req.Lat, 'f', -1, 64))
	q.Set("lon", strconv.FormatFloat(req.Lon, 'f', -1, 64))
	if req.RadiusM != 0 {
		q.Set("radius_m", strconv.FormatUint(uint64(req.RadiusM), 10))
	}
	for k, vs := range extra {
		q[k] = vs
	}
	return base + path + "?" + q.Encode()
}

// --- native gRPC ---

func dialGRPC(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func grpcWatch(t testing.TB, cc *grpc.ClientConn, req *meshcastv1.WatchRequest) *rider {
	r := newRider("grpc-watch")
	ctx, cancel := context.WithCancel(context.Background())
	r.close = cancel
	st, err := meshcastv1.NewRiderServiceClient(cc).Watch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			ev, err := st.Recv()
			if err != nil {
				r.finish(err)
				return
			}
			r.events <- ev
		}
	}()
	return r
}

func grpcTrack(t testing.TB, cc *grpc.ClientConn, req *meshcastv1.WatchRequest) *rider {
	r := newRider("grpc-track")
	ctx, cancel := context.WithCancel(context.Background())
	r.close = cancel
	st, err := meshcastv1.NewRiderServiceClient(cc).Track(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	var sendMu sync.Mutex
	r.move = func(m *meshcastv1.WatchRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return st.Send(m)
	}
	go func() {
		for {
			ev, err := st.Recv()
			if err != nil {
				r.finish(err)
				return
			}
			r.events <- ev
		}
	}()
	return r
}

// --- WebSocket ---

// wsEnd is how a WebSocket stream ended: the close code and reason the server sent, or the
// HTTP answer when the upgrade was refused.
type wsEnd struct {
	code   websocket.StatusCode
	reason string
	err    error
}

func (e *wsEnd) Error() string { return fmt.Sprintf("close %d %q (%v)", e.code, e.reason, e.err) }

func wsDial(t testing.TB, rawURL string, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	return websocket.Dial(ctx, rawURL, &websocket.DialOptions{Subprotocols: subprotocols})
}

func wsRider(t testing.TB, base string, req *meshcastv1.WatchRequest, subprotocol string) *rider {
	t.Helper()
	var sps []string
	if subprotocol != "" {
		sps = []string{subprotocol}
	}
	c, resp, err := wsDial(t, watchURL(base, PathWebSocket, req, nil), sps...)
	if err != nil {
		t.Fatalf("dial websocket: %v (%v)", err, resp)
	}
	if c.Subprotocol() != subprotocol {
		t.Fatalf("negotiated %q, want %q", c.Subprotocol(), subprotocol)
	}
	name := "ws-json"
	if subprotocol == SubprotocolProto {
		name = "ws-proto"
	}
	r := newRider(name)
	r.close = func() { c.CloseNow() }
	r.send = c.Write
	r.move = func(m *meshcastv1.WatchRequest) error {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		return c.Write(ctx, websocket.MessageText, b)
	}
	go func() {
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				var ce websocket.CloseError
				errors.As(err, &ce)
				r.finish(&wsEnd{code: websocket.CloseStatus(err), reason: ce.Reason, err: err})
				return
			}
			evs, err := splitWSMessage(typ, data, subprotocol == SubprotocolProto)
			if err != nil {
				r.finish(err)
				c.CloseNow()
				return
			}
			for _, ev := range evs {
				r.events <- ev
			}
		}
	}()
	return r
}

// splitWSMessage decodes one server message: protojson events joined by "\n" in text frames, or
// varint length-delimited protobuf events in binary frames.
func splitWSMessage(typ websocket.MessageType, data []byte, binaryFormat bool) ([]*meshcastv1.RiderEvent, error) {
	var out []*meshcastv1.RiderEvent
	if binaryFormat {
		if typ != websocket.MessageBinary {
			return nil, errors.New("text frame on the proto subprotocol")
		}
		for len(data) > 0 {
			b, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return nil, fmt.Errorf("bad length prefix: %v", protowire.ParseError(n))
			}
			ev := new(meshcastv1.RiderEvent)
			if err := proto.Unmarshal(b, ev); err != nil {
				return nil, err
			}
			out = append(out, ev)
			data = data[n:]
		}
		return out, nil
	}
	if typ != websocket.MessageText {
		return nil, errors.New("binary frame on the json subprotocol")
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		ev := new(meshcastv1.RiderEvent)
		if err := protojson.Unmarshal(line, ev); err != nil {
			return nil, fmt.Errorf("event %q: %w", line, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// --- SSE ---

// sseEnd is how an SSE stream ended (the body's EOF or error), or the HTTP error answer.
type sseEnd struct {
	status int
	body   string
	err    error
}

func (e *sseEnd) Error() string { return fmt.Sprintf("HTTP %d %s (%v)", e.status, e.body, e.err) }

// sseRider reads an SSE stream with net/http and bufio, checking the framing as it goes: every
// event's id equals its seq and its event name its kind. A move reconnects at the new place with
// Last-Event-ID, as an EventSource would after being closed.
func sseRider(t testing.TB, base string, req *meshcastv1.WatchRequest) *rider {
	t.Helper()
	r := newRider("sse")
	var (
		mu     sync.Mutex
		cancel context.CancelFunc
		lastID string
		gen    int
	)
	open := func(req *meshcastv1.WatchRequest) error {
		ctx, c := context.WithCancel(context.Background())
		hr, _ := http.NewRequestWithContext(ctx, "GET", watchURL(base, PathSSE, req, nil), nil)
		mu.Lock()
		if lastID != "" {
			hr.Header.Set("Last-Event-ID", lastID)
		}
		if cancel != nil {
			cancel()
		}
		cancel = c
		gen++
		my := gen
		mu.Unlock()
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			c()
			return err
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			c()
			return &sseEnd{status: resp.StatusCode, body: string(b)}
		}
		go func() {
			defer resp.Body.Close()
			err := readSSE(resp.Body, r, func(id string) { mu.Lock(); lastID = id; mu.Unlock() })
			mu.Lock()
			current := my == gen
			mu.Unlock()
			if current {
				r.finish(&sseEnd{status: 200, err: err})
			}
		}()
		return nil
	}
	if err := open(req); err != nil {
		t.Fatalf("sse: %v", err)
	}
	r.move = open
	r.close = func() {
		mu.Lock()
		defer mu.Unlock()
		cancel()
	}
	return r
}

// readSSE parses an event stream (the subset meshcast sends) into r until EOF or an error.
func readSSE(body io.Reader, r *rider, setLast func(string)) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var id, event, data string
	sawRetry := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data == "" {
				continue // a block with only retry or comments
			}
			ev := new(meshcastv1.RiderEvent)
			if err := protojson.Unmarshal([]byte(data), ev); err != nil {
				return fmt.Errorf("data %q: %w", data, err)
			}
			if id != strconv.FormatUint(ev.Seq, 10) {
				return fmt.Errorf("id %q for seq %d", id, ev.Seq)
			}
			if want := kindName(ev); event != want {
				return fmt.Errorf("event %q for a %s", event, want)
			}
			setLast(id)
			r.events <- ev
			id, event, data = "", "", ""
		case strings.HasPrefix(line, ":"):
			r.addComment(strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "retry: "):
			if _, err := strconv.Atoi(line[7:]); err != nil {
				return fmt.Errorf("retry %q", line)
			}
			sawRetry = true
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if data != "" {
				return errors.New("multi-line data")
			}
			data = line[6:]
		default:
			return fmt.Errorf("unexpected line %q", line)
		}
		if !sawRetry && (id != "" || data != "") {
			return errors.New("an event before the retry: hint")
		}
	}
	return sc.Err()
}

func kindName(ev *meshcastv1.RiderEvent) string {
	switch ev.Kind.(type) {
	case *meshcastv1.RiderEvent_Snapshot:
		return "snapshot"
	case *meshcastv1.RiderEvent_Upsert:
		return "upsert"
	case *meshcastv1.RiderEvent_Remove:
		return "remove"
	case *meshcastv1.RiderEvent_Heartbeat:
		return "heartbeat"
	}
	return "none"
}

// --- gRPC-Web: Node @connectrpc/connect-web ---

// nodeEnd is the end line the Node client prints: the Connect code and message.
type nodeEnd struct{ Code, Message string }

func (e *nodeEnd) Error() string { return e.Code + ": " + e.Message }

var nodeSetup struct {
	once sync.Once
	dir  string
	err  error
}

// nodeClient returns the directory of the Node test client with its modules installed
// (npm ci from the committed lock file when node_modules is missing).
func nodeClient(t testing.TB) string {
	t.Helper()
	nodeSetup.once.Do(func() {
		dir, err := filepath.Abs("testdata/node")
		if err != nil {
			nodeSetup.err = err
			return
		}
		nodeSetup.dir = dir
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@connectrpc", "connect-web")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeSetup.err = fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	if nodeSetup.err != nil {
		t.Fatal(nodeSetup.err)
	}
	return nodeSetup.dir
}

// descriptorSet writes the rider API's FileDescriptorSet (with its imports) for the Node client.
func descriptorSet(t testing.TB) string {
	t.Helper()
	fd := meshcastv1.File_meshcast_v1_rider_proto
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var walk func(d protoreflect.FileDescriptor)
	walk = func(d protoreflect.FileDescriptor) {
		if seen[d.Path()] {
			return
		}
		seen[d.Path()] = true
		imps := d.Imports()
		for i := range imps.Len() {
			walk(imps.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(d))
	}
	walk(fd)
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rider.pb")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// nodeWebRider runs the connect-web client (binary gRPC-Web over HTTP/1.1 fetch) for Watch.
func nodeWebRider(t testing.TB, base, descPath string, req *meshcastv1.WatchRequest) *rider {
	t.Helper()
	dir := nodeClient(t)
	js, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(dir, "watch.mjs"), base, descPath, string(js), "binary")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := newRider("grpcweb-node")
	var closeOnce sync.Once
	r.close = func() { closeOnce.Do(func() { stdin.Close() }) }
	t.Cleanup(func() {
		r.close()
		cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if bytes.HasPrefix(line, []byte(`{"end":`)) {
				var e struct{ End nodeEnd }
				if err := json.Unmarshal(line, &e); err != nil {
					r.finish(err)
					return
				}
				r.finish(&e.End)
				return
			}
			ev := new(meshcastv1.RiderEvent)
			if err := protojson.Unmarshal(line, ev); err != nil {
				r.finish(fmt.Errorf("node printed %q: %w", line, err))
				return
			}
			r.events <- ev
		}
		r.finish(fmt.Errorf("node exited without an end line: %v; stderr: %s", sc.Err(), stderr.String()))
	}()
	return r
}

// --- gRPC-Web: grpc-web-text over HTTP/1.1 (Go) ---

// grpcWebFrame builds one gRPC-Web data frame.
func grpcWebFrame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// webFrameReader splits a gRPC-Web response body into frames.
type webFrameReader struct{ r io.Reader }

// next returns the next frame: flag 0 a message, flag 0x80 trailers.
func (w webFrameReader) next() (flag byte, payload []byte, err error) {
	var h [5]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		return 0, nil, err
	}
	payload = make([]byte, binary.BigEndian.Uint32(h[1:]))
	if _, err := io.ReadFull(w.r, payload); err != nil {
		return 0, nil, err
	}
	return h[0], payload, nil
}

// base64Chunks decodes a grpc-web-text body: base64 in 4-character groups, each flush padded on
// its own (so the body is not one base64 string).
type base64Chunks struct {
	r   *bufio.Reader
	out []byte
}

func (b *base64Chunks) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		var q [4]byte
		if _, err := io.ReadFull(b.r, q[:]); err != nil {
			return 0, err
		}
		var d [3]byte
		n, err := base64.StdEncoding.Decode(d[:], q[:])
		if err != nil {
			return 0, err
		}
		b.out = append(b.out, d[:n]...)
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// webStatus is the gRPC status a gRPC-Web response ended with (from the trailer frame or, for
// an error before any message, the HTTP headers).
type webStatus struct {
	code codes.Code
	msg  string
}

func (s *webStatus) Error() string { return fmt.Sprintf("grpc-web status %v: %s", s.code, s.msg) }

// parseWebTrailers reads the status from a trailer frame.
func parseWebTrailers(b []byte) error {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(b, "\r\n"...))))
	h, _ := tp.ReadMIMEHeader()
	if st := headerStatus(http.Header(h)); st != nil {
		return st
	}
	return fmt.Errorf("trailer frame without grpc-status: %q", b)
}

func headerStatus(h http.Header) *webStatus {
	c, err := strconv.Atoi(h.Get("Grpc-Status"))
	if err != nil {
		return nil
	}
	msg, _ := url.PathUnescape(h.Get("Grpc-Message"))
	return &webStatus{code: codes.Code(c), msg: msg}
}

// webTextRider calls Watch with grpc-web-text (base64) over HTTP/1.1. body, when not nil,
// replaces the encoded request (garbage-input tests).
func webTextRider(t testing.TB, base string, req *meshcastv1.WatchRequest, body []byte) *rider {
	t.Helper()
	if body == nil {
		msg, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		body = grpcWebFrame(msg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hr, _ := http.NewRequestWithContext(ctx, "POST", base+meshcastv1.RiderService_Watch_FullMethodName,
		strings.NewReader(base64.StdEncoding.EncodeToString(body)))
	hr.Header.Set("Content-Type", "application/grpc-web-text")
	hr.Header.Set("Accept", "application/grpc-web-text")
	hr.Header.Set("X-Grpc-Web", "1")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := newRider("grpcweb-text")
	r.close = cancel
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc-web-text") {
		t.Fatalf("grpc-web-text answered %d with content type %q", resp.StatusCode, ct)
	}
	go func() {
		defer resp.Body.Close()
		if st := headerStatus(resp.Header); st != nil {
			r.finish(st) // trailers-only response
			return
		}
		fr := webFrameReader{&base64Chunks{r: bufio.NewReader(resp.Body)}}
		for {
			flag, payload, err := fr.next()
			if err != nil {
				r.finish(err)
				return
			}
			if flag&0x80 != 0 {
				r.finish(parseWebTrailers(payload))
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
	return r
}

// --- gRPC-Web: the improbable grpc-websockets transport, Track (Go) ---

// wsStream turns the binary messages of a websocket into one byte stream.
type wsStream struct {
	c   *websocket.Conn
	buf []byte
}

func (s *wsStream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		typ, b, err := s.c.Read(context.Background())
		if err != nil {
			return 0, err
		}
		if typ != websocket.MessageBinary {
			return 0, errors.New("text message on grpc-websockets")
		}
		s.buf = b
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// webSocketTrack calls Track over the grpc-websockets transport (what improbable's browser
// client uses for client streaming): a headers message, then each request as 0x00 + gRPC frame.
func webSocketTrack(t testing.TB, base string, req *meshcastv1.WatchRequest) *rider {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + meshcastv1.RiderService_Track_FullMethodName
	c, resp, err := wsDial(t, u, "grpc-websockets")
	if err != nil {
		t.Fatalf("dial grpc-websockets: %v (%v)", err, resp)
	}
	ctx := context.Background()
	hdr := "content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"
	if err := c.Write(ctx, websocket.MessageBinary, []byte(hdr)); err != nil {
		t.Fatal(err)
	}
	var sendMu sync.Mutex
	send := func(m *meshcastv1.WatchRequest) error {
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		sendMu.Lock()
		defer sendMu.Unlock()
		return c.Write(ctx, websocket.MessageBinary, append([]byte{0}, grpcWebFrame(b)...))
	}
	if err := send(req); err != nil {
		t.Fatal(err)
	}
	r := newRider("grpcweb-websocket-track")
	r.move = send
	r.close = func() { c.CloseNow() }
	go func() {
		// After the trailers, keep reading so the server's close handshake is answered.
		defer c.CloseRead(context.Background())
		fr := webFrameReader{&wsStream{c: c}}
		headersSeen := false
		for {
			flag, payload, err := fr.next()
			if err != nil {
				r.finish(err)
				return
			}
			if flag&0x80 != 0 {
				if !headersSeen {
					headersSeen = true
					if h := http.Header(mustMIME(payload)); h.Get("Grpc-Status") != "" {
						r.finish(parseWebTrailers(payload)) // trailers-only
						return
					}
					continue
				}
				r.finish(parseWebTrailers(payload))
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
	return r
}

func mustMIME(b []byte) textproto.MIMEHeader {
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(b, "\r\n"...)))).ReadMIMEHeader()
	return h
}

// statusOf extracts the gRPC code of a stream end from any of the gRPC-flavoured clients.
func statusOf(err error) (codes.Code, string) {
	var ws *webStatus
	if errors.As(err, &ws) && ws != nil {
		return ws.code, ws.msg
	}
	var ne *nodeEnd
	if errors.As(err, &ne) {
		for c := codes.OK; c <= codes.Unauthenticated; c++ {
			if strings.EqualFold(strings.ReplaceAll(c.String(), "_", ""), strings.ReplaceAll(ne.Code, "_", "")) {
				return c, ne.Message
			}
		}
		return codes.Unknown, ne.Message
	}
	s := status.Convert(err)
	return s.Code(), s.Message()
}
