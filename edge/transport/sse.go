package transport

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/meshcast/meshcast/edge/session"
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

// appendEvent writes one frame as an SSE event. A heartbeat is also preceded by a comment line,
// the keep-alive that proxies and EventSource ignore.
func appendEvent(b []byte, f *session.Frame) []byte {
	if f.Kind == session.KindHeartbeat {
		b = append(b, ": hb\n"...)
	}
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, f.Seq, 10)
	b = append(b, "\nevent: "...)
	b = append(b, f.Kind.String()...)
	b = append(b, "\ndata: "...)
	b = append(b, f.JSON...)
	return append(b, "\n\n"...)
}

// serveSSE serves GET /v1/sse: text/event-stream with a retry hint, then one event per frame
// (id = seq, event = kind, data = protojson RiderEvent), flushed per batch with a write
// deadline. The stream ends with a comment naming the reason when the session is cut or the
// server stops; EventSource then reconnects with Last-Event-ID and gets a fresh Snapshot.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSONError(w, http.StatusMethodNotAllowed, "invalid_argument", "use GET")
		return
	}
	if !s.requestOriginAllowed(r) {
		writeJSONError(w, http.StatusForbidden, "permission_denied", "origin not allowed: "+truncate(r.Header.Get("Origin"), 64))
		return
	}
	req, err := ParseQuery(r.URL.Query())
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	first, err := lastEventID(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	sess, release, err := s.newSession(req, first)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	defer release()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if o := r.Header.Get("Origin"); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
		h.Add("Vary", "Origin")
	}
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) // the connection may serve another request
	write := func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}

	ctx, cancel := s.streamContext(r.Context())
	defer cancel()
	b := getBuf()
	*b = append(*b, "retry: "...)
	*b = strconv.AppendInt(*b, s.o.SSERetry.Milliseconds(), 10)
	*b = append(*b, "\n\n"...)
	err = write(*b)
	putBuf(b)
	if err != nil {
		return
	}

	var frames []session.Frame
	for {
		frames, err = sess.Next(ctx, frames)
		if err != nil {
			break
		}
		b := getBuf()
		for i := range frames {
			*b = appendEvent(*b, &frames[i])
		}
		err = write(*b)
		putBuf(b)
		if err != nil {
			return // the client is gone or too slow to take the write
		}
		frames = frameBuf(frames)
	}
	switch classify(s.endCause(err)) {
	case kindTooSlow:
		write([]byte(": " + msgTooSlow + "\n\n"))
	case kindStopping:
		write([]byte(": " + msgStopping + "\n\n"))
	}
}
