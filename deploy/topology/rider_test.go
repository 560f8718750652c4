package topology

import (
	"context"
	"sync"
	"testing"
	"time"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// rider is a gRPC rider client that watches one area and, when its stream ends, reconnects to the
// next edge of its list (a client-side failover list, as a DNS name of a headless Service gives).
// It keeps the vehicles it was told about, applying every Snapshot, upsert and removal.
type rider struct {
	addrs []string
	req   *meshcastv1.WatchRequest

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	vehicles    map[string]*meshcastv1.Vehicle
	edge        string    // address of the stream that delivered the last snapshot
	streams     int       // streams that delivered their first Snapshot
	ended       int       // streams that ended (disconnects seen by the client)
	lastEnd     time.Time // when the last stream ended
	lastSnapAt  time.Time // when the last Snapshot arrived
	lastSnapLen int
}

func startRider(t *testing.T, req *meshcastv1.WatchRequest, addrs ...string) *rider {
	r := &rider{addrs: addrs, req: req, changed: make(chan struct{}), vehicles: map[string]*meshcastv1.Vehicle{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// run connects to addrs[i], streams until the stream ends, then moves on to the next address.
func (r *rider) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(r.addrs) {
		r.stream(ctx, r.addrs[i])
		if ctx.Err() != nil {
			return
		}
		r.update(func() { r.ended++; r.lastEnd = time.Now() })
		// A short back-off between attempts, as a real client has; not synchronisation.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *rider) stream(ctx context.Context, addr string) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer cc.Close()
	st, err := meshcastv1.NewRiderServiceClient(cc).Watch(ctx, r.req)
	if err != nil {
		return
	}
	first := true
	for {
		ev, err := st.Recv()
		if err != nil {
			return
		}
		r.update(func() {
			switch k := ev.Kind.(type) {
			case *meshcastv1.RiderEvent_Snapshot:
				clear(r.vehicles)
				for _, v := range k.Snapshot.GetVehicles() {
					r.vehicles[v.GetId()] = v
				}
				r.lastSnapAt, r.lastSnapLen, r.edge = time.Now(), len(r.vehicles), addr
				if first {
					r.streams++
					first = false
				}
			case *meshcastv1.RiderEvent_Upsert:
				r.vehicles[k.Upsert.GetId()] = k.Upsert
			case *meshcastv1.RiderEvent_Remove:
				delete(r.vehicles, k.Remove.GetId())
			}
		})
	}
}

func (r *rider) update(f func()) {
	r.mu.Lock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// wait blocks until cond (called with the rider locked) holds, and fails the test after timeout.
// It returns how long it waited.
func (r *rider) wait(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return time.Since(start)
		}
		select {
		case <-ch:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("rider: timed out after %v waiting for %s (edge %s, streams %d, ended %d, %d vehicles)",
				timeout, what, r.edge, r.streams, r.ended, len(r.vehicles))
		}
	}
}

// sees reports whether the rider holds vehicle id with exactly fix time ts (rider locked).
func (r *rider) sees(id string, ts int64) bool {
	v, ok := r.vehicles[id]
	return ok && v.GetObservedAtMs() == ts
}

// counts returns the streams opened and ended so far.
func (r *rider) counts() (streams, ended int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams, r.ended
}
