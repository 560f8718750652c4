package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/improbable-eng/grpc-web/go/grpcweb"
	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// gRPC-Web Watch without grpc-go: the common case of a browser rider, binary gRPC-Web
// (application/grpc-web or application/grpc-web+proto) over plain HTTP/1.1 TCP, is served on
// the same direct-write path as SSE (direct.go) instead of grpc-go's ServeHTTP handler
// transport (its goroutines and buffers per request under net/http: ~65 KB of RSS per idle
// rider). improbable-eng/grpc-web stays in the request path: grpcweb.WrapHandler over
// serveWebWatch validates the request, answers CORS (rs/cors: the allowed origin, credentials,
// Vary) and prepares the response headers (content type, Access-Control-Expose-Headers); a
// refusal (admission, a bad or stalled request) is written through it as grpc-go's handler
// transport writes it: 200, then the gRPC-Web trailer frame. Once the session is open the
// connection is hijacked (the ResponseWriter under the wrapper is a webConn, which drops the
// wrapper's writes from then on) and the response continues on the socket: HTTP/1.1 chunked,
// one chunk per event holding its gRPC-Web data frame [0x00][length BE32][RiderEvent], and at
// the end the trailer frame [0x80][length BE32]["grpc-status: N\r\ngrpc-message: ...\r\n"] and
// the last chunk; then the connection closes. An idle rider is its session, its socket and a
// reader goroutine that notices the client leaving, as for SSE.
//
// Everything else keeps going through the package over grpc-go (WrapServer): grpc-web-text,
// HTTP/2, the grpc-websockets transport (Track), other methods, and a connection that is not
// plain TCP (TLS in the process: direct writes would bypass it).

// webDirectPath is the method served directly.
var webDirectPath = meshcastv1.RiderService_Watch_FullMethodName

// webDirect reports whether a gRPC-Web request (IsGrpcWebRequest) is served directly: Watch,
// binary, HTTP/1.x, on a plain TCP connection.
func (s *Server) webDirect(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.URL.Path != webDirectPath {
		return false
	}
	if _, ok := webBinaryType(r.Header.Get("Content-Type")); !ok {
		return false
	}
	c := connFrom(r.Context())
	return c != nil && plainTCP(c) != nil
}

// webBinaryType returns the gRPC content type answering a binary gRPC-Web request's content
// type (application/grpc-web -> application/grpc, +proto kept), parameters dropped.
func webBinaryType(ct string) (string, bool) {
	base, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(strings.TrimSpace(base)) {
	case "application/grpc-web":
		return "application/grpc", true
	case "application/grpc-web+proto":
		return "application/grpc+proto", true
	}
	return "", false
}

// newWebDirect wraps serveWebWatch in the grpc-web package with the options of s.web.
func (s *Server) newWebDirect() *grpcweb.WrappedGrpcServer {
	return grpcweb.WrapHandler(http.HandlerFunc(s.serveWebWatch),
		grpcweb.WithOriginFunc(s.originAllowed),
	)
}

// serveWebDirect serves a request webDirect accepted (after the Origin check, counted and
// bounded by webFirstRequest): through the package, over a webConn.
func (s *Server) serveWebDirect(w http.ResponseWriter, r *http.Request, dw *deadlineWriter) {
	wc := &webConn{ResponseWriter: dw, raw: w}
	s.webDirectSrv.ServeHTTP(wc, r.WithContext(context.WithValue(r.Context(), webConnKey{}, wc)))
}

// webConn is the ResponseWriter under the package's wrapper for a direct gRPC-Web request:
// net/http's (with write deadlines) until serveWebWatch takes the connection, after which the
// wrapper's writes (its trailer frame, its flush) are dropped: the stream writes its own.
type webConn struct {
	http.ResponseWriter // *deadlineWriter
	raw                 http.ResponseWriter
	taken               bool // the connection was hijacked (or is being: the headers are final)
}

type webConnKey struct{}

func (c *webConn) WriteHeader(code int) {
	if !c.taken {
		c.ResponseWriter.WriteHeader(code)
	}
}

func (c *webConn) Write(p []byte) (int, error) {
	if c.taken {
		return 0, http.ErrHijacked
	}
	return c.ResponseWriter.Write(p)
}

func (c *webConn) Flush() {
	if !c.taken {
		c.ResponseWriter.(http.Flusher).Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (c *webConn) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// serveWebWatch is the handler under the package's wrapper: the request arrives as gRPC (the
// wrapper rewrote its content type), w is the wrapper's response (gRPC headers and trailers in,
// gRPC-Web out). The stream is admitted from its headers, its request read (the whole body,
// within the first-request bound), its session opened; then the connection is taken.
func (s *Server) serveWebWatch(w http.ResponseWriter, r *http.Request) {
	wc, _ := r.Context().Value(webConnKey{}).(*webConn)
	wr := webRequestFrom(r.Context())
	ct, ok := webBinaryType(strings.Replace(r.Header.Get("Content-Type"), "application/grpc", "application/grpc-web", 1))
	if wc == nil || wr == nil || !ok {
		// Not reached: ServeHTTP sends only webDirect requests here.
		writeWebStatus(w, "application/grpc", status.Error(codes.Internal, "gRPC-Web request without its connection"))
		return
	}
	rs, err := s.admit(client{transport: nameGRPCWeb, remote: r.RemoteAddr, header: r.Header.Get,
		token: bearer(r.Header.Get("Authorization")), requestID: ops.RequestID(r.Context())})
	if err != nil {
		wr.abandon()
		writeWebStatus(w, ct, grpcError(err))
		return
	}
	deadline, err := grpcTimeout(r.Header.Get("Grpc-Timeout"))
	var req *meshcastv1.WatchRequest
	if err == nil {
		req, err = readWebRequest(r.Body, s.o.MaxMessageBytes)
		if err != nil && wr.fired.Load() {
			err = wr.err()
		}
	}
	if err == nil {
		err = rs.open(req, 0)
	}
	if err != nil {
		wr.abandon()
		rs.end(nil)
		writeWebStatus(w, ct, grpcError(err))
		return
	}

	// The headers: the wrapper's (CORS, content type, exposed headers), final once it has
	// passed WriteHeader on; the connection is taken before anything is written.
	w.Header().Set("Content-Type", ct)
	wc.taken = true
	w.WriteHeader(http.StatusOK)
	h := wc.raw.Header()
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Trailer"} {
		h.Del(k)
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&head)
	head.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")

	conn, _, err := http.NewResponseController(wc.raw).Hijack()
	if err != nil {
		// Not on HTTP/1.x after all: answered through the wrapper.
		wc.taken = false
		wc.ResponseWriter.WriteHeader(http.StatusOK)
		rs.end(nil)
		w.Header().Set("Grpc-Status", strconv.Itoa(int(codes.Unavailable)))
		w.Header().Set("Grpc-Message", encodeGrpcMessage("cannot take the connection: "+err.Error()))
		return
	}
	if !s.trackConn(conn, func() { conn.Close() }) {
		conn.Close()
		rs.end(errStopping)
		return
	}
	// The handler returns at once: net/http's goroutine, its buffers and the request go.
	go s.runWeb(conn, rs, head.Bytes(), deadline)
}

// errClientDeadline ends a stream whose grpc-timeout passed (DEADLINE_EXCEEDED).
var errClientDeadline = errors.New("client deadline")

// runWeb serves a gRPC-Web stream on a hijacked HTTP/1.x connection (see above), then closes it
// and ends the stream: this goroutine writes the head and the snapshot and returns once the
// rider is idle (direct.go).
func (s *Server) runWeb(conn net.Conn, rs *stream, head []byte, deadline time.Duration) {
	readDone := make(chan struct{})
	go readHangUp(conn, rs.sess, readDone)
	var timeout *time.Timer
	if deadline > 0 {
		timeout = time.AfterFunc(deadline, func() { rs.cancel(errClientDeadline) })
	}
	sw := newSockWriter(conn, s.o.WriteTimeout)
	finish := func(err error) {
		if timeout != nil {
			timeout.Stop()
		}
		if !errors.Is(err, errWriteFailed) {
			if errors.Is(context.Cause(rs.ctx), errClientDeadline) {
				err = context.DeadlineExceeded
			} else {
				err = rs.endCause(err)
			}
			sw.write(webTrailer(grpcError(err)))
		}
		s.endHijacked(conn, readDone, rs, err)
	}
	q := newSendQueue(conn, s.o.SendBuffer, s.o.WriteTimeout)
	f := webWriter{write: sw.write}
	if err := sw.write(head); err != nil {
		finish(errors.Join(errWriteFailed, err))
		return
	}
	if sw.rc == nil { // not reached: webDirect asked for plain TCP
		finish(s.pump(rs, f, q))
		return
	}
	s.startDirect(rs, f, sw, q, finish)
}

// webWriter is the gRPC-Web adapter of the send pump and the direct writes: each event is one
// HTTP/1.1 chunk holding its gRPC-Web data frame.
type webWriter struct{ write func([]byte) error }

// webEventHead is what Begin reserves before an event: the longest chunk-size line (8 hex
// digits and CRLF) and the gRPC-Web frame header.
const webEventHead = 8 + 2 + 5

func (webWriter) JSON() bool { return false }

func (webWriter) Begin(b []byte, _ int, _ uint64, _ session.Kind) []byte {
	return append(b, make([]byte, webEventHead)...)
}

// End writes the chunk-size line and the frame header in front of the event b[start:], moving
// it up over what the chunk-size line did not use, and ends the chunk.
func (webWriter) End(b []byte, start int) []byte {
	n := len(b) - start
	at := start - webEventHead
	to := at + len(appendWebFrameHead(b[at:at], 0, n))
	copy(b[to:], b[start:start+n])
	return append(b[:to+n], '\r', '\n')
}

func (webWriter) headroom() int { return 0 }

func (webWriter) frame(b []byte) []byte { return b }

func (w webWriter) writeBatch(b *[]byte) error {
	err := w.write(*b)
	putBuf(b)
	if err != nil {
		return errors.Join(errWriteFailed, err)
	}
	return nil
}

// webTrailer is the end of a gRPC-Web response on the socket: the trailer frame (the status, as
// the package writes it from grpc-go's trailers) in a chunk, then the last chunk.
func webTrailer(err error) []byte {
	st := status.Convert(err)
	t := "grpc-status: " + strconv.Itoa(int(st.Code())) + "\r\n"
	if m := st.Message(); m != "" {
		t += "grpc-message: " + encodeGrpcMessage(m) + "\r\n"
	}
	b := append(appendWebFrameHead(nil, 0x80, len(t)), t...)
	return append(b, "\r\n0\r\n\r\n"...)
}

// appendWebFrameHead appends the chunk-size line of a chunk holding one gRPC-Web frame of n
// payload bytes, and the frame's header: its flag (0 data, 0x80 trailers) and length (BE32).
func appendWebFrameHead(b []byte, flag byte, n int) []byte {
	b = strconv.AppendUint(b, uint64(5+n), 16)
	b = append(b, '\r', '\n', flag, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(n))
	return b
}

// writeWebStatus ends a request that did not become a stream through the package's wrapper, as
// grpc-go's handler transport does: the headers (200, the gRPC content type), then the status
// as trailers, which the wrapper writes as the gRPC-Web trailer frame.
func writeWebStatus(w http.ResponseWriter, contentType string, err error) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	st := status.Convert(err)
	w.Header().Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	if m := st.Message(); m != "" {
		w.Header().Set("Grpc-Message", encodeGrpcMessage(m))
	}
}

// encodeGrpcMessage percent-encodes a grpc-message value as gRPC does: bytes outside
// printable ASCII, and '%'.
func encodeGrpcMessage(m string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= ' ' && c <= '~' && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(m)+8), m[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return m
	}
	return string(b)
}

// readWebRequest reads a Watch request's body: one gRPC message (flag byte 0, length BE32 of at
// most max bytes, a WatchRequest), then the end of the body. Errors are the status the stream
// ends with: INVALID_ARGUMENT naming "request" for a missing, cut, undecodable or second
// message; RESOURCE_EXHAUSTED for one over max (grpc-go's words); INTERNAL for a compressed or
// unknown payload format (as grpc-go without a compressor); a read error as is.
func readWebRequest(body io.Reader, max int) (*meshcastv1.WatchRequest, error) {
	var h [5]byte
	switch n, err := io.ReadFull(body, h[:]); {
	case err == io.EOF:
		return nil, &session.InvalidError{Field: "request", Msg: "missing: the stream ended before the first WatchRequest"}
	case err == io.ErrUnexpectedEOF:
		return nil, &session.InvalidError{Field: "request", Msg: fmt.Sprintf("the body ended inside a message header (%d of 5 bytes)", n)}
	case err != nil:
		return nil, err
	}
	switch h[0] {
	case 0:
	case 1:
		return nil, status.Error(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
	default:
		return nil, status.Errorf(codes.Internal, "grpc: received unexpected payload format %d", h[0])
	}
	size := binary.BigEndian.Uint32(h[1:])
	if uint64(size) > uint64(max) {
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, max)
	}
	msg := make([]byte, size)
	if n, err := io.ReadFull(body, msg); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, &session.InvalidError{Field: "request", Msg: fmt.Sprintf("the body ended inside the message (%d of %d bytes)", n, size)}
		}
		return nil, err
	}
	var one [1]byte
	switch n, err := io.ReadFull(body, one[:]); {
	case n > 0:
		return nil, &session.InvalidError{Field: "request", Msg: "Watch takes one WatchRequest: the body goes on after it"}
	case err != io.EOF:
		return nil, err
	}
	req := new(meshcastv1.WatchRequest)
	if err := proto.Unmarshal(msg, req); err != nil {
		return nil, &session.InvalidError{Field: "request", Msg: "not a WatchRequest: " + err.Error()}
	}
	return req, nil
}

// grpcTimeout parses a grpc-timeout header (1-8 digits and a unit: H, M, S, m, u, n) as grpc-go
// does (hours clamped to the largest duration): 0 without one. One that does not parse is
// INTERNAL "malformed grpc-timeout" (grpc-go's status for it).
func grpcTimeout(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	bad := status.Errorf(codes.Internal, "malformed grpc-timeout: %q", truncate(v, 16))
	if len(v) < 2 || len(v) > 9 {
		return 0, bad
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil {
		return 0, bad
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, bad
	}
	if n > uint64(math.MaxInt64/unit) {
		return math.MaxInt64, nil
	}
	d := time.Duration(n) * unit
	if d <= 0 {
		d = time.Nanosecond // passed already: the stream ends at once
	}
	return d, nil
}
