package transport

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
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
	req, err := recvFirst(st)
	if err != nil {
		return grpcError(err)
	}
	sess, release, err := s.newSession(req, 0)
	if err != nil {
		return grpcError(err)
	}
	defer release()
	// Streams wait on the server's stop context; the client going away closes the session.
	defer context.AfterFunc(st.Context(), sess.Close)()
	return grpcError(s.endCause(sendFrames(s.stop, sess, st)))
}

// track serves RiderService.Track: the first request opens the session, every later one moves
// it. A client that half-closes keeps its last area.
func (s *Server) track(st grpc.ServerStream) error {
	req, err := recvFirst(st)
	if err != nil {
		return grpcError(err)
	}
	sess, release, err := s.newSession(req, 0)
	if err != nil {
		return grpcError(err)
	}
	defer release()
	defer context.AfterFunc(st.Context(), sess.Close)()

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
	err = sendFrames(s.stop, sess, st)
	mu.Lock()
	if moveErr != nil {
		err = moveErr
	}
	mu.Unlock()
	return grpcError(s.endCause(err))
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
// send fails.
func sendFrames(ctx context.Context, sess *session.Session, st grpc.ServerStream) error {
	var (
		buf []session.Frame
		msg rawMessage
	)
	for {
		frames, err := sess.Next(ctx, buf)
		if err != nil {
			return err
		}
		for i := range frames {
			msg.b = frames[i].Proto
			if err := st.SendMsg(&msg); err != nil {
				return err
			}
		}
		msg.b = nil
		buf = frameBuf(frames)
	}
}
