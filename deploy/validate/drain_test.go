package validate

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAdmin answers the two admin requests drain.sh makes the way Envoy's admin interface does:
// POST /drain_listeners (200 "OK\n") and GET /stats?filter=... (one "name: value" line per
// matching stat). The riders' connections drop to 0 after dropAfter stats requests (never if
// dropAfter is 0).
type fakeAdmin struct {
	mu        sync.Mutex
	requests  []string
	statsSeen atomic.Int32
	dropAfter int32
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/drain_listeners":
		fmt.Fprint(w, "OK\n")
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		n := 1234
		if seen := f.statsSeen.Add(1); f.dropAfter > 0 && seen >= f.dropAfter {
			n = 0
		}
		// Two writes with a flush between: a chunked body, as Envoy's admin may send.
		fmt.Fprint(w, "http.metrics.downstream_cx_active: 1\n")
		w.(http.Flusher).Flush()
		fmt.Fprintf(w, "listener.0.0.0.0_8443.downstream_cx_active: %d\nhttp.riders.downstream_cx_active: %d\n", n, n)
	default:
		http.Error(w, "no such endpoint", http.StatusNotFound)
	}
}

// runDrain runs the rendered drain.sh with bash against the fake admin interface.
func runDrain(t *testing.T, f *fakeAdmin, deadline string) (string, error, time.Duration) {
	t.Helper()
	b := load(t, "prod")
	if b.DrainSh == "" {
		t.Fatal("no drain.sh in envoy-config")
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	cmd := exec.Command("bash", "-c", b.DrainSh)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "ENVOY_ADMIN_PORT=" + port, "DRAIN_DEADLINE_SECONDS=" + deadline, "DRAIN_POLL_SECONDS=0.05"}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	return string(out), err, time.Since(start)
}

// TestDrainScriptDrainsThenWaits runs the Envoy preStop hook against a fake admin interface: it
// POSTs /drain_listeners?inboundonly&graceful&skip_exit first, then counts the riders'
// downstream connections until there are none, and returns 0.
func TestDrainScriptDrainsThenWaits(t *testing.T) {
	f := &fakeAdmin{dropAfter: 5}
	out, err, took := runDrain(t, f, "60")
	if err != nil {
		t.Fatalf("drain.sh: %v\n%s", err, out)
	}
	if len(f.requests) < 6 || f.requests[0] != "POST /drain_listeners?inboundonly&graceful&skip_exit" {
		t.Fatalf("requests %q", f.requests)
	}
	for _, r := range f.requests[1:] {
		if r != "GET /stats?filter=downstream_cx_active" {
			t.Errorf("request %q after the drain", r)
		}
	}
	if got := int(f.statsSeen.Load()); got != 5 {
		t.Errorf("%d stats requests, want 5 (it stops at the first 0)", got)
	}
	if !strings.Contains(out, "no rider connection left") {
		t.Errorf("output %q", out)
	}
	t.Logf("%s(%v)", out, took.Round(time.Millisecond))
}

// TestDrainScriptStopsAtItsDeadline: riders that never leave hold the hook only until
// DRAIN_DEADLINE_SECONDS (counted in bash's whole seconds, so within one second of it), inside
// the grace period.
func TestDrainScriptStopsAtItsDeadline(t *testing.T) {
	const deadline = 2
	f := &fakeAdmin{}
	out, err, took := runDrain(t, f, strconv.Itoa(deadline))
	if err != nil {
		t.Fatalf("drain.sh: %v\n%s", err, out)
	}
	if took < (deadline-1)*time.Second || took > (deadline+5)*time.Second || !strings.Contains(out, "deadline 2s reached with 1234 rider connections") {
		t.Errorf("returned after %v with %q, want the deadline (%ds) reached with 1234 connections", took, out, deadline)
	}
}
