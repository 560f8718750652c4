package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshcast/meshcast/core/testwait"
)

// buildMeshcast builds this command into a temporary directory.
func buildMeshcast(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshcast")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// drainRider is one rider of the drain test: when and how its stream ended.
type drainRider struct {
	kind  string
	ended time.Time
	how   string // "1001 <reason>", "sse end: <comment>", or what went wrong
}

// TestEdgeDrainOnSIGTERM runs a built `meshcast edge` with 1,000 riders (WebSocket and SSE),
// sends SIGTERM and checks: readiness turns false (/readyz 503, gRPC health NOT_SERVING), new
// riders are refused with 503, every rider is told to go away (WebSocket 1001, SSE end of stream
// after a comment) and none is left hanging, the process exits 0, and the edge ended the streams
// at moments spread over -drain-window: read from its own debug log ("edge draining", then one
// "rider stream ended" reason=drain per stream, each with the edge's timestamp), so what is
// checked is when the edge ended each stream, not when a client on a loaded machine noticed.
// The time limits in the test only stop a hung run; the measured delays are logged.
func TestEdgeDrainOnSIGTERM(t *testing.T) {
	const (
		riders = 1000
		window = 5 * time.Second
	)
	bin := buildMeshcast(t)
	cmd := exec.Command(bin, "edge", "-insecure-no-auth", "-bus", "memory://", "-listen", "127.0.0.1:0",
		"-admin", "127.0.0.1:0", "-drain-window", window.String(), "-log-level", "debug", "-log-format", "json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	// "edge listening on ADDR" then "admin listening on http://ADDR".
	lines := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`^(edge|admin) listening on (?:http://)?(\S+)$`)
	addr := map[string]string{}
	for len(addr) < 2 && lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			addr[m[1]] = m[2]
		}
	}
	if len(addr) < 2 {
		t.Fatalf("no addresses printed; stderr:\n%s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	edgeAddr, adminAddr := addr["edge"], addr["admin"]
	query := "?lat=35.68&lon=139.76"

	// 1,000 riders, half WebSocket, half SSE, each waiting for its first event.
	rs := make([]*drainRider, riders)
	var wg sync.WaitGroup
	opened := make(chan error, riders)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: -1}}
	for i := range rs {
		r := &drainRider{kind: "ws"}
		if i%2 == 1 {
			r.kind = "sse"
		}
		rs[i] = r
		wg.Go(func() {
			if r.kind == "ws" {
				c, _, err := websocket.Dial(ctx, "ws://"+edgeAddr+"/v1/ws"+query, &websocket.DialOptions{HTTPClient: client})
				if err != nil {
					opened <- err
					r.how = "dial: " + err.Error()
					return
				}
				defer c.CloseNow()
				first := true
				for {
					_, _, err := c.Read(ctx)
					if err != nil {
						r.ended = time.Now()
						var ce websocket.CloseError
						if errors.As(err, &ce) {
							r.how = fmt.Sprintf("%d %s", ce.Code, ce.Reason)
						} else {
							r.how = err.Error()
						}
						if first {
							opened <- err
						}
						return
					}
					if first {
						first = false
						opened <- nil
					}
				}
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+edgeAddr+"/v1/sse"+query, nil)
			resp, err := client.Do(req)
			if err != nil {
				opened <- err
				r.how = "get: " + err.Error()
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			first, comment := true, ""
			for sc.Scan() {
				if first && strings.HasPrefix(sc.Text(), "event: snapshot") {
					first = false
					opened <- nil
				}
				if strings.HasPrefix(sc.Text(), ": ") && sc.Text() != ": hb" {
					comment = sc.Text()[2:]
				}
			}
			r.ended = time.Now()
			r.how = "sse end: " + comment
			if sc.Err() != nil {
				r.how = "sse error: " + sc.Err().Error()
			}
			if first {
				opened <- errors.New("stream ended before its snapshot: " + r.how)
			}
		})
	}
	for range riders {
		if err := <-opened; err != nil {
			t.Fatalf("a rider did not open: %v", err)
		}
	}
	// Every rider is connected; the readiness check answers 200.
	if code := getStatus(t, "http://"+adminAddr+"/readyz"); code != 200 {
		t.Fatalf("/readyz before SIGTERM: %d", code)
	}
	cc, err := grpc.NewClient(edgeAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns false; the limit only stops a hung test, the delay is logged.
	notReady := testwait.For(t, hangLimit, "/readyz to answer 503 after SIGTERM", func() bool {
		return getStatus(t, "http://"+adminAddr+"/readyz") == http.StatusServiceUnavailable
	})
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
	hr, err := healthpb.NewHealthClient(cc).Check(hctx, &healthpb.HealthCheckRequest{Service: "meshcast.v1.RiderService"})
	hcancel()
	if err != nil || hr.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health while draining: %v %v, want NOT_SERVING", hr, err)
	}
	// A new rider is refused while draining.
	resp, err := http.Get("http://" + edgeAddr + "/v1/sse" + query)
	if err != nil {
		t.Fatalf("new rider while draining: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("new rider while draining: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	allEnded := make(chan struct{})
	go func() { wg.Wait(); close(allEnded) }()
	select {
	case <-allEnded:
	case <-time.After(window + hangLimit):
		cancel()
		<-allEnded
		t.Errorf("riders still open %v after SIGTERM (window %v)", window+hangLimit, window)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("edge exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(hangLimit):
		t.Fatal("edge did not exit after its riders left")
	}

	// How each rider was told to go (what the client saw).
	for _, r := range rs {
		want := "1001 server draining"
		if r.kind == "sse" {
			want = "sse end: server draining"
		}
		if !strings.HasPrefix(r.how, want) {
			t.Errorf("%s rider ended %q, want %q...", r.kind, r.how, want)
		}
	}

	// When the edge ended each stream, from its log: the offsets from "edge draining".
	var drainAt time.Time
	var ends []time.Time
	var offsets []time.Duration
	byTransport := map[string]int{}
	for l := range strings.Lines(stderr.String()) {
		var e struct {
			Time      time.Time `json:"time"`
			Msg       string    `json:"msg"`
			Reason    string    `json:"reason"`
			Transport string    `json:"transport"`
		}
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		switch {
		case e.Msg == "edge draining":
			drainAt = e.Time
		case e.Msg == "rider stream ended":
			// No rider leaves before SIGTERM, so every end is the drain's. (The edge logs "edge
			// draining" just after it scheduled the ends, so an end scheduled at ~0 may come first.)
			if e.Reason != "drain" {
				t.Errorf("a stream ended with reason %q, want drain", e.Reason)
				continue
			}
			ends = append(ends, e.Time)
			byTransport[e.Transport]++
		}
	}
	for _, at := range ends {
		offsets = append(offsets, at.Sub(drainAt))
	}
	if drainAt.IsZero() || len(offsets) != riders {
		t.Fatalf("the edge logged %d drain ends (and \"edge draining\": %v), want %d", len(offsets), !drainAt.IsZero(), riders)
	}
	if byTransport["ws"] != riders/2 || byTransport["sse"] != riders/2 {
		t.Errorf("drain ends by transport %v, want %d ws and %d sse", byTransport, riders/2, riders/2)
	}
	// Spread: each stream's moment is uniform in [0, window) (rand.N), so a fifth of the window
	// holds ~20% of them; more than 40% in one fifth means they went together. Lateness on a
	// loaded machine only moves ends later (into the last bin, past the window), never together
	// unless the edge stalled for a good part of the window.
	slices.Sort(offsets)
	bins := make([]int, 5)
	for _, d := range offsets {
		bins[min(max(int(d*5/window), 0), len(bins)-1)]++
	}
	t.Logf("readiness false %v after SIGTERM; drain ends per fifth of the %v window (edge's log): %v; first %v, median %v, last %v",
		notReady, window, bins, offsets[0].Round(time.Millisecond), offsets[len(offsets)/2].Round(time.Millisecond),
		offsets[len(offsets)-1].Round(time.Millisecond))
	for i, n := range bins {
		if n > riders*40/100 {
			t.Errorf("fifth %d of the window holds %d of %d drain ends (over 40%%): not spread", i, n, riders)
		}
	}
}

// hangLimit bounds each wait of the drain test: it only stops a hung run (no speed is asserted).
const hangLimit = 2 * time.Minute

func getStatus(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
