package transport

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Reasons of meshcast_edge_stalled_total: what a cut client had not sent in time.
const (
	stalledFirstBytes   = "first_bytes"      // a connection's first bytes (HTTP/2 preface, first HEADERS)
	stalledGRPCRequest  = "grpc_request"     // a native gRPC stream's request message
	stalledGRPCWebReqst = "grpc_web_request" // a gRPC-Web request's message (its body)
)

// firstRequest bounds the time from a gRPC or gRPC-Web stream's headers to its first request
// message (gRPC-Web over HTTP: to the end of its body): when the timer fires first, its cut ends
// the wait and the stream is answered DEADLINE_EXCEEDED, counted in meshcast_edge_stalled_total.
// Streams are admitted (auth, limits) from their headers, so a stalled one counts against the
// limits while it waits, and is cut within the bound.
//
// The cut: native gRPC streaming calls write the status through the stream's transport (which
// ends the stream and the wait); native unary calls, whose request grpc-go reads before any
// handler, have their context cancelled (stalledCtx: DEADLINE_EXCEEDED); gRPC-Web requests get
// their body's read deadline passed, which fails the read the stream waits on while the status
// can still be written; the grpc-websockets transport gets its request's context cancelled
// until its stream starts.
type firstRequest struct {
	t        *time.Timer
	d        time.Duration
	fired    atomic.Bool     // the bound passed: the stream was cut as stalled
	cutting  atomic.Bool     // the request's reads are being failed on purpose (fired or abandoned)
	parent   context.Context // done: the stream ended by itself, nothing to cut
	untilEOF bool            // gRPC-Web over HTTP: the bound ends with the body, not the first message

	mu  sync.Mutex
	cut func()
}

type (
	firstRequestKey struct{} // native gRPC and grpc-websockets: ended by the first RecvMsg
	webRequestKey   struct{} // gRPC-Web over HTTP: ended by the end of the body
)

// watchFirstRequest starts the bound of a stream (parent: the stream's own context): when it
// fires, cut is called and the stall counted under reason.
func (s *Server) watchFirstRequest(parent context.Context, reason string, cut func()) *firstRequest {
	f := &firstRequest{d: s.o.HandshakeTimeout, parent: parent, cut: cut}
	f.t = time.AfterFunc(f.d, func() {
		if f.parent.Err() != nil {
			return // the stream is over already
		}
		f.cutting.Store(true)
		f.fired.Store(true)
		s.m.stalled.WithLabelValues(reason).Inc()
		f.mu.Lock()
		cut := f.cut
		f.mu.Unlock()
		cut()
	})
	return f
}

// received stops the bound: the first message is complete. False when it had already fired.
func (f *firstRequest) received() bool {
	if f == nil {
		return true
	}
	return f.t.Stop() || !f.fired.Load()
}

func (f *firstRequest) stop() {
	if f != nil {
		f.t.Stop()
	}
}

// err is the error of a stream cut before its request was complete.
func (f *firstRequest) err() error {
	return status.Error(codes.DeadlineExceeded, fmt.Sprintf("request message not complete within %v: cut", f.d))
}

func firstRequestFrom(ctx context.Context) *firstRequest {
	f, _ := ctx.Value(firstRequestKey{}).(*firstRequest)
	return f
}

// stalledCtx is a native gRPC stream's context: cancelled by its first-request bound, it reports
// DeadlineExceeded (so grpc-go answers DEADLINE_EXCEEDED, for unary methods too).
type stalledCtx struct {
	context.Context
	f *firstRequest
}

func (c stalledCtx) Err() error {
	if c.f.fired.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// tap starts the first-request bound of every native gRPC stream (grpc.InTapHandle: called by
// the transport on the stream's headers; the returned context is the stream's, which its reads
// wait on).
func (s *Server) tap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	inner, cancel := context.WithCancel(ctx)
	f := s.watchFirstRequest(ctx, stalledGRPCRequest, cancel)
	return stalledCtx{Context: context.WithValue(inner, firstRequestKey{}, f), f: f}, nil
}

// streamFirstRequest ends the first-request bound when a streaming call's first RecvMsg
// returns, and reports a stream cut by it with DEADLINE_EXCEEDED and the bound. From here the
// cut writes that status through the stream's transport.
func streamFirstRequest(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	f := firstRequestFrom(ss.Context())
	if f == nil {
		return handler(srv, ss)
	}
	defer f.stop()
	if sw, ok := grpc.ServerTransportStreamFromContext(ss.Context()).(interface {
		WriteStatus(*status.Status) error
	}); ok {
		// The status goes first: grpc-go writes its own when a read fails, and the first wins.
		f.mu.Lock()
		then := f.cut
		f.cut = func() { sw.WriteStatus(status.Convert(f.err())); then() }
		f.mu.Unlock()
	}
	return handler(srv, &firstRecvStream{ServerStream: ss, f: f})
}

// unaryFirstRequest ends the bound of a unary call: grpc-go has read its request by now.
func unaryFirstRequest(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	f := firstRequestFrom(ctx)
	if !f.received() {
		return nil, f.err()
	}
	return handler(ctx, req)
}

type firstRecvStream struct {
	grpc.ServerStream
	f    *firstRequest
	done bool
}

func (s *firstRecvStream) RecvMsg(m any) error {
	if s.done {
		return s.ServerStream.RecvMsg(m)
	}
	err := s.ServerStream.RecvMsg(m)
	s.done = true
	if s.f.untilEOF {
		if s.f.fired.Load() {
			return s.f.err()
		}
		return err
	}
	if !s.f.received() {
		return s.f.err()
	}
	return err
}

// webRequest is the first-request bound of a gRPC-Web request (the handler transport has no
// tap). The request's context no longer ends when net/http cancels it for the failed read (a
// cut, or a refusal before the body: abandon), so that the status is still written; it ends
// when the client goes away otherwise, or at release.
type webRequest struct {
	*firstRequest
	rc  *http.ResponseController
	eof atomic.Bool // the body was read to its end
	// skipFlushes is how many of the response's coming flushes to skip (deadlineWriter): a
	// batch's messages are flushed once, after the last (see grpcWriter).
	skipFlushes atomic.Int32
	batchFlush  atomic.Bool // the response is a deadlineWriter, which skips them

	mu       sync.Mutex
	released bool // ServeHTTP returned: the ResponseWriter must not be used any more
}

// failReads passes the body's read deadline, unless the request is over: a stream's handler may
// outlive ServeHTTP (the client went away), and the ResponseWriter is not usable after it.
func (wr *webRequest) failReads() {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if !wr.released {
		wr.rc.SetReadDeadline(time.Now())
	}
}

// webFirstRequest starts the bound of a gRPC-Web request: to the end of its body over HTTP, to
// its first message on the grpc-websockets transport (websocket; also native gRPC served
// through net/http), counted under reason when it fires. The caller calls release when the request
// is over. Over HTTP/1.x the response is full duplex: net/http would otherwise wait for the
// rest of the body before writing a status.
func (s *Server) webFirstRequest(w http.ResponseWriter, r *http.Request, websocket bool, reason string) (_ *http.Request, release func()) {
	rc := http.NewResponseController(w)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	if r.ProtoMajor != 1 {
		// HTTP/2 streams share their socket: its send queue is not theirs (see sendQueue).
		ctx = withConn(ctx, nil)
	}
	wr := &webRequest{rc: rc}
	cut := wr.failReads
	if websocket {
		cut = cancel
	} else if r.ProtoMajor == 1 {
		rc.EnableFullDuplex()
	}
	wr.firstRequest = s.watchFirstRequest(r.Context(), reason, cut)
	stopProp := context.AfterFunc(r.Context(), func() {
		if !wr.cutting.Load() {
			cancel()
		}
	})
	ctx = context.WithValue(ctx, firstRequestKey{}, wr.firstRequest)
	if !websocket {
		wr.untilEOF = true
		ctx = context.WithValue(ctx, webRequestKey{}, wr)
		r.Body = &webBody{ReadCloser: r.Body, wr: wr}
	}
	return r.WithContext(ctx), func() {
		wr.mu.Lock()
		wr.released = true
		wr.mu.Unlock()
		wr.stop()
		stopProp()
		cancel()
	}
}

func webRequestFrom(ctx context.Context) *webRequest {
	wr, _ := ctx.Value(webRequestKey{}).(*webRequest)
	return wr
}

// abandon fails the reads of a body that will not be read (the stream was refused before it):
// the handler transport waits for its body reader before the request is over.
func (wr *webRequest) abandon() {
	if wr == nil || wr.eof.Load() {
		return
	}
	wr.stop()
	wr.cutting.Store(true)
	wr.failReads()
}

// webBody ends the bound of a gRPC-Web request at the end of its body.
type webBody struct {
	io.ReadCloser
	wr *webRequest
}

func (b *webBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.wr.cutting.Load() {
		b.wr.eof.Store(err == io.EOF)
		b.wr.stop()
	}
	return n, err
}
