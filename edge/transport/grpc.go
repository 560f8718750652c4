package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// riderServiceDesc is the generated RiderService description with handlers that send the
// sessions' pre-encoded frames (rawMessage) instead of RiderEvent messages. Names and metadata
// stay the generated ones, so reflection describes the service as usual.
func (s *Server) riderServiceDesc() *grpc.ServiceDesc {
	d := meshcastv1.RiderService_ServiceDesc
	d.HandlerType = (*any)(nil)
	d.Streams = append([]grpc.StreamDesc(nil), d.Streams...)
	for i := range d.Streams {
		switch d.Streams[i].StreamName {
		case "Watch":
			d.Streams[i].Handler = func(_ any, st grpc.ServerStream) error { return s.watch(st) }
		case "Track":
			d.Streams[i].Handler = func(_ any, st grpc.ServerStream) error { return s.track(st) }
		default:
			panic("transport: unknown RiderService stream " + d.Streams[i].StreamName)
		}
	}
	return &d
}

// watch serves RiderService.Watch: one request, then the session's frames until the client
// goes away, the session is cut or the server stops.
func (s *Server) watch(st grpc.ServerStream) error {
	rs, err := s.openGRPC(st)
	if err != nil {
		return grpcError(err)
	}
	// The stream waits on its own context (max age, drain, stop); the client going away closes
	// the session.
	stopAfter := context.AfterFunc(st.Context(), rs.sess.Close)
	err = clientGone(st, rs.endCause(s.sendFrames(rs, st)))
	stopAfter()
	rs.end(err)
	return grpcError(err)
}

// clientGone reports a stream whose client went away as context.Canceled, whatever error the
// last send happened to return. A stream the server ended itself (stopping, or cut as too slow:
// stallWatch cancels the stream's context) keeps its cause.
func clientGone(st grpc.ServerStream, err error) error {
	if err != nil && st.Context().Err() != nil {
		if k := classify(err); k != kindStopping && k != kindTooSlow {
			return context.Canceled
		}
	}
	return err
}

// grpcClient describes a gRPC or gRPC-Web stream's client for admission.
func grpcClient(ctx context.Context) client {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return strings.Join(v, ",")
		}
		return ""
	}
	c := client{transport: nameGRPC, header: get, token: bearer(get("authorization")), requestID: ops.RequestID(ctx)}
	if get(transportHeader) == nameGRPCWeb {
		c.transport = nameGRPCWeb
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.remote = p.Addr.String()
	}
	return c
}

// bearer returns the token of an "authorization: Bearer <token>" value, "" for anything else.
func bearer(authorization string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// track serves RiderService.Track: the first request opens the session, every later one moves
// it. A client that half-closes keeps its last area.
func (s *Server) track(st grpc.ServerStream) error {
	rs, err := s.openGRPC(st)
	if err != nil {
		return grpcError(err)
	}
	sess := rs.sess
	stopAfter := context.AfterFunc(st.Context(), sess.Close)

	// The reader moves the session; an invalid move ends the stream with its error. It is
	// joined before the handler returns: see endStream.
	var (
		mu      sync.Mutex
		moveErr error
	)
	readerDone := make(chan struct{})
	trackReaders.Add(1)
	go func() {
		defer func() { trackReaders.Add(-1); close(readerDone) }()
		for {
			m, err := recvRequest(st)
			if errors.Is(err, io.EOF) {
				return // half-close: keep streaming the last area
			}
			if err == nil {
				err = sess.Move(m)
			}
			if err != nil {
				mu.Lock()
				moveErr = err
				mu.Unlock()
				sess.Close() // ends sendFrames, which then reports moveErr
				return
			}
		}
	}()
	err = s.sendFrames(rs, st)
	mu.Lock()
	if moveErr != nil {
		err = moveErr
	}
	mu.Unlock()
	stopAfter()
	err = clientGone(st, rs.endCause(err))
	gerr := grpcError(err)
	endStream(st, gerr, readerDone)
	select {
	case <-readerDone:
	default:
		trackUnjoined.Add(1)
	}
	rs.end(err)
	return gerr
}

// trackReaders counts Track's reader goroutines alive, trackUnjoined the Track handlers that
// returned with their reader still running (tests).
var trackReaders, trackUnjoined atomic.Int64

// endStream joins a stream's reader, which may be blocked in RecvMsg: it ends the stream with its
// status first (WriteStatus, the call grpc-go makes when a handler returns, and then ignores
// the handler's), which cancels the stream and so ends the RecvMsg. Without WriteStatus (see
// newStallWatch) the reader ends once the handler has returned.
func endStream(st grpc.ServerStream, gerr error, readerDone <-chan struct{}) {
	select {
	case <-readerDone:
		return // a half-close or a bad move ended it
	default:
	}
	ts, ok := grpc.ServerTransportStreamFromContext(st.Context()).(interface {
		WriteStatus(*status.Status) error
	})
	if !ok {
		return
	}
	ts.WriteStatus(status.Convert(gerr))
	<-readerDone
}

// openGRPC admits a gRPC or gRPC-Web stream from its metadata (auth, limits: before anything
// waits on the request), then receives its first request (bounded by the first-request timer,
// see firstRequest) and opens the session.
func (s *Server) openGRPC(st grpc.ServerStream) (*stream, error) {
	web := webRequestFrom(st.Context())
	rs, err := s.admit(grpcClient(st.Context()))
	if err != nil {
		web.abandon()
		return nil, err
	}
	req, err := recvFirst(st)
	if err != nil && web != nil && web.fired.Load() {
		err = web.err()
	}
	if err == nil {
		err = rs.open(req, 0)
	}
	if err != nil {
		web.abandon()
		rs.end(nil)
		return nil, err
	}
	return rs, nil
}

// recvFirst receives the request that opens a stream.
func recvFirst(st grpc.ServerStream) (*meshcastv1.WatchRequest, error) {
	req, err := recvRequest(st)
	if errors.Is(err, io.EOF) {
		return nil, &session.InvalidError{Field: "request", Msg: "missing: the stream ended before the first WatchRequest"}
	}
	return req, err
}

// recvRequest receives one WatchRequest; bytes that do not decode are an *session.InvalidError.
// A stream that ends before its first request also gets INVALID_ARGUMENT.
func recvRequest(st grpc.ServerStream) (*meshcastv1.WatchRequest, error) {
	var raw rawRequest
	if err := st.RecvMsg(&raw); err != nil {
		return nil, err
	}
	req := new(meshcastv1.WatchRequest)
	if err := proto.Unmarshal(raw.b, req); err != nil {
		return nil, &session.InvalidError{Field: "request", Msg: "not a WatchRequest: " + err.Error()}
	}
	return req, nil
}

// sendFrames sends the session's events, each one message, until NextBatch or a send fails, or
// the rider is found too slow (see stallWatch and sendQueue).
func (s *Server) sendFrames(rs *stream, st grpc.ServerStream) error {
	w := &grpcWriter{st: st, web: webRequestFrom(st.Context())}
	q := newSendQueue(connFrom(st.Context()), s.o.SendBuffer, s.o.WriteTimeout) // gRPC-Web on HTTP/1.1 only
	if q == nil && rs.transport == nameGRPC {
		wd, err := newStallWatch(st, s.o.WriteTimeout)
		if err != nil {
			s.o.Logger.Error("transport: a stalled gRPC stream cannot be cut", "err", err)
			s.m.stallWatchOff.Inc()
		}
		w.wd = wd
		defer wd.stop()
	}
	return s.pump(rs, w, q)
}

// grpcWriter is the gRPC adapter of the send pump (native gRPC, and gRPC-Web through grpc-go):
// each event is one message. The batch moves into a buffer of grpc-go's own pool (mem.Copy: of
// the batch's size class, so a stalled stream's queued messages pin no more than their batches)
// and each message is sent as a view of it: grpc-go holds the views until its transport has
// written them, and the last release returns the buffer to grpc-go's pool.
type grpcWriter struct {
	st    grpc.ServerStream
	wd    *stallWatch
	web   *webRequest // gRPC-Web: a batch's messages are flushed once
	first int         // where the batch's first message starts
	ends  []int       // where each message ends
	msg   rawMessage
}

func (w *grpcWriter) JSON() bool { return false }

func (w *grpcWriter) Begin(b []byte, i int, _ uint64, _ session.Kind) []byte {
	if i == 0 {
		w.first, w.ends = len(b), w.ends[:0]
	}
	return b
}

func (w *grpcWriter) End(b []byte, _ int) []byte {
	w.ends = append(w.ends, len(b))
	return b
}

func (w *grpcWriter) writeBatch(bp *[]byte) error {
	root := mem.Copy(*bp, mem.DefaultBufferPool())
	putBuf(bp)
	defer root.Free()
	w.wd.arm()
	if w.web != nil && w.web.batchFlush.Load() && len(w.ends) > 1 {
		w.web.skipFlushes.Add(int32(len(w.ends) - 1))
	}
	start := w.first
	for _, end := range w.ends {
		w.msg.buf = root.Slice(start, end) // grpc-go's codec takes this reference
		start = end
		if err := w.st.SendMsg(&w.msg); err != nil {
			w.msg.buf = nil
			if w.web != nil {
				w.web.skipFlushes.Store(0) // the stream ends: nothing held back
			}
			if w.wd.fired() {
				return session.ErrTooSlow
			}
			return err
		}
	}
	w.msg.buf = nil
	if !w.wd.disarm() {
		return session.ErrTooSlow
	}
	return nil
}

// stallWatch cuts a native gRPC stream whose send stays blocked for the write timeout. Streams
// share HTTP/2 connections, so a client that stops reading one stream is not visible on the
// socket: it stops granting that stream flow-control window, and grpc-go's SendMsg blocks once
// the window and the stream's write quota are used up. SendMsg cannot be interrupted from the
// handler, so the watch's timer ends the stream from outside with RESOURCE_EXHAUSTED through
// the stream's WriteStatus, the call grpc-go makes when a handler returns: that cancels the
// stream, the blocked SendMsg returns, and the handler's own status is then ignored. The
// trailer reaches the client after the data it has not read. A nil *stallWatch does nothing.
type stallWatch struct {
	d     time.Duration
	t     *time.Timer
	cut   atomic.Bool
	write func()
}

// newStallWatch returns the watch of st, or an error when grpc-go's stream does not offer the
// WriteStatus call the watch relies on (a grpc-go upgrade changed it): then a stalled stream is
// never cut, which the caller reports loudly.
func newStallWatch(st grpc.ServerStream, d time.Duration) (*stallWatch, error) {
	ts := grpc.ServerTransportStreamFromContext(st.Context())
	sw, ok := ts.(interface {
		WriteStatus(*status.Status) error
	})
	if !ok {
		return nil, fmt.Errorf("grpc-go's server stream %T has no WriteStatus", ts)
	}
	if d <= 0 {
		return nil, nil
	}
	w := &stallWatch{d: d}
	w.write = func() {
		w.cut.Store(true)
		sw.WriteStatus(status.Convert(grpcError(session.ErrTooSlow)))
	}
	return w, nil
}

// arm starts the timer before a batch is sent.
func (w *stallWatch) arm() {
	if w == nil {
		return
	}
	if w.t == nil {
		w.t = time.AfterFunc(w.d, w.write)
		return
	}
	w.t.Reset(w.d)
}

// disarm stops the timer after the batch was sent; false when it had already cut the stream.
func (w *stallWatch) disarm() bool {
	if w == nil {
		return true
	}
	return w.t.Stop() || !w.cut.Load()
}

func (w *stallWatch) fired() bool { return w != nil && w.cut.Load() }

func (w *stallWatch) stop() {
	if w != nil && w.t != nil {
		w.t.Stop()
	}
}
