package edge

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/edge/transport"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// addrList is the load balancer of the test: the edges a client may connect to.
type addrList struct {
	mu    sync.Mutex
	addrs []string
}

func (l *addrList) add(a string) { l.mu.Lock(); l.addrs = append(l.addrs, a); l.mu.Unlock() }
func (l *addrList) pick() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := rand.IntN(len(l.addrs))
	return i, l.addrs[i]
}

// balancedRider reconnects whenever its stream ends, to an edge picked at random, and counts
// the Snapshots it received (the first event of every stream).
type balancedRider struct {
	snapshots atomic.Int32
	edge      atomic.Int32 // index of the edge of the current stream
}

const riderQuery = "?lat=35.68&lon=139.76"

func (r *balancedRider) run(ctx context.Context, l *addrList, kind string) {
	for ctx.Err() == nil {
		i, addr := l.pick()
		r.edge.Store(int32(i))
		switch kind {
		case "ws":
			c, _, err := websocket.Dial(ctx, "ws://"+addr+transport.PathWebSocket+riderQuery, nil)
			if err != nil {
				continue
			}
			for {
				_, msg, err := c.Read(ctx)
				if err != nil {
					break
				}
				if strings.Contains(string(msg), `"snapshot"`) {
					r.snapshots.Add(1)
				}
			}
			c.CloseNow()
		case "sse":
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+transport.PathSSE+riderQuery, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if sc.Text() == "event: snapshot" {
					r.snapshots.Add(1)
				}
			}
			resp.Body.Close()
		case "grpc":
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				continue
			}
			st, err := meshcastv1.NewRiderServiceClient(cc).Watch(ctx, &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76})
			for err == nil {
				var ev *meshcastv1.RiderEvent
				if ev, err = st.Recv(); err == nil && ev.GetSnapshot() != nil {
					r.snapshots.Add(1)
				}
			}
			cc.Close()
		}
	}
}

// TestRebalancing: riders on edge A; edge B starts; with a short max connection age every
// stream ends with its "going away" (WebSocket 1001, SSE end, gRPC UNAVAILABLE), the riders
// reconnect through the list of edges, and within about one age period both edges hold riders,
// every rider having received a fresh Snapshot on its new stream.
func TestRebalancing(t *testing.T) {
	c := Defaults()
	c.MaxConnAge, c.DrainWindow = 2*time.Second, 200*time.Millisecond
	a := startEdge(t, c)
	l := &addrList{addrs: []string{a.listen}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	kinds := []string{"ws", "sse", "grpc"}
	riders := make([]*balancedRider, 30)
	for i := range riders {
		riders[i] = &balancedRider{}
		wg.Go(func() { riders[i].run(ctx, l, kinds[i%len(kinds)]) })
	}
	waitFor(t, 20*time.Second, "every rider's first snapshot from A", func() bool {
		for _, r := range riders {
			if r.snapshots.Load() < 1 {
				return false
			}
		}
		return true
	})
	b := startEdge(t, c)
	l.add(b.listen)
	// Each rider's stream on A ends within 2.2 s of its start; the bound below only stops a
	// broken build from hanging.
	start := time.Now()
	waitFor(t, 30*time.Second, "riders spread over both edges, each with a fresh snapshot", func() bool {
		for _, r := range riders {
			if r.snapshots.Load() < 2 {
				return false
			}
		}
		na, _ := sum(scrape(t, a.admin), "meshcast_edge_connections")
		nb, _ := sum(scrape(t, b.admin), "meshcast_edge_connections")
		return na > 0 && nb > 0 && na+nb == float64(len(riders))
	})
	t.Logf("riders spread over A and B %v after B started", time.Since(start).Round(10*time.Millisecond))
	ended, _ := sum(scrape(t, a.admin), "meshcast_edge_streams_ended_total", "reason=max_age")
	if ended < float64(len(riders)) {
		t.Errorf("A ended %v streams for max age, want at least %d", ended, len(riders))
	}
}
