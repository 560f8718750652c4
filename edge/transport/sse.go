package transport

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// lastEventID reads where a reconnecting EventSource left off: the Last-Event-ID header, or the
// lastEventId query parameter (for clients that cannot set headers). It returns the first seq of
// the new stream: 1 without either, else the id + 1.
func lastEventID(r *http.Request) (uint64, error) {
	v := r.Header.Get("Last-Event-ID")
	field := "Last-Event-ID"
	if v == "" {
		v, _, _ = single(r.URL.Query(), "lastEventId")
		field = "lastEventId"
	}
	if v == "" {
		return 1, nil
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == math.MaxUint64 {
		return 0, &session.InvalidError{Field: field, Msg: strconv.Quote(truncate(v, 32)) + " is not an event id"}
	}
	return id + 1, nil
}

// sseWriter is the SSE adapter of the send pump: each event is an SSE event (id = seq, event =
// kind, data = its protojson RiderEvent on one line); a heartbeat is also preceded by a comment
// line, the keep-alive that proxies and EventSource ignore. A batch is one write.
type sseWriter struct{ write func([]byte) error }

func (sseWriter) JSON() bool { return true }

func (sseWriter) Begin(b []byte, _ int, seq uint64, k session.Kind) []byte {
	if k == session.KindHeartbeat {
		b = append(b, ": hb\n"...)
	}
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\nevent: "...)
	b = append(b, k.String()...)
	return append(b, "\ndata: "...)
}

func (sseWriter) End(b []byte, _ int) []byte { return append(b, "\n\n"...) }

func (sseWriter) headroom() int { return 0 }

func (sseWriter) frame(b []byte) []byte { return b }

func (w sseWriter) writeBatch(b *[]byte) error {
	err := w.write(*b)
	putBuf(b)
	if err != nil {
		return errors.Join(errWriteFailed, err) // the client is gone or too slow to take the write
	}
	return nil
}

// serveSSE serves GET /v1/sse: text/event-stream with a retry hint, then one event per frame
// (id = seq, event = kind, data = protojson RiderEvent), one write per batch with a write
// deadline. The stream ends after a comment naming the reason when the session is cut or the
// server stops; EventSource then reconnects with Last-Event-ID and gets a fresh Snapshot.
//
// On HTTP/1.x the connection is hijacked once the request is accepted: the response is a
// Connection: close stream written straight to the socket by a goroutine of its own (net/http's
// connection goroutine, buffers and request go), and a second goroutine reads the socket to
// notice the client leaving. Elsewhere (HTTP/2 behind a TLS front) the ResponseWriter is used.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	req, ok := s.streamRequest(w, r)
	if !ok {
		return
	}
	first, err := lastEventID(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	rs, err := s.newSession(req, first, httpClient(r, nameSSE))
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	sess := rs.sess
	origin := r.Header.Get("Origin")
	if r.ProtoMajor == 1 {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			// Bytes the client sent after its request are ignored: it has nothing to say.
			if !s.trackConn(conn, func() { conn.Close() }) {
				conn.Close()
				rs.end(errStopping)
				return
			}
			go s.runSSE(conn, rs, origin)
			return
		}
	}
	h := w.Header()
	sseHeaders(func(k, v string) { h.Set(k, v) }, origin)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) // the connection may serve another request
	stopAfter := context.AfterFunc(r.Context(), sess.Close)
	err = s.pumpSSE(rs, nil, nil, func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	})
	stopAfter()
	rs.end(err)
}

// streamRequest is the HTTP prelude WebSocket and SSE share: a CORS preflight is answered, any
// method but GET refused, the Origin checked and the query parsed into the WatchRequest. false:
// the answer was written.
func (s *Server) streamRequest(w http.ResponseWriter, r *http.Request) (*meshcastv1.WatchRequest, bool) {
	if r.Method == http.MethodOptions {
		s.preflight(w, r)
		return nil, false
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, OPTIONS")
		writeJSONError(w, http.StatusMethodNotAllowed, "invalid_argument", "use GET")
		return nil, false
	}
	if !s.requestOriginAllowed(r) {
		writeJSONError(w, http.StatusForbidden, "permission_denied", "origin not allowed: "+truncate(r.Header.Get("Origin"), 64))
		return nil, false
	}
	q, err := requestQuery(r)
	if err != nil {
		writeHTTPError(w, err)
		return nil, false
	}
	req, err := ParseQuery(q)
	if err != nil {
		writeHTTPError(w, err)
		return nil, false
	}
	return req, true
}

// sseHeaders sets the response headers of an event stream.
func sseHeaders(set func(k, v string), origin string) {
	set("Content-Type", "text/event-stream")
	set("Cache-Control", "no-cache")
	set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if origin != "" {
		set("Access-Control-Allow-Origin", origin)
		set("Vary", "Origin")
	}
}

// runSSE serves an event stream on a hijacked HTTP/1.x connection, then closes it and ends the
// stream. On TCP the batches are written directly (direct.go): this goroutine writes the head
// and the snapshot and returns once the rider is idle; without TCP it pumps until the end.
func (s *Server) runSSE(conn net.Conn, rs *stream, origin string) {
	readDone := make(chan struct{})
	go readHangUp(conn, rs.sess, readDone)
	finish := func(err error) { s.endHijacked(conn, readDone, rs, err) }
	head := []byte("HTTP/1.1 200 OK\r\n")
	sseHeaders(func(k, v string) { head = append(append(append(append(head, k...), ": "...), v...), "\r\n"...) }, origin)
	head = append(head, "Connection: close\r\n\r\n"...)
	q := newSendQueue(conn, s.o.SendBuffer, s.o.WriteTimeout)
	sw := newSockWriter(conn, s.o.WriteTimeout)
	write := sw.write
	if sw.rc == nil {
		finish(s.pumpSSE(rs, head, q, write))
		return
	}
	if err := s.sseStart(head, write); err != nil {
		finish(err)
		return
	}
	s.startDirect(rs, sseWriter{write}, sw, q, func(err error) { finish(s.sseEnd(rs, err, write)) })
}

// readHangUp is the reader of a stream on a hijacked connection (SSE, gRPC-Web): it drops what
// the client sends until the read fails (the client left, or the stream closed the connection),
// then closes the session and done.
func readHangUp(conn net.Conn, sess *session.Session, done chan<- struct{}) {
	defer close(done)
	var b [64]byte
	for {
		if _, err := conn.Read(b[:]); err != nil {
			break
		}
	}
	sess.Close()
}

// endHijacked ends a stream on a hijacked connection: it closes the connection, waits for its
// reader (readHangUp), forgets the connection and ends the stream with err.
func (s *Server) endHijacked(conn net.Conn, readDone <-chan struct{}, rs *stream, err error) {
	conn.Close()
	<-readDone
	s.untrackConn(conn)
	rs.end(err)
}

// pumpSSE writes the retry hint (after head), then the session's frames, until Next or a write
// fails or q is full; then, for a cut rider or a stream told to go away, a comment naming the
// reason. It returns what ended the stream.
func (s *Server) pumpSSE(rs *stream, head []byte, q *sendQueue, write func([]byte) error) error {
	if err := s.sseStart(head, write); err != nil {
		return err
	}
	return s.sseEnd(rs, s.pump(rs, sseWriter{write}, q), write)
}

// sseStart writes head and the retry hint.
func (s *Server) sseStart(head []byte, write func([]byte) error) error {
	b := getBuf()
	*b = append(*b, head...)
	*b = append(*b, "retry: "...)
	*b = strconv.AppendInt(*b, s.o.SSERetry.Milliseconds(), 10)
	*b = append(*b, "\n\n"...)
	err := write(*b)
	putBuf(b)
	if err != nil {
		return errors.Join(errWriteFailed, err)
	}
	return nil
}

// sseEnd writes, for a cut rider or a stream told to go away, a comment naming the reason, and
// returns what ended the stream.
func (s *Server) sseEnd(rs *stream, err error, write func([]byte) error) error {
	if errors.Is(err, errWriteFailed) {
		return err
	}
	err = rs.endCause(err)
	switch classify(err) {
	case kindTooSlow:
		write([]byte(": " + msgTooSlow + "\n\n"))
	case kindStopping:
		write([]byte(": " + stoppingMsg(err) + "\n\n"))
	}
	return err
}

// httpClient describes a WebSocket or SSE request's client for admission: the token from the
// Authorization header or the access_token query parameter.
func httpClient(r *http.Request, transport string) client {
	tok := bearer(r.Header.Get("Authorization"))
	if tok == "" {
		tok = r.URL.Query().Get("access_token")
	}
	return client{transport: transport, remote: r.RemoteAddr, header: r.Header.Get, token: tok, requestID: ops.RequestID(r.Context())}
}
