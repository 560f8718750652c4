package transport

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
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

	// The reader moves the session; an invalid move ends the stream with its error. It exits
	// when the stream ends (RecvMsg fails once the handler has returned).
	var (
		mu      sync.Mutex
		moveErr error
	)
	go func() {
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
	rs.end(err)
	return grpcError(err)
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

// sendFrames sends every frame of the session as its pre-encoded protobuf bytes until Next or a
// send fails, or the rider is found too slow (see stallWatch and sendQueue).
func (s *Server) sendFrames(rs *stream, st grpc.ServerStream) error {
	var (
		buf []session.Frame
		msg rawMessage
	)
	q := newSendQueue(connFrom(st.Context()), s.o.SendBuffer) // gRPC-Web on HTTP/1.1 only
	var wd *stallWatch
	if q == nil && rs.transport == nameGRPC {
		wd = newStallWatch(st, s.o.WriteTimeout)
		defer wd.stop()
	}
	for {
		frames, err := rs.sess.Next(rs.ctx, buf)
		if err != nil {
			return err
		}
		if q.full() {
			return session.ErrTooSlow
		}
		wd.arm()
		for i := range frames {
			msg.b = frames[i].Proto
			if err := st.SendMsg(&msg); err != nil {
				if wd.fired() {
					return session.ErrTooSlow
				}
				return err
			}
		}
		if !wd.disarm() {
			return session.ErrTooSlow
		}
		msg.b = nil
		s.m.observeWritten(frames)
		buf = frameBuf(frames)
	}
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

func newStallWatch(st grpc.ServerStream, d time.Duration) *stallWatch {
	sw, ok := grpc.ServerTransportStreamFromContext(st.Context()).(interface {
		WriteStatus(*status.Status) error
	})
	if !ok || d <= 0 {
		return nil
	}
	w := &stallWatch{d: d}
	w.write = func() {
		w.cut.Store(true)
		sw.WriteStatus(status.Convert(grpcError(session.ErrTooSlow)))
	}
	return w
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
