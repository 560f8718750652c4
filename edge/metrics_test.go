package edge

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/edge/transport"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestMetricsAfterAShortRun runs an edge on a real Redis with a rider on each of WebSocket,
// SSE and gRPC, publishes fixes in their area, then scrapes /metrics with the Prometheus text
// parser: every metric the operations need is there with a sensible value; /readyz follows the
// bus (503 while Redis is gone, 200 again once it is back).
func TestMetricsAfterAShortRun(t *testing.T) {
	rs := redistest.StartSingle(t)
	c := Defaults()
	c.Bus, c.BusPrefix, c.DrainWindow, c.ShutdownTimeout = rs.URL(), "mtest", 100*time.Millisecond, 5*time.Second
	e := startEdge(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// One rider per transport.
	const lat, lon = 35.681236, 139.767125
	ws, _, err := websocket.Dial(ctx, "ws://"+e.listen+transport.PathWebSocket+riderQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	wsUpsert := make(chan struct{})
	go func() {
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if strings.Contains(string(msg), `"upsert"`) {
				close(wsUpsert)
				return
			}
		}
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.listen+transport.PathSSE+riderQuery, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go bufio.NewReader(resp.Body).WriteTo(discard{})
	cc, err := grpc.NewClient(e.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gctx, gcancel := context.WithCancel(ctx)
	st, err := meshcastv1.NewRiderServiceClient(cc).Watch(gctx, &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "three riders counted", func() bool {
		n, _ := sum(scrape(t, e.admin), "meshcast_edge_connections")
		return n == 3
	})

	// Fixes in the riders' area, through a bus client of our own (as a bridge would).
	b, err := bus.Open(ctx, rs.URL(), bus.Options{KeyPrefix: "mtest", TTL: c.TTL})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, _ := mesh.Third(lat, lon)
	for i := range 5 {
		v := &meshcastv1.Vehicle{Id: "acme/m" + string(rune('0'+i)), Fleet: "acme", Lat: lat, Lon: lon + float64(i)*1e-4,
			Class: meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD, Mesh: m.String(), ObservedAtMs: time.Now().UnixMilli()}
		if _, err := b.Apply(ctx, bus.Update{Vehicle: v, Dispatchable: true}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-wsUpsert:
	case <-ctx.Done():
		t.Fatal("no upsert reached the WebSocket rider")
	}
	gcancel() // one rider leaves: a stream ended by the client
	waitFor(t, 20*time.Second, "the gRPC rider's end counted", func() bool {
		n, _ := sum(scrape(t, e.admin), "meshcast_edge_streams_ended_total", "reason=client")
		return n >= 1
	})

	mfs := scrape(t, e.admin)
	for _, tc := range []struct {
		name  string
		match []string
		ok    func(float64) bool
		want  string
	}{
		{"meshcast_edge_connections", []string{"transport=ws"}, func(v float64) bool { return v == 1 }, "1 WebSocket rider"},
		{"meshcast_edge_connections", []string{"transport=sse"}, func(v float64) bool { return v == 1 }, "1 SSE rider"},
		{"meshcast_edge_connections", []string{"transport=grpc"}, func(v float64) bool { return v == 0 }, "0 gRPC riders (it left)"},
		{"meshcast_edge_streams_ended_total", []string{"reason=client"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"meshcast_edge_rejected_total", []string{"reason=max_connections"}, func(v float64) bool { return v == 0 }, "0"},
		{"meshcast_edge_delivery_latency_seconds", nil, func(v float64) bool { return v >= 5 }, "an observation per upsert written"},
		{"meshcast_edge_queued_updates", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"meshcast_edge_queued_updates_max", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"meshcast_session_frames_total", []string{"kind=upsert"}, func(v float64) bool { return v >= 5 }, ">= 5 upserts"},
		{"meshcast_session_frames_total", []string{"kind=snapshot"}, func(v float64) bool { return v >= 3 }, ">= 3 snapshots"},
		{"meshcast_session_cut_total", nil, func(v float64) bool { return v == 0 }, "0 cut"},
		{"meshcast_hub_meshes", nil, func(v float64) bool { return v >= 1 }, ">= 1 subscribed mesh"},
		{"meshcast_hub_watchers", nil, func(v float64) bool { return v >= 2 }, ">= 2 (rider, mesh) subscriptions"},
		{"meshcast_hub_deliveries_total", nil, func(v float64) bool { return v >= 10 }, ">= 10 deliveries"},
		{"meshcast_hub_events_dropped_total", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"meshcast_bus_resubscriptions_total", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"meshcast_http_requests_total", []string{"code=101"}, func(v float64) bool { return v >= 1 }, ">= 1 WebSocket upgrade"},
		{"meshcast_grpc_requests_total", []string{"method=/meshcast.v1.RiderService/Watch"}, func(v float64) bool { return v >= 1 }, ">= 1 Watch call"},
		{"meshcast_panics_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
	} {
		v, ok := sum(mfs, tc.name, tc.match...)
		if !ok || !tc.ok(v) {
			t.Errorf("%s%v = %v (present %v), want %s", tc.name, tc.match, v, ok, tc.want)
		}
	}
	lat50 := mfs["meshcast_edge_delivery_latency_seconds"].GetMetric()[0].GetHistogram()
	t.Logf("delivery latency: %d observations, mean %.1f ms", lat50.GetSampleCount(), 1000*lat50.GetSampleSum()/float64(lat50.GetSampleCount()))

	if code := getCode(t, "http://"+e.admin+"/readyz"); code != 200 {
		t.Errorf("/readyz with Redis up: %d", code)
	}
	rs.Stop()
	waitFor(t, 20*time.Second, "/readyz 503 once Redis is gone", func() bool {
		return getCode(t, "http://"+e.admin+"/readyz") == http.StatusServiceUnavailable
	})
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "/readyz 200 once Redis is back", func() bool {
		return getCode(t, "http://"+e.admin+"/readyz") == http.StatusOK
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func getCode(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
