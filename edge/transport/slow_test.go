package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/testwait"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// flood moves n vehicles around centre round after round until stop reports true (checked
// after every round) or rounds run out; it returns the rounds done.
func flood(t *testing.T, b bus.Bus, centre pt, n, rounds int, stop func() bool) int {
	t.Helper()
	sc := &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}
	for r := range rounds {
		for i := range n {
			d := float64((i+r)%50) * 0.00005
			sc.fix(fmt.Sprintf("f/v%d", i), pt{centre.lat + d, centre.lon + float64(i%20)*0.0001}, 0)
		}
		if stop() {
			return r + 1
		}
	}
	return rounds
}

// TestSlowRiderIsCut: a rider on any transport whose client stops reading is cut as too slow,
// and sees its transport's "too slow" (WebSocket 4008, SSE comment, gRPC and gRPC-Web
// RESOURCE_EXHAUSTED) once it reads again, while a reading rider of the same area keeps
// receiving; the cut rider's session leaves the hub. A few vehicles moving fast: the session
// coalesces by vehicle and never overflows, so what cuts WebSocket, SSE and gRPC-Web is the
// socket's send queue passing Options.SendBuffer, and what cuts native gRPC is a send blocked by
// HTTP/2 flow control for the write timeout. The stalled client is a rider whose events nobody
// takes: its reader blocks once the rider's event buffer is full, and then the socket fills up.
func TestSlowRiderIsCut(t *testing.T) {
	centre := pt{35.681236, 139.767125}
	req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}
	tests := []struct {
		name string
		open func(t *testing.T, ts *testServer) *rider
		want func(r *rider) bool
	}{
		{"websocket", func(t *testing.T, ts *testServer) *rider { return wsRider(t, ts.base, req, SubprotocolJSON) },
			func(r *rider) bool {
				var we *wsEnd
				return errors.As(r.end, &we) && we.code == closeTooSlow
			}},
		{"sse", func(t *testing.T, ts *testServer) *rider { return sseRider(t, ts.base, req) },
			func(r *rider) bool { return r.commentCount(msgTooSlow) == 1 }},
		{"grpc", func(t *testing.T, ts *testServer) *rider {
			// A fixed 64 KiB window (no BDP growth), as a stalled mobile client would grant.
			cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			return grpcWatch(t, cc, req)
		}, func(r *rider) bool {
			code, _ := statusOf(r.end)
			return code == codes.ResourceExhausted
		}},
		{"grpc-web-binary", func(t *testing.T, ts *testServer) *rider {
			r, _ := webBinRider(t, ts.base, req, nil, nil, nil)
			return r
		},
			func(r *rider) bool {
				var ws *webStatus
				return errors.As(r.end, &ws) && ws.code == codes.ResourceExhausted
			}},
		{"grpc-web", func(t *testing.T, ts *testServer) *rider { return webTextRider(t, ts.base, req, nil) },
			func(r *rider) bool {
				var ws *webStatus
				return errors.As(r.end, &ws) && ws.code == codes.ResourceExhausted
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bus.NewMemory(bus.Options{})
			t.Cleanup(func() { b.Close() })
			ts := startServer(t, b, nil, Options{
				Session:      session.Options{QueueLimit: 64, MaxBatch: 64},
				WriteTimeout: 300 * time.Millisecond,
				SendBuffer:   16 << 10,
			})
			slow := tt.open(t, ts)
			t.Cleanup(func() {
				if slow.close != nil {
					slow.close()
				}
			})
			// One registration per mesh of the area; a rider registers its meshes one at a time, so
			// the count is read from the area, not from the hub while the rider may be halfway.
			cover, err := mesh.Cover(centre.lat, centre.lon, float64(req.RadiusM))
			if err != nil {
				t.Fatal(err)
			}
			per := len(cover)
			waitFor(t, func() bool { return ts.hub.Stats().Watchers == per })
			good := &tracked{rider: wsRider(t, ts.base, req, SubprotocolProto)}
			good.expect(t, "snapshot []")
			go func() { // the good rider keeps reading
				for range good.events {
				}
			}()
			waitFor(t, func() bool { return ts.hub.Stats().Watchers == 2*per })

			rounds := flood(t, b, centre, 10, 1000000, func() bool { return ts.hub.Stats().Watchers <= per })
			if ts.hub.Stats().Watchers > per {
				t.Fatalf("the slow rider was not cut after %d rounds of 10 vehicles", rounds)
			}
			select {
			case <-good.done:
				t.Fatalf("the reading rider ended too: %v", good.end)
			default:
			}
			// The stalled client reads again: what it had not read, then the reason it was cut.
			go func() {
				for range slow.events {
				}
			}()
			slow.endError(t)
			if !tt.want(slow) {
				t.Fatalf("slow %s ended with %v (comments %q), want too slow", tt.name, slow.end, slow.comments)
			}
			var m dto.Metric
			ts.srv.m.ended.WithLabelValues("too_slow").Write(&m)
			if n := m.GetCounter().GetValue(); n != 1 {
				t.Errorf("streams ended as too_slow: %v, want 1", n)
			}
			t.Logf("slow %s cut after %d rounds: %v", tt.name, rounds, slow.end)
		})
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	testwait.For(t, waitLimit, "a condition", cond)
}

// TestSSEOverHTTP2 covers the ResponseWriter path of SSE (no hijacking on HTTP/2, as behind a
// TLS front that speaks HTTP/2 to the edge): events, flushes, and the end on shutdown.
func TestSSEOverHTTP2(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{Session: session.Options{Heartbeat: 200 * time.Millisecond}})
	h2 := httptest.NewUnstartedServer(ts.srv)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	resp, err := h2.Client().Get(watchURL(h2.URL, PathSSE, tokyo, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %q", resp.Proto, resp.Header.Get("Content-Type"))
	}
	r := &tracked{rider: newRider("sse-h2")}
	go func() { r.finish(readSSE(resp.Body, r.rider, func(string) {})) }()
	r.expect(t, "snapshot []")
	r.heartbeat(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.endError(t); err != nil || r.commentCount(msgStopping) != 1 {
		t.Fatalf("ended with %v, comments %q", err, r.comments)
	}
	<-ts.errc
	ts.errc <- nil
}
