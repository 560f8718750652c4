package transport

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
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

// TestSlowRiderIsCut: a WebSocket or SSE rider that stops reading is cut by the write timeout
// while a reading rider of the same area keeps receiving; the cut rider's session leaves the hub.
// (The queue-overflow cut, 4008 / ErrTooSlow, is the session's and is tested there; its mapping
// to each transport is in TestEndMapping.)
func TestSlowRiderIsCut(t *testing.T) {
	centre := pt{35.681236, 139.767125}
	req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}
	tests := []struct {
		name string
		open func(t *testing.T, ts *testServer) (drain func() string)
	}{
		{"websocket", func(t *testing.T, ts *testServer) func() string {
			c, _, err := wsDial(t, watchURL(ts.base, PathWebSocket, req, nil), SubprotocolJSON)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.CloseNow() })
			return func() string {
				for {
					_, _, err := c.Read(context.Background())
					if err != nil {
						return fmt.Sprintf("close %d", websocket.CloseStatus(err))
					}
				}
			}
		}},
		{"sse", func(t *testing.T, ts *testServer) func() string {
			resp, err := http.Get(watchURL(ts.base, PathSSE, req, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return func() string {
				r := newRider("slow-sse")
				go func() {
					for range r.events {
					}
				}()
				err := readSSE(resp.Body, r, func(string) {})
				close(r.events)
				if r.commentCount(msgTooSlow) > 0 {
					return "too slow comment"
				}
				return fmt.Sprintf("end %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bus.NewMemory(bus.Options{})
			t.Cleanup(func() { b.Close() })
			ts := startServer(t, b, nil, Options{
				Session:      session.Options{QueueLimit: 64, MaxBatch: 64},
				WriteTimeout: 300 * time.Millisecond,
			})
			drain := tt.open(t, ts)
			waitFor(t, func() bool { return ts.hub.Stats().Watchers > 0 })
			per := ts.hub.Stats().Watchers // one registration per mesh of the area
			good := &tracked{rider: wsRider(t, ts.base, req, SubprotocolProto)}
			good.expect(t, "snapshot []")
			go func() { // the good rider keeps reading
				for range good.events {
				}
			}()
			waitFor(t, func() bool { return ts.hub.Stats().Watchers == 2*per })

			// Few vehicles, many fixes: the queues coalesce and never overflow, so what cuts the
			// slow rider is its write timing out once the socket buffers are full.
			rounds := flood(t, b, centre, 10, 100000, func() bool { return ts.hub.Stats().Watchers <= per })
			if ts.hub.Stats().Watchers > per {
				t.Fatalf("the slow rider was not cut after %d rounds of 10 vehicles", rounds)
			}
			// The good rider is still served.
			select {
			case <-good.done:
				t.Fatalf("the reading rider ended too: %v", good.end)
			default:
			}
			end := drain()
			t.Logf("slow %s cut after %d rounds; client saw: %s", tt.name, rounds, end)
		})
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
