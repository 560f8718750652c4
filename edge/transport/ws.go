package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protojson"
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

// bufPool holds the buffers batches are encoded in (every transport), taken when a batch is
// ready and returned once it is written: no buffer kept by an idle rider.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // a big snapshot: let it go
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// wsWriter is the WebSocket adapter of the send pump: a batch is one message, its events joined
// by "\n" (meshcast.v1.json) or each prefixed with its varint length (meshcast.v1.proto).
type wsWriter struct {
	c       *websocket.Conn
	conn    net.Conn
	typ     websocket.MessageType
	proto   bool
	timeout time.Duration
}

func newWSWriter(c *websocket.Conn, conn net.Conn, f wireFormat, timeout time.Duration) *wsWriter {
	w := &wsWriter{c: c, conn: conn, typ: websocket.MessageText, timeout: timeout}
	if f == formatProto {
		w.typ, w.proto = websocket.MessageBinary, true
	}
	return w
}

func (w *wsWriter) JSON() bool { return !w.proto }

func (w *wsWriter) Begin(b []byte, i int, _ uint64, _ session.Kind) []byte {
	if w.proto {
		return append(b, 0) // the length's first byte (endVarintPrefixed)
	}
	if i > 0 {
		b = append(b, '\n')
	}
	return b
}

func (w *wsWriter) End(b []byte, start int) []byte {
	if w.proto {
		return endVarintPrefixed(b, start)
	}
	return b
}

// writeBatch writes one batch as one message within the write timeout, set as the socket's
// write deadline (no context per write); a write that times out fails and the caller drops the
// connection. The frameWriter under the library's buffer makes the message one system call.
func (w *wsWriter) writeBatch(b *[]byte) error {
	w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	err := w.c.Write(context.Background(), w.typ, *b)
	putBuf(b)
	if err != nil {
		return errors.Join(errWriteFailed, err)
	}
	return nil
}

// serveWebSocket serves GET /v1/ws: the query is checked and the session opened before the
// upgrade, so bad requests get HTTP 400 (and bus trouble 503) as JSON.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	req, ok := s.streamRequest(w, r)
	if !ok {
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
	rs, err := s.newSession(req, 0, httpClient(r, nameWS))
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	opts := &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled}
	if sub != "" {
		opts.Subprotocols = []string{sub}
	}
	hj := &smallBuffers{ResponseWriter: w, timeout: s.o.WriteTimeout}
	c, err := websocket.Accept(hj, r, opts)
	if err != nil {
		rs.end(err)
		return // Accept wrote the answer
	}
	if !s.trackConn(c, func() { c.CloseNow() }) {
		c.Close(closeGoingAway, msgStopping)
		rs.end(errStopping)
		return
	}
	c.SetReadLimit(-1) // readMoves applies MaxMessageBytes, to close with 1008 as API.md says
	// The handler returns at once: net/http's goroutine (its stack grown by the handshake), the
	// request and the response go, and the stream lives on in coder/websocket's reader and,
	// while it has something to write that does not go at once, a writer (direct.go).
	rw := hj.rw
	go s.runWebSocket(c, hj.sw, rw.waitReadable, rs, format, s.o.MaxMessageBytes)
}

// Buffer sizes of a WebSocket connection. net/http hands a hijacked connection over with 4 KiB
// read and write buffers, which coder/websocket keeps for the connection's life; an idle rider
// needs far less. Client frames are small (moves, control frames). The write buffer only has to
// take a frame header: a frameWriter under it makes every frame one system call whatever its
// size (bufio needs at least 16 bytes to be of use; a header is at most 14).
const (
	wsReadBuffer  = 128
	wsWriteBuffer = 16
)

// smallBuffers is a ResponseWriter whose Hijack returns small buffers (see wsReadBuffer) and
// keeps the connection (for write deadlines).
type smallBuffers struct {
	http.ResponseWriter
	timeout time.Duration
	sw      *sockWriter // the hijacked connection's writer
	rw      readWait    // what the rider's reader waits on between messages
}

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.sw = newSockWriter(c, w.timeout)
	w.rw.rc = w.sw.rc
	br := bufio.NewReaderSize(c, wsReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent after its request, before the answer: they must be in the
		// buffer handed over (coder/websocket replaces the reader under it with the socket,
		// keeping only what is buffered), and they are then out of waitReadable's sight.
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), c), max(n, wsReadBuffer))
		br.Peek(n)
		w.rw.rc = nil
	}
	w.rw.br = br
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(&frameWriter{s: w.sw}, wsWriteBuffer)), nil
}

// readWait is what a WebSocket rider's reader waits on between client messages: the socket and
// the buffers above it. It is kept apart from smallBuffers, which holds net/http's response (and
// through it the request and net/http's 4 KiB buffers) for as long as it lives.
// (The listener's sniffedConn replays at most an HTTP/2 preface's length, which net/http's first
// read takes whole: by the upgrade nothing is left above the socket but what brw held.)
type readWait struct {
	rc syscall.RawConn // nil: not a plain TCP connection, or bytes came with the request
	br *bufio.Reader   // coder/websocket's read buffer
}

// waitReadable returns once the connection has something to read (or failed): at once when
// bytes are buffered above the socket, otherwise when the socket is readable, found by peeking
// at it. The rider's reader waits here between client messages rather than inside
// coder/websocket's Reader, whose call chain grows a goroutine's stack to 8 KiB: an idle
// rider's reader stays on its first 2 KiB. Without a plain TCP socket it returns at once (the
// reader then waits in Reader).
func (w *readWait) waitReadable() error {
	rc := w.rc
	if rc == nil || w.br.Buffered() > 0 {
		return nil
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN // data, the end, or an error: Reader sees which
	})
}

func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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

// runWebSocket streams the session's batches to c while a reader applies the client's moves,
// then closes c with the code for what ended the stream and ends the stream. On a TCP
// connection the batches are written directly (direct.go): this goroutine writes the snapshot
// and returns once the rider is idle; without TCP it pumps until the end.
func (s *Server) runWebSocket(c *websocket.Conn, sw *sockWriter, wait func() error, rs *stream, format wireFormat, maxMsg int) {
	sess := rs.sess
	conn := sw.conn
	// The reader owns reads (never cancelled: that would drop the connection before a close
	// frame could be sent). When it fails it publishes why, then closes the session, which ends
	// the writer.
	var readErr error
	readDone := make(chan struct{})
	go func() {
		readErr = readMoves(c, wait, sess, maxMsg)
		close(readDone)
		sess.Close()
	}()
	finish := func(err error) {
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
		default:
			// A stalled rider (ErrTooSlow) is closed with 4008, while the socket has room for it.
			err = rs.endCause(err)
			code, reason := wsClose(err)
			c.Close(code, reason) // frameWriter sets the write deadline
		}
		<-readDone
		s.untrackConn(c)
		rs.end(err)
	}
	w := newWSWriter(c, conn, format, s.o.WriteTimeout)
	q := newSendQueue(conn, s.o.SendBuffer, s.o.WriteTimeout)
	if sw.rc != nil {
		s.startDirect(rs, w, sw, q, finish)
		return
	}
	finish(s.pump(rs, w, q))
}

var (
	errWriteFailed = errors.New("write failed")
	errReadFailed  = errors.New("websocket read failed")
)

// readMoves reads client messages until the connection fails: each must be a text frame of at
// most maxMsg bytes holding a protojson WatchRequest, which moves the session. Before each it
// calls wait (waitReadable). It returns the error to close with: *session.InvalidError for a bad
// message (1008, with what is wrong), the read error otherwise.
func readMoves(c *websocket.Conn, wait func() error, sess *session.Session, maxMsg int) error {
	for {
		if err := wait(); err != nil {
			return errors.Join(errReadFailed, err)
		}
		typ, data, err := readMessage(c, maxMsg)
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			return &session.InvalidError{Field: "message", Msg: "binary frames are not accepted: send a protojson WatchRequest as text"}
		}
		req := new(meshcastv1.WatchRequest)
		if err := protojson.Unmarshal(data, req); err != nil {
			return &session.InvalidError{Field: "message", Msg: "not a protojson WatchRequest: " + protojsonReason(err)}
		}
		if err := sess.Move(req); err != nil {
			return err
		}
	}
}

// readMessage reads one client message of at most maxMsg bytes; a bigger one is an
// *session.InvalidError (closed with 1008, as API.md says for anything else than a move).
func readMessage(c *websocket.Conn, maxMsg int) (websocket.MessageType, []byte, error) {
	typ, r, err := c.Reader(context.Background())
	if err != nil {
		if websocket.CloseStatus(err) != -1 {
			return 0, nil, err
		}
		return 0, nil, errors.Join(errReadFailed, err)
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(maxMsg)+1))
	if err != nil {
		if websocket.CloseStatus(err) != -1 {
			return 0, nil, err
		}
		return 0, nil, errors.Join(errReadFailed, err)
	}
	if len(data) > maxMsg {
		return 0, nil, &session.InvalidError{Field: "message", Msg: "over " + strconv.Itoa(maxMsg) + " bytes"}
	}
	return typ, data, nil
}

// protojsonReason is what protojson found wrong, without its "proto: " prefix and the
// non-breaking spaces it puts in messages to keep them from being parsed.
func protojsonReason(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	msg = strings.TrimPrefix(strings.TrimSpace(msg), "proto:")
	return strings.TrimSpace(msg)
}
