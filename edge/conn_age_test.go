package edge

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/edge/hub"
	"github.com/meshcast/meshcast/edge/transport"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// sharedConnStreams plays a proxy in front of the edge (Envoy multiplexes up to 1,000 riders
// on one upstream HTTP/2 connection): one gRPC connection carries a first stream, then, when
// the connection is 65% of maxAge old, five more opened together. It returns how long each of
// the five lived and how it ended, after checking that all of them went over the one
// connection.
func sharedConnStreams(t *testing.T, addr string, maxAge time.Duration) (lived []time.Duration, ended []time.Time, errs []error) {
	t.Helper()
	var dials atomic.Int32
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", a)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := meshcastv1.NewRiderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*maxAge+time.Minute)
	defer cancel()
	req := &meshcastv1.WatchRequest{Lat: 35.681236, Lon: 139.767125, RadiusM: 500}
	open := func() (meshcastv1.RiderService_WatchClient, time.Time) {
		start := time.Now()
		s, err := client.Watch(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil { // the Snapshot: the stream is open on the edge
			t.Fatal(err)
		}
		return s, start
	}
	first, connStart := open()
	go func() {
		for {
			if _, err := first.Recv(); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Until(connStart.Add(maxAge * 65 / 100))) // the connection's age, not a synchronisation
	const n = 5
	lived, ended, errs = make([]time.Duration, n), make([]time.Time, n), make([]error, n)
	streams, starts := make([]meshcastv1.RiderService_WatchClient, n), make([]time.Time, n)
	for i := range n {
		streams[i], starts[i] = open()
	}
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d connections dialled, want the one every stream shares", d)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for {
				if _, err := streams[i].Recv(); err != nil {
					ended[i], errs[i] = time.Now(), err
					lived[i] = ended[i].Sub(starts[i])
					return
				}
			}
		})
	}
	wg.Wait()
	return lived, ended, errs
}

// spread is the time between the first and the last of ts.
func spread(ts []time.Time) time.Duration {
	return slices.MaxFunc(ts, time.Time.Compare).Sub(slices.MinFunc(ts, time.Time.Compare))
}

// TestStreamsOnOneConnectionEndAtTheirOwnAges: with the edge's default grace, streams that share
// one HTTP/2 connection each end at their own jittered age (UNAVAILABLE, "max connection age
// reached"), not together when the connection's own age and grace run out.
func TestStreamsOnOneConnectionEndAtTheirOwnAges(t *testing.T) {
	const maxAge = 3 * time.Second
	c := Defaults()
	c.MaxConnAge = maxAge // MaxConnAgeGrace stays 0: automatic
	e := startEdge(t, c)
	lived, ended, errs := sharedConnStreams(t, e.listen, maxAge)
	for i, err := range errs {
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "max connection age reached") {
			t.Errorf("stream %d ended with %v, want UNAVAILABLE with the max-age reason", i, err)
		}
		// Its own age: at least maxAge, at most maxAge + 10% jitter (+ slack for a loaded machine).
		if lived[i] < maxAge || lived[i] > maxAge*11/10+2*time.Second {
			t.Errorf("stream %d lived %v, want its own age in [%v, %v + slack]", i, lived[i], maxAge, maxAge*11/10)
		}
	}
	// Five uniform jitters over 300 ms all within 20 ms of each other: p ≈ 1e-4.
	if s := spread(ended); s < 20*time.Millisecond {
		t.Errorf("the streams ended within %v of each other: together, not at their own jittered ages (lived %v)", s, lived)
	}
	t.Logf("lived %v; ends spread over %v", lived, spread(ended))
}

// TestShortConnAgeGraceCutsSharedStreamsTogether reproduces what the automatic grace prevents,
// on the transport directly (the edge refuses such a grace): with a grace shorter than a
// stream's age (as 30s was against 15m), the connection's close ends all its young streams at
// the same instant, before their own age.
func TestShortConnAgeGraceCutsSharedStreamsTogether(t *testing.T) {
	const maxAge = 3 * time.Second
	b := bus.NewMemory(bus.Options{})
	defer b.Close()
	h, err := hub.New(b, hub.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv, err := transport.New(h, transport.Options{MaxConnAge: maxAge, MaxConnAgeGrace: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	}()
	lived, ended, errs := sharedConnStreams(t, l.Addr().String(), maxAge)
	for i := range lived {
		if lived[i] >= maxAge {
			t.Errorf("stream %d lived %v (%v): its own age, want it cut earlier by the connection's close", i, lived[i], errs[i])
		}
		if st := status.Convert(errs[i]); strings.Contains(st.Message(), "max connection age reached") {
			t.Errorf("stream %d ended by its own age: %v", i, errs[i])
		}
	}
	if s := spread(ended); s > 200*time.Millisecond {
		t.Errorf("ends spread over %v, want together", s)
	}
	t.Logf("lived %v; ends spread over %v; first error %v", lived, spread(ended), errs[0])
}
