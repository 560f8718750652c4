package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/edge/hub"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// clock is real time plus an offset that a test moves forward to make fixes stale. The bus, the
// hub and the sessions share it, so heartbeats still fire on real timers.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// testServer is a running transport server on a loopback port.
type testServer struct {
	srv  *Server
	hub  *hub.Hub
	addr string // host:port
	base string // http://host:port
	errc chan error
}

const testTTL = time.Hour

// startServer runs a hub on b and a server on a fresh loopback listener; the cleanup shuts both
// down.
func startServer(t testing.TB, b bus.Bus, clk *clock, o Options) *testServer {
	t.Helper()
	now := time.Now
	if clk != nil {
		now = clk.Now
		o.Session.Now = clk.Now
	}
	h, err := hub.New(b, hub.Options{TTL: testTTL, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(h, o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, hub: h, addr: l.Addr().String(), base: "http://" + l.Addr().String(), errc: make(chan error, 1)}
	go func() { ts.errc <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-ts.errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.Close()
	})
	return ts
}

// scenario applies vehicle fixes through the bus.
type scenario struct {
	t    testing.TB
	b    bus.Bus
	clk  *clock
	last map[string]int64
}

type pt struct{ lat, lon float64 }

func meshOf(t testing.TB, p pt) string {
	c, err := mesh.Third(p.lat, p.lon)
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// fix applies one fix of vehicle id at p; reason != 0 makes it not dispatchable.
func (s *scenario) fix(id string, p pt, reason meshcastv1.RemovalReason) {
	s.t.Helper()
	ts := s.clk.Now().UnixMilli()
	if ts <= s.last[id] {
		ts = s.last[id] + 1
	}
	s.last[id] = ts
	v := &meshcastv1.Vehicle{
		Id: id, Fleet: strings.Split(id, "/")[0], Lat: p.lat, Lon: p.lon, HeadingDeg: 90, SpeedKmh: 20,
		Class: meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD, Mesh: meshOf(s.t, p), ObservedAtMs: ts,
	}
	res, err := s.b.Apply(context.Background(), bus.Update{Vehicle: v, Dispatchable: reason == 0, Reason: reason})
	if err != nil {
		s.t.Fatalf("apply %s: %v", id, err)
	}
	if !res.Applied {
		s.t.Fatalf("apply %s: not applied", id)
	}
}

// logical renders an event without seq and distance, the form the scripted steps name.
func logical(ev *meshcastv1.RiderEvent) string {
	v := func(x *meshcastv1.Vehicle) string { return fmt.Sprintf("%s@%.4f,%.4f", x.Id, x.Lat, x.Lon) }
	switch k := ev.Kind.(type) {
	case *meshcastv1.RiderEvent_Snapshot:
		var ids []string
		for _, x := range k.Snapshot.Vehicles {
			ids = append(ids, v(x))
		}
		slices.Sort(ids)
		return "snapshot [" + strings.Join(ids, " ") + "]"
	case *meshcastv1.RiderEvent_Upsert:
		return "upsert " + v(k.Upsert) + " " + k.Upsert.Mesh
	case *meshcastv1.RiderEvent_Remove:
		return "remove " + k.Remove.Id + " " + strings.TrimPrefix(k.Remove.Reason.String(), "REMOVAL_REASON_")
	case *meshcastv1.RiderEvent_Heartbeat:
		return "heartbeat"
	}
	return "empty"
}

// normal is an event with seq cleared and snapshot vehicles sorted by id, for comparing what
// different transports delivered.
func normal(ev *meshcastv1.RiderEvent) *meshcastv1.RiderEvent {
	ev = proto.CloneOf(ev)
	ev.Seq = 0
	if s := ev.GetSnapshot(); s != nil {
		slices.SortFunc(s.Vehicles, func(a, b *meshcastv1.Vehicle) int { return strings.Compare(a.Id, b.Id) })
	}
	return ev
}

// tracked is a rider with what the test saw of it.
type tracked struct {
	*rider
	seq        uint64 // last seq seen
	heartbeats int
	log        []*meshcastv1.RiderEvent // non-heartbeat events, in order
}

// expect reads the rider's next non-heartbeat event and checks it is want; every event's seq
// must follow the previous one's.
func (r *tracked) expect(t testing.TB, want string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case ev := <-r.events:
			if ev.Seq != r.seq+1 {
				t.Fatalf("%s: seq %d after %d (%s)", r.name, ev.Seq, r.seq, logical(ev))
			}
			r.seq = ev.Seq
			if ev.GetHeartbeat() != nil {
				r.heartbeats++
				continue
			}
			if got := logical(ev); got != want {
				t.Fatalf("%s: got %q, want %q", r.name, got, want)
			}
			r.log = append(r.log, ev)
			return
		case <-r.done:
			t.Fatalf("%s: stream ended (%v) while waiting for %q", r.name, r.end, want)
		case <-deadline:
			t.Fatalf("%s: no %q within %v", r.name, want, waitLimit)
		}
	}
}

// heartbeat waits for the rider's next heartbeat (skipping nothing else).
func (r *tracked) heartbeat(t testing.TB) {
	t.Helper()
	if r.heartbeats > 0 {
		return
	}
	select {
	case ev := <-r.events:
		if ev.GetHeartbeat() == nil || ev.Seq != r.seq+1 {
			t.Fatalf("%s: want a heartbeat with seq %d, got %d %s", r.name, r.seq+1, ev.Seq, logical(ev))
		}
		r.seq = ev.Seq
		r.heartbeats++
	case <-r.done:
		t.Fatalf("%s: stream ended (%v) while waiting for a heartbeat", r.name, r.end)
	case <-time.After(waitLimit):
		t.Fatalf("%s: no heartbeat within %v", r.name, waitLimit)
	}
}

func expectAll(t testing.TB, rs []*tracked, want string) {
	t.Helper()
	for _, r := range rs {
		r.expect(t, want)
	}
}

// TestTransportMatrixMemory and TestTransportMatrixRedisCluster run the transport matrix on the
// in-memory bus and on a real 3-master Redis Cluster.
// The memory matrix also runs with a write delay: WebSocket and SSE riders are then written by
// the flushers (direct.go), the others hold their batches in the session.
func TestTransportMatrixMemory(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("write-delay=%v", delay), func(t *testing.T) {
			clk := new(clock)
			b := bus.NewMemory(bus.Options{TTL: testTTL, Now: clk.Now})
			t.Cleanup(func() { b.Close() })
			runMatrix(t, b, clk, delay)
		})
	}
}

func TestTransportMatrixRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; run without -short")
	}
	c := redistest.StartCluster(t, 3, 0)
	clk := new(clock)
	b, err := bus.Open(context.Background(), c.URL(), bus.Options{TTL: testTTL, Now: clk.Now, KeyPrefix: "matrix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	runMatrix(t, b, clk, 0)
}

// runMatrix drives the same scripted vehicle events through the bus while a real client of every
// transport watches, and checks that each receives the same logical sequence: snapshot, upserts
// (moves inside a mesh and across meshes, an entry), removals (left the radius, not vacant,
// stale), and, for the transports that can move, a new snapshot after the move. Then the server
// shuts down and every stream ends the way API.md names.
func runMatrix(t *testing.T, b bus.Bus, clk *clock, delay time.Duration) {
	ts := startServer(t, b, clk, Options{Session: session.Options{Heartbeat: 300 * time.Millisecond, WriteDelay: delay}})
	sc := &scenario{t: t, b: b, clk: clk, last: map[string]int64{}}

	// Around Tokyo Station; a 1000 m radius covers several third-order meshes.
	centre := pt{35.681236, 139.767125}
	v1a, v1b, v1c := pt{35.6800, 139.7670}, pt{35.6790, 139.7680}, pt{35.6845, 139.7680}
	v2a, v2b := pt{35.6860, 139.7600}, pt{35.6900, 139.7600} // 832 m, then 1166 m away
	v3a, v3b := pt{35.7300, 139.7100}, pt{35.6780, 139.7700} // far, then 443 m away
	v4 := pt{35.6700, 139.7000}                              // the place riders move to
	v5 := pt{35.6815, 139.7675}                              // occupied from the start
	if meshOf(t, v1a) != meshOf(t, v1b) || meshOf(t, v1b) == meshOf(t, v1c) {
		t.Fatal("scenario: v1's moves do not stay in / cross a mesh as intended")
	}

	sc.fix("f1/v1", v1a, 0)
	sc.fix("f1/v2", v2a, 0)
	sc.fix("f2/v3", v3a, 0)
	sc.fix("f2/v4", v4, 0)
	sc.fix("f2/v5", v5, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT)

	req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}
	cc := dialGRPC(t, ts.addr)
	desc := descriptorSet(t)
	stayers := []*tracked{
		{rider: grpcWatch(t, cc, req)},
		{rider: nodeWebRider(t, ts.base, desc, req)},
		{rider: webTextRider(t, ts.base, req, nil)},
		{rider: func() *rider { r, _ := webBinRider(t, ts.base, req, nil, nil, nil); return r }()},
	}
	movers := []*tracked{
		{rider: grpcTrack(t, cc, req)},
		{rider: wsRider(t, ts.base, req, SubprotocolJSON)},
		{rider: wsRider(t, ts.base, req, SubprotocolProto)},
		{rider: sseRider(t, ts.base, req)},
		{rider: webSocketTrack(t, ts.base, req)},
	}
	all := append(slices.Clone(stayers), movers...)
	t.Cleanup(func() {
		for _, r := range all {
			r.close()
		}
	})
	f := func(id string, p pt) string { return fmt.Sprintf("%s@%.4f,%.4f", id, p.lat, p.lon) }

	expectAll(t, all, "snapshot ["+f("f1/v1", v1a)+" "+f("f1/v2", v2a)+"]")
	sc.fix("f1/v1", v1b, 0) // moves inside its mesh
	expectAll(t, all, "upsert "+f("f1/v1", v1b)+" "+meshOf(t, v1b))
	sc.fix("f1/v1", v1c, 0) // moves to the next mesh, still inside the radius
	expectAll(t, all, "upsert "+f("f1/v1", v1c)+" "+meshOf(t, v1c))
	sc.fix("f2/v3", v3b, 0) // enters from far away
	expectAll(t, all, "upsert "+f("f2/v3", v3b)+" "+meshOf(t, v3b))
	sc.fix("f1/v2", v2b, 0) // leaves the radius (its mesh may still be watched)
	expectAll(t, all, "remove f1/v2 LEFT_AREA")
	sc.fix("f1/v1", v1c, meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT) // takes a fare
	expectAll(t, all, "remove f1/v1 NOT_VACANT")

	// The movers move to v4's neighbourhood: a new snapshot there.
	moved := &meshcastv1.WatchRequest{Lat: v4.lat + 0.001, Lon: v4.lon, RadiusM: 1000}
	for _, r := range movers {
		if err := r.move(moved); err != nil {
			t.Fatalf("%s: move: %v", r.name, err)
		}
	}
	expectAll(t, movers, "snapshot ["+f("f2/v4", v4)+"]")

	// Time passes beyond the TTL without fixes: every vehicle still shown goes STALE.
	clk.advance(2 * testTTL)
	expectAll(t, stayers, "remove f2/v3 STALE")
	expectAll(t, movers, "remove f2/v4 STALE")

	// Every transport carried identical events (seq aside) within its group.
	for _, group := range [][]*tracked{stayers, movers} {
		ref := group[0]
		for _, r := range group[1:] {
			if len(r.log) != len(ref.log) {
				t.Fatalf("%s logged %d events, %s %d", r.name, len(r.log), ref.name, len(ref.log))
			}
			for i := range ref.log {
				if !proto.Equal(normal(r.log[i]), normal(ref.log[i])) {
					t.Errorf("%s event %d = %v\n%s event %d = %v", r.name, i, r.log[i], ref.name, i, ref.log[i])
				}
			}
		}
	}
	// Distances are the rider's: v1 at v1c is 362 m from the centre.
	if d := stayers[0].log[2].GetUpsert().GetDistanceM(); d < 340 || d > 380 {
		t.Errorf("distance of v1 after crossing meshes = %d m, want about 362", d)
	}

	// Idle streams get heartbeats; SSE also writes heartbeat comments.
	for _, r := range all {
		r.heartbeat(t)
	}
	if sse := movers[3]; sse.commentCount("hb") == 0 {
		t.Errorf("sse: no heartbeat comment among %q", sse.comments)
	}

	// Graceful stop: every stream ends with the transport's "going away".
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-ts.errc; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	ts.errc <- nil // for the cleanup
	for _, r := range all {
		err := r.endError(t)
		var ws *wsEnd
		var sse *sseEnd
		switch {
		case errors.As(err, &ws):
			if ws.code != websocket.StatusGoingAway {
				t.Errorf("%s: ended with %v, want close 1001", r.name, err)
			}
		case errors.As(err, &sse):
			if sse.err != nil || r.commentCount(msgStopping) != 1 {
				t.Errorf("%s: ended with %v, comments %q; want a clean end after %q", r.name, err, r.comments, msgStopping)
			}
		default:
			if code, _ := statusOf(err); code != codes.Unavailable {
				t.Errorf("%s: ended with %v, want UNAVAILABLE", r.name, err)
			}
		}
	}
}
