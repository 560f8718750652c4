package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/edge/session"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEndMapping: what ends a stream maps to each transport's named error.
func TestEndMapping(t *testing.T) {
	inv := &session.InvalidError{Field: "lat", Msg: "must be a number between -90 and 90, got 91"}
	tests := []struct {
		name   string
		err    error
		grpc   codes.Code
		ws     websocket.StatusCode
		http   int
		httpCd string
	}{
		{"invalid", inv, codes.InvalidArgument, closePolicy, 400, "invalid_argument"},
		{"wrapped invalid", fmt.Errorf("move: %w", inv), codes.InvalidArgument, closePolicy, 400, "invalid_argument"},
		{"too slow", session.ErrTooSlow, codes.ResourceExhausted, closeTooSlow, 503, "unavailable"},
		{"stopping", errStopping, codes.Unavailable, closeGoingAway, 503, "unavailable"},
		{"session closed", session.ErrClosed, codes.Unavailable, closeGoingAway, 503, "unavailable"},
		{"bus trouble", errors.New("session: join area: redis down"), codes.Unavailable, closeInternal, 503, "unavailable"},
		{"client gone", context.Canceled, codes.Canceled, closeInternal, 503, "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(grpcError(tt.err)); got != tt.grpc {
				t.Errorf("gRPC %v, want %v", got, tt.grpc)
			}
			if tt.name != "client gone" {
				if got, reason := wsClose(tt.err); got != tt.ws || len(reason) > maxCloseReason {
					t.Errorf("WebSocket %d %q, want %d", got, reason, tt.ws)
				}
			}
			w := httptest.NewRecorder()
			writeHTTPError(w, tt.err)
			var body httpError
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.http || body.Error.Code != tt.httpCd || body.Error.Message != tt.err.Error() {
				t.Errorf("HTTP %d %s", w.Code, w.Body)
			}
			if tt.http == 503 && w.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	if msg := status.Convert(grpcError(inv)).Message(); msg != inv.Error() {
		t.Errorf("gRPC message %q", msg)
	}
	if st := status.New(codes.Aborted, "x").Err(); grpcError(st) != st {
		t.Error("a status error is not passed through")
	}
}

// TestShutdownLeaksNothing: Shutdown ends streams of every Go-driven transport with their
// "going away" and, once the clients are closed, no goroutine is left.
func TestShutdownLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := bus.NewMemory(bus.Options{})
	defer b.Close()
	ts := startServer(t, b, nil, Options{})
	cc := dialGRPC(t, ts.addr)
	riders := []*tracked{
		{rider: grpcWatch(t, cc, tokyo)},
		{rider: grpcTrack(t, cc, tokyo)},
		{rider: wsRider(t, ts.base, tokyo, SubprotocolJSON)},
		{rider: wsRider(t, ts.base, tokyo, "")},
		{rider: sseRider(t, ts.base, tokyo)},
		{rider: webTextRider(t, ts.base, tokyo, nil)},
		{rider: webSocketTrack(t, ts.base, tokyo)},
	}
	expectAll(t, riders, "snapshot []")
	if n := trackReaders.Load(); n != 2 { // the gRPC Track and the gRPC-Web websocket Track
		t.Fatalf("%d Track readers before the shutdown, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Track's handlers joined their readers (blocked in RecvMsg: the clients never half-closed)
	// before returning.
	if n := trackUnjoined.Load(); n != 0 {
		t.Fatalf("%d Track handlers returned with their reader running", n)
	}
	for _, r := range riders {
		r.endError(t)
		r.close()
	}
	if err := <-ts.errc; err != nil {
		t.Fatal(err)
	}
	ts.errc <- nil
	cc.Close()
	ts.hub.Close()
}

// noStatusStream is a grpc.ServerStream whose context carries no grpc-go transport stream.
type noStatusStream struct{ grpc.ServerStream }

func (noStatusStream) Context() context.Context { return context.Background() }

// TestStallWatchNeedsWriteStatus: when grpc-go's stream does not offer WriteStatus the stall
// watch refuses to start with an error naming it (the server then logs it and counts the stream
// in meshcast_edge_stall_watch_off_total), instead of silently never cutting.
func TestStallWatchNeedsWriteStatus(t *testing.T) {
	w, err := newStallWatch(noStatusStream{}, time.Second)
	if w != nil || err == nil || !strings.Contains(err.Error(), "WriteStatus") {
		t.Fatalf("newStallWatch without WriteStatus = %v, %v; want no watch and an error naming WriteStatus", w, err)
	}
}

// TestDrainTimerStopped: a stream that ends before its drain moment stops its drain timer (it
// would otherwise hold the stream until the window's end).
func TestDrainTimerStopped(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	defer b.Close()
	ts := startServer(t, b, nil, Options{})
	r := &tracked{rider: wsRider(t, ts.base, tokyo, SubprotocolJSON)}
	r.expect(t, "snapshot []")
	ts.srv.mu.Lock()
	var live []*stream
	for st := range ts.srv.live {
		live = append(live, st)
	}
	ts.srv.mu.Unlock()
	if len(live) != 1 {
		t.Fatalf("%d streams, want 1", len(live))
	}
	ts.srv.Drain(time.Hour)
	r.close() // the rider leaves long before its drain moment
	waitFor(t, func() bool { return ts.srv.Streams() == 0 })
	ts.srv.mu.Lock()
	timer := live[0].drain
	ts.srv.mu.Unlock()
	if timer == nil {
		t.Fatal("the draining stream got no drain timer")
	}
	if timer.Stop() {
		t.Fatal("the ended stream's drain timer was still armed")
	}
}
