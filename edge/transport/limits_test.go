package transport

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

var here = &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76}

// hold opens a stream that stays open (until the returned close), from the address named by
// X-Forwarded-For when xff is set, and waits for its Snapshot.
func hold(t *testing.T, ts *testServer, transport, xff string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hdr := http.Header{}
	if xff != "" {
		hdr.Set("X-Forwarded-For", xff)
	}
	switch transport {
	case "grpc":
		if xff != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-forwarded-for", xff)
		}
		st, err := meshcastv1.NewRiderServiceClient(dialGRPC(t, ts.addr)).Watch(ctx, here)
		if err != nil {
			t.Fatal(err)
		}
		if ev, err := st.Recv(); err != nil || ev.GetSnapshot() == nil {
			t.Fatalf("grpc hold: %v %v", ev, err)
		}
	case "ws":
		c, _, err := websocket.Dial(ctx, watchURL(ts.base, PathWebSocket, here, nil), &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			t.Fatalf("ws hold: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("ws hold: %v", err)
		}
		return func() { c.CloseNow(); cancel() }
	case "sse":
		hr, _ := http.NewRequestWithContext(ctx, "GET", watchURL(ts.base, PathSSE, here, nil), nil)
		hr.Header = hdr
		resp, err := http.DefaultClient.Do(hr)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("sse hold: %v %v", resp, err)
		}
		r := newRider("sse")
		go func() { defer resp.Body.Close(); readSSE(resp.Body, r, func(string) {}) }()
		select {
		case <-r.events:
		case <-time.After(waitLimit):
			t.Fatal("sse hold: no snapshot")
		}
	}
	return cancel
}

// waitStreams waits until the server counts n open streams.
func waitStreams(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for s.Streams() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", s.Streams(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func counterValue(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// wantRefused checks the answer API.md gives over a limit: gRPC code, HTTP 503 + Retry-After.
func wantRefused(t *testing.T, transport string, got outcome, code codes.Code, httpCode, msg string) {
	t.Helper()
	switch transport {
	case "grpc", "grpc-web", "grpc-web-binary", "grpc-web-websocket":
		if got.code != code || !strings.Contains(got.msg, msg) {
			t.Errorf("%s: %+v, want %v %q", transport, got, code, msg)
		}
	default:
		if got.status != http.StatusServiceUnavailable || got.errCode != httpCode || !strings.Contains(got.msg, msg) {
			t.Errorf("%s: %+v, want 503 %s %q", transport, got, httpCode, msg)
		}
	}
}

// TestMaxConns: with N streams open (over three transports), the N+1th is refused on every
// transport with UNAVAILABLE / 503; once one closes, a new one is accepted.
func TestMaxConns(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startServer(t, bus.NewMemory(bus.Options{}), nil, Options{MaxConns: 3, Registerer: reg})
	var closers []func()
	for _, tr := range []string{"grpc", "ws", "sse"} {
		closers = append(closers, hold(t, ts, tr, ""))
	}
	if got := counterValue(t, reg, "meshcast_edge_connections", "ws"); got != 1 {
		t.Errorf("meshcast_edge_connections{transport=ws} = %v, want 1", got)
	}
	for name, open := range openers {
		wantRefused(t, name, open(t, ts, here, ""), codes.Unavailable, "unavailable", "server full")
	}
	if got := counterValue(t, reg, "meshcast_edge_rejected_total", "max_connections"); got != float64(len(openers)) {
		t.Errorf("rejected{max_connections} = %v, want %d", got, len(openers))
	}
	closers[1]()
	waitStreams(t, ts.srv, 2)
	if got := openers["ws"](t, ts, here, ""); !got.snapshot {
		t.Errorf("after a stream closed: %+v, want a Snapshot", got)
	}
}

// TestRetryAfter: the HTTP refusal carries Retry-After.
func TestRetryAfter(t *testing.T) {
	ts := startServer(t, bus.NewMemory(bus.Options{}), nil, Options{MaxConns: 1})
	hold(t, ts, "grpc", "")
	resp, err := http.Get(watchURL(ts.base, PathSSE, here, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestMaxConnsPerIP: behind a trusted proxy, X-Forwarded-For names the client; the N+1th
// stream of one client is refused with RESOURCE_EXHAUSTED / 503 resource_exhausted while another
// client is served; from an untrusted peer the header is ignored.
func TestMaxConnsPerIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		otherOK bool // a second client address gets through
	}{
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
		{"untrusted peer", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, bus.NewMemory(bus.Options{}), nil, Options{
				MaxConnsPerIP: 2, TrustedProxyHeader: "X-Forwarded-For", TrustedProxies: tc.trusted})
			hold(t, ts, "ws", "203.0.113.9, 127.0.0.1")
			hold(t, ts, "grpc", "203.0.113.9")
			// The third from the same client.
			c, resp, err := websocket.Dial(context.Background(), watchURL(ts.base, PathWebSocket, here, nil),
				&websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"203.0.113.9"}}})
			if err == nil {
				c.CloseNow()
				t.Fatal("third stream of one client accepted")
			}
			wantRefused(t, "ws", httpOutcome(t, resp), codes.ResourceExhausted, "resource_exhausted", "too many connections from this address")
			// Another client.
			c, resp, err = websocket.Dial(context.Background(), watchURL(ts.base, PathWebSocket, here, nil),
				&websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"198.51.100.1"}}})
			if (err == nil) != tc.otherOK {
				t.Fatalf("another client: %v (%v), want accepted %v", err, resp, tc.otherOK)
			}
			if err == nil {
				c.CloseNow()
			}
		})
	}
}

// TestConnRate: a burst of 2 at a negligible rate: the third new stream is refused.
func TestConnRate(t *testing.T) {
	ts := startServer(t, bus.NewMemory(bus.Options{}), nil, Options{ConnRate: 0.001, ConnBurst: 2})
	for i := range 2 {
		if got := openers["grpc"](t, ts, here, ""); !got.snapshot {
			t.Fatalf("stream %d: %+v", i, got)
		}
	}
	wantRefused(t, "sse", openers["sse"](t, ts, here, ""), codes.Unavailable, "unavailable", "too many new connections")
	wantRefused(t, "grpc", openers["grpc"](t, ts, here, ""), codes.Unavailable, "", "too many new connections")
}

func TestClientIP(t *testing.T) {
	s := &Server{o: Options{TrustedProxyHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	for _, tc := range []struct{ remote, xff, want string }{
		{"192.0.2.1:5000", "203.0.113.1", "192.0.2.1"},                          // untrusted peer: header ignored
		{"10.1.1.1:5000", "203.0.113.1", "203.0.113.1"},                         // trusted proxy
		{"10.1.1.1:5000", "198.51.100.7, 203.0.113.1, 10.2.2.2", "203.0.113.1"}, // right-most untrusted
		{"10.1.1.1:5000", "", "10.1.1.1"},                                       // no header
		{"10.1.1.1:5000", "garbage", "10.1.1.1"},                                // malformed
		{"[::ffff:10.1.1.1]:5000", "203.0.113.1", "203.0.113.1"},                // mapped IPv4
	} {
		got := s.clientIP(client{remote: tc.remote, header: func(string) string { return tc.xff }})
		if got.String() != tc.want {
			t.Errorf("clientIP(%s, %q) = %v, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}
