package transport

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
)

// WebSocket subprotocols (API.md §3).
const (
	SubprotocolJSON  = "meshcast.v1.json"  // text frames: protojson RiderEvents joined by "\n"
	SubprotocolProto = "meshcast.v1.proto" // binary frames: varint length-delimited RiderEvents
)

// wireFormat is how a WebSocket batch is framed.
type wireFormat uint8

const (
	formatJSON wireFormat = iota
	formatProto
)

// pickSubprotocol chooses the first subprotocol the client offers that the server speaks. No
// Sec-WebSocket-Protocol header means JSON (and no subprotocol in the answer); offering only
// unknown ones is an invalid argument, refused with 400 before the upgrade.
func pickSubprotocol(h http.Header) (name string, f wireFormat, err error) {
	offered := false
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			offered = true
			switch p {
			case SubprotocolJSON:
				return p, formatJSON, nil
			case SubprotocolProto:
				return p, formatProto, nil
			}
		}
	}
	if offered {
		return "", 0, &session.InvalidError{Field: "Sec-WebSocket-Protocol",
			Msg: "no supported subprotocol offered (want " + SubprotocolJSON + " or " + SubprotocolProto + ")"}
	}
	return "", formatJSON, nil
}

// bufPool holds the buffers WebSocket and SSE batches are assembled in: one write per batch,
// and no buffer kept by an idle rider.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // a big snapshot: let it go
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// appendBatch frames a batch in the subprotocol's format.
func appendBatch(b []byte, f wireFormat, frames []session.Frame) []byte {
	for i := range frames {
		if f == formatJSON {
			if i > 0 {
				b = append(b, '\n')
			}
			b = append(b, frames[i].JSON...)
		} else {
			b = protowire.AppendBytes(b, frames[i].Proto)
		}
	}
	return b
}

// serveWebSocket serves GET /v1/ws: the query is checked and the session opened before the
// upgrade, so bad requests get HTTP 400 (and bus trouble 503) as JSON.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
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
	sub, format, err := pickSubprotocol(r.Header)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	if !isUpgrade(r) {
		writeJSONError(w, http.StatusUpgradeRequired, "invalid_argument", "a WebSocket upgrade is required")
		return
	}
	sess, release, err := s.newSession(req, 0)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	defer release()

	opts := &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled}
	if sub != "" {
		opts.Subprotocols = []string{sub}
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept wrote the answer
	}
	if !s.trackWS(c) {
		c.Close(closeGoingAway, msgStopping)
		return
	}
	defer s.untrackWS(c)
	c.SetReadLimit(int64(s.o.MaxMessageBytes))
	s.runWebSocket(c, sess, format)
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// trackWS records an open connection for Shutdown; false when shutting down.
func (s *Server) trackWS(c *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	s.ws[c] = struct{}{}
	return true
}

func (s *Server) untrackWS(c *websocket.Conn) {
	s.mu.Lock()
	delete(s.ws, c)
	s.mu.Unlock()
}

// runWebSocket pumps the session's frames to c while a reader applies the client's moves, then
// closes c with the code for what ended the stream.
func (s *Server) runWebSocket(c *websocket.Conn, sess *session.Session, format wireFormat) {
	ctx, cancel := s.streamContext(context.Background())
	defer cancel()

	// The reader owns reads; its context is never cancelled (that would drop the connection
	// before a close frame could be sent): it ends when the connection closes.
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readErr = readMoves(c, sess)
		cancel()
	}()

	typ := websocket.MessageText
	if format == formatProto {
		typ = websocket.MessageBinary
	}
	var (
		frames []session.Frame
		err    error
	)
	for {
		frames, err = sess.Next(ctx, frames)
		if err != nil {
			break
		}
		if err = s.writeBatch(c, typ, format, frames); err != nil {
			break
		}
		frames = frameBuf(frames)
	}

	// Decide how to close: the reader's error wins when it ended the stream.
	select {
	case <-readDone:
		err = readErr
	default:
	}
	switch {
	case websocket.CloseStatus(err) != -1, errors.Is(err, errWriteFailed):
		c.CloseNow() // the client closed, or the write timed out and closed the connection
	case errors.Is(err, errReadFailed):
		c.CloseNow()
	case isReadLimit(err):
		c.CloseNow() // the library already sent 1009
	default:
		code, reason := wsClose(s.endCause(err))
		c.Close(code, reason)
	}
	<-readDone
}

var (
	errWriteFailed = errors.New("websocket write failed")
	errReadFailed  = errors.New("websocket read failed")
)

func isReadLimit(err error) bool { return errors.Is(err, websocket.ErrMessageTooBig) }

// writeBatch writes one batch as one message within the write timeout. A timeout closes the
// connection (coder/websocket does that when the write's context ends).
func (s *Server) writeBatch(c *websocket.Conn, typ websocket.MessageType, f wireFormat, frames []session.Frame) error {
	b := getBuf()
	*b = appendBatch(*b, f, frames)
	ctx, cancel := context.WithTimeout(context.Background(), s.o.WriteTimeout)
	err := c.Write(ctx, typ, *b)
	cancel()
	putBuf(b)
	if err != nil {
		return errors.Join(errWriteFailed, err)
	}
	return nil
}

// readMoves reads client messages until the connection fails: each must be a text frame holding
// a protojson WatchRequest, which moves the session. It returns the error to close with:
// *session.InvalidError for a bad message (1008), the read error otherwise.
func readMoves(c *websocket.Conn, sess *session.Session) error {
	for {
		typ, data, err := c.Read(context.Background())
		if err != nil {
			if websocket.CloseStatus(err) != -1 || isReadLimit(err) {
				return err
			}
			return errors.Join(errReadFailed, err)
		}
		if typ != websocket.MessageText {
			return &session.InvalidError{Field: "message", Msg: "binary frames are not accepted: send a protojson WatchRequest as text"}
		}
		req := new(meshcastv1.WatchRequest)
		if err := protojson.Unmarshal(data, req); err != nil {
			return &session.InvalidError{Field: "message", Msg: "not a protojson WatchRequest"}
		}
		if err := sess.Move(req); err != nil {
			return err
		}
	}
}
