package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The slow attackers of the bad-input case: clients that open requests and streams and never
// complete them, during normal traffic. Each must be cut within the edge's -handshake-timeout
// (DEADLINE_EXCEEDED, counted in meshcast_edge_stalled_total) while it counted against the
// limits, and the edge's goroutines and memory must come back once they are cut.

const (
	stalledWebBodies  = 1000 // gRPC-Web requests whose body never completes, one connection each
	stalledH2Streams  = 5000 // native gRPC streams whose request never comes
	h2StreamsPerConn  = 100  // the edge's default -max-streams-per-conn
	attackBound       = 10 * time.Second
	attackBoundFlag   = "10s"
	stalledGoroutines = 200 // "back to normal": within this many goroutines of the level before
)

// edgeGauges is one reading of the edge's /metrics.
type edgeGauges struct {
	goroutines, rss, heap, conns, cpu float64
}

// gcEdge makes the edge collect garbage (a heap profile with gc=1), so that its heap in use
// is its live memory.
// Twice: sync.Pool keeps what it held for one more collection. MESHCAST_BENCH_HEAP=prefix saves
// the heap profile (in use after the collection) to prefix-<n>.
func gcEdge(t *testing.T, admin string) {
	t.Helper()
	var b []byte
	for range 2 {
		resp, err := newHTTPClient().Get(admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if prefix := os.Getenv("MESHCAST_BENCH_HEAP"); prefix != "" {
		heapProfiles++
		os.WriteFile(fmt.Sprintf("%s-%d", prefix, heapProfiles), b, 0o644)
	}
}

var heapProfiles int

func readEdgeGauges(admin string) (edgeGauges, error) {
	resp, err := newHTTPClient().Get(admin + "/metrics")
	if err != nil {
		return edgeGauges{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return edgeGauges{}, err
	}
	var g edgeGauges
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(line, "#") {
			continue
		}
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch name, _, _ := strings.Cut(f[0], "{"); name {
		case "go_goroutines":
			g.goroutines = v
		case "process_resident_memory_bytes":
			g.rss = v
		case "go_memstats_heap_inuse_bytes":
			g.heap = v
		case "process_cpu_seconds_total":
			g.cpu = v
		case "meshcast_edge_connections":
			g.conns += v
		}
	}
	return g, nil
}

// cut is how one stalled request or stream ended, and how long after its last byte.
type cut struct {
	after  time.Duration
	status string // grpc-status, or "rst <code>", or the error
}

// stalledWebBody sends a gRPC-Web Watch whose body announces 23 bytes and sends 2, then reads
// the answer until the server closes the connection.
func stalledWebBody(addr string, sent *sync.WaitGroup) cut {
	done := sync.OnceFunc(sent.Done) // after the last byte sent, or on failure
	defer done()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		return cut{status: err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	_, err = io.WriteString(c, "POST "+meshcastv1.RiderService_Watch_FullMethodName+" HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: 23\r\n\r\n\x00\x00")
	start := time.Now()
	done()
	if err != nil {
		return cut{status: err.Error()}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return cut{after: time.Since(start), status: err.Error()}
	}
	body, _ := io.ReadAll(resp.Body)
	after := time.Since(start)
	status := resp.Header.Get("Grpc-Status")
	for status == "" && len(body) >= 5 { // the trailer frame (flag 0x80) of the body
		n := int(binary.BigEndian.Uint32(body[1:5]))
		if len(body) < 5+n {
			break
		}
		if body[0]&0x80 != 0 {
			h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(body[5:5+n], "\r\n"...)))).ReadMIMEHeader()
			status = h.Get("Grpc-Status")
		}
		body = body[5+n:]
	}
	if _, err := br.ReadByte(); err != io.EOF {
		status += " (connection left open)"
	}
	return cut{after: after, status: status}
}

// stalledH2Conn opens n native gRPC Watch streams on one HTTP/2 connection without ever
// sending their request, then reads until every stream has ended.
func stalledH2Conn(addr string, n int, sent *sync.WaitGroup) []cut {
	done := sync.OnceFunc(sent.Done)
	defer done()
	out := make([]cut, 0, n)
	fail := func(err error) []cut {
		for len(out) < n {
			out = append(out, cut{status: err.Error()})
		}
		return out
	}
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	_, err = io.WriteString(c, http2.ClientPreface)
	if err == nil {
		err = fr.WriteSettings()
	}
	for i := 0; i < n && err == nil; i++ {
		hb.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: meshcastv1.RiderService_Watch_FullMethodName}, {Name: ":authority", Value: addr},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"}} {
			enc.WriteField(f)
		}
		err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndHeaders: true})
	}
	start := time.Now()
	done()
	if err != nil {
		return fail(err)
	}
	ended := make(map[uint32]bool, n) // trailers, then RST_STREAM(NO_ERROR): the first counts
	end := func(id uint32, status string) {
		if !ended[id] {
			ended[id] = true
			out = append(out, cut{after: time.Since(start), status: status})
		}
	}
	for len(out) < n {
		f, err := fr.ReadFrame()
		if err != nil {
			return fail(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return fail(fmt.Errorf("GOAWAY %v", f.ErrCode))
		case *http2.RSTStreamFrame:
			end(f.StreamID, "rst "+f.ErrCode.String())
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				end(f.StreamID, grpcStatusOf(f))
			}
		}
	}
	return out
}

func grpcStatusOf(f *http2.MetaHeadersFrame) string {
	for _, hf := range f.Fields {
		if hf.Name == "grpc-status" {
			return hf.Value
		}
	}
	return ""
}

// TestBadInputSlowAttackers: 1,000 gRPC-Web requests whose body never completes and 5,000
// native gRPC streams (50 HTTP/2 connections of 100) whose request never comes, all at once,
// during normal traffic. Every one is counted against the limits while it waits, cut with
// DEADLINE_EXCEEDED and counted in meshcast_edge_stalled_total; the edge's goroutines come
// back to their level before; the normal riders keep every stream (no cut, drop or sequence
// gap). The times are reported against the bound, not asserted.
func TestBadInputSlowAttackers(t *testing.T) {
	const riders = 500
	d := startDeployment(t, deployOptions{edgeArgs: []string{"-handshake-timeout", attackBoundFlag}})
	l := startLoad(t, d, 1000, time.Second, riders, 1000, nil)
	waitFor(t, "updates to the riders", func() bool { return l.rs.c.upserts.Load() > int64(riders) })
	// A quiet window as long as the attack's, for comparison.
	window := attackBound + 2*time.Second
	q0, err := readEdgeGauges(d.edge.admin)
	if err != nil {
		t.Fatal(err)
	}
	// closeWindow returns the riders' p99 of the window that ends and starts the next one; the
	// cuts and drops of every window are kept.
	var lostCuts, lostDrops int64
	closeWindow := func() time.Duration {
		p := l.rs.hist.Quantile(0.99)
		lostCuts += l.rs.c.cuts.Load()
		lostDrops += l.rs.c.drops.Load()
		l.rs.measure()
		return p
	}
	l.rs.measure()
	time.Sleep(window) // the measurement window, not a synchronisation
	quietP99 := closeWindow()
	q1, err := readEdgeGauges(d.edge.admin)
	if err != nil {
		t.Fatal(err)
	}
	gcEdge(t, d.edge.admin)
	before, err := readEdgeGauges(d.edge.admin)
	if err != nil {
		t.Fatal(err)
	}
	stalled0 := metricSum(t, d.edge.admin, "meshcast_edge_stalled_total")

	// During the attack: the peak of the edge's goroutines, RSS and counted streams.
	var peak edgeGauges
	var peakMu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if g, err := readEdgeGauges(d.edge.admin); err == nil {
				peakMu.Lock()
				peak.goroutines, peak.rss, peak.conns = max(peak.goroutines, g.goroutines), max(peak.rss, g.rss), max(peak.conns, g.conns)
				peak.heap = max(peak.heap, g.heap)
				peakMu.Unlock()
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond): // sampling period, not a synchronisation
			}
		}
	}()

	// MESHCAST_BENCH_PROFILE=file: a CPU profile of the edge over the attack.
	profiled := make(chan struct{})
	if path := os.Getenv("MESHCAST_BENCH_PROFILE"); path != "" {
		go func() {
			defer close(profiled)
			c := http.Client{Timeout: waitLimit}
			resp, err := c.Get(d.edge.admin + "/debug/pprof/profile?seconds=12")
			if err != nil {
				t.Errorf("profile: %v", err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Errorf("profile: %v", err)
			}
		}()
	} else {
		close(profiled)
	}
	attackStart := time.Now()
	var cutsMu sync.Mutex
	var webCuts, h2Cuts []cut
	var wg, sent sync.WaitGroup
	sent.Add(stalledH2Streams/h2StreamsPerConn + stalledWebBodies)
	for range stalledH2Streams / h2StreamsPerConn {
		wg.Go(func() {
			r := stalledH2Conn(d.edgeAddr, h2StreamsPerConn, &sent)
			cutsMu.Lock()
			h2Cuts = append(h2Cuts, r...)
			cutsMu.Unlock()
		})
	}
	for range stalledWebBodies {
		wg.Go(func() {
			r := stalledWebBody(d.edgeAddr, &sent)
			cutsMu.Lock()
			webCuts = append(webCuts, r)
			cutsMu.Unlock()
		})
	}
	// Three windows: the attackers connecting and sending, the 6,000 stalled held, the cut.
	sent.Wait()
	openTime := time.Since(attackStart)
	openP99 := closeWindow()
	time.Sleep(time.Until(attackStart.Add(attackBound - time.Second))) // measurement window
	holdP99 := closeWindow()
	wg.Wait()
	attackP99 := closeWindow() // the cut
	<-profiled
	close(stopSampling)
	<-sampled
	attackEnd, err := readEdgeGauges(d.edge.admin)
	if err != nil {
		t.Fatal(err)
	}
	attackTime := time.Since(attackStart)

	stalled := metricSum(t, d.edge.admin, "meshcast_edge_stalled_total") - stalled0
	summarize := func(name, want string, cs []cut) (maxAfter time.Duration) {
		bad := 0
		for _, c := range cs {
			if c.status != want {
				if bad < 5 {
					t.Errorf("%s: ended %q after %v, want %q", name, c.status, c.after, want)
				}
				bad++
			}
			maxAfter = max(maxAfter, c.after)
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d not cut with DEADLINE_EXCEEDED", name, bad, len(cs))
		}
		return maxAfter
	}
	webMax := summarize("stalled gRPC-Web body", "4", webCuts)
	h2Max := summarize("stalled HTTP/2 stream", "4", h2Cuts)
	within := func(cs []cut) int {
		return len(slices.DeleteFunc(slices.Clone(cs), func(c cut) bool { return c.after > attackBound+time.Second }))
	}

	// After: the edge's goroutines come back.
	var after edgeGauges
	waitFor(t, "the edge's goroutines to come back after the attack", func() bool {
		after, err = readEdgeGauges(d.edge.admin)
		return err == nil && after.goroutines <= before.goroutines+stalledGoroutines
	})
	gcEdge(t, d.edge.admin)
	if after, err = readEdgeGauges(d.edge.admin); err != nil {
		t.Fatal(err)
	}
	if !d.edge.alive() || httpStatus(d.edge.admin+"/readyz") != http.StatusOK {
		t.Fatal("the edge is not up and ready after the attack")
	}
	before2 := l.rs.c.upserts.Load()
	waitFor(t, "updates after the attack", func() bool { return l.rs.c.upserts.Load() > before2+int64(riders) })
	c := l.rs.c.load()
	c.Cuts += lostCuts
	c.Drops += lostDrops
	if c.Cuts != 0 || c.Drops != 0 || c.SeqErrors != 0 || c.Connected != riders {
		t.Errorf("normal riders: %+v, want all %d connected with no cut, drop or seq error", c, riders)
	}
	if stalled != stalledWebBodies+stalledH2Streams {
		t.Errorf("meshcast_edge_stalled_total grew by %.0f, want %d", stalled, stalledWebBodies+stalledH2Streams)
	}
	mib := func(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
	t.Logf("slow attackers (bound %v): edge goroutines %.0f before, %.0f peak during, %.0f after; RSS %s, %s, %s; heap in use %s, %s, %s; rider streams counted at peak %.0f (%d riders + %d stalled)",
		attackBound, before.goroutines, peak.goroutines, after.goroutines, mib(before.rss), mib(peak.rss), mib(after.rss),
		mib(before.heap), mib(peak.heap), mib(after.heap), peak.conns, riders, stalledWebBodies+stalledH2Streams)
	t.Logf("gRPC-Web bodies: %d/%d cut (DEADLINE_EXCEEDED, connection closed), the last %v after its last byte, %d within bound+1s; HTTP/2 streams: %d/%d cut, the last %v after the connection's last byte, %d within bound+1s",
		len(webCuts), stalledWebBodies, webMax.Round(time.Millisecond), within(webCuts), len(h2Cuts), stalledH2Streams, h2Max.Round(time.Millisecond), within(h2Cuts))
	t.Logf("normal riders: %d/%d kept, cuts %d, drops %d, seq errors %d; p99 %v in a quiet %v window; during the attack (%v): %v while the attackers connect and send (%v), %v while the stalled are held, %v during the cut",
		c.Connected, riders, c.Cuts, c.Drops, c.SeqErrors, quietP99, window, attackTime.Round(time.Millisecond), openP99, openTime.Round(time.Millisecond), holdP99, attackP99)
	t.Logf("edge CPU: %.2f s in the quiet window, %.2f s during the attack", q1.cpu-q0.cpu, attackEnd.cpu-before.cpu)
	report(row{name: "slow attackers", kept: fmt.Sprintf("%d/%d", c.Connected, riders), lost: "0 (no cut/drop/seq gap)",
		notes: fmt.Sprintf("%d stalled gRPC-Web bodies + %d stalled HTTP/2 streams cut within %v (last after %v, %v); edge goroutines %.0f/%.0f/%.0f, RSS %s/%s/%s before/peak/after; normal p99 %v quiet, at most %v during (worst of 3 windows)",
			stalledWebBodies, stalledH2Streams, attackBound, webMax.Round(time.Millisecond), h2Max.Round(time.Millisecond),
			before.goroutines, peak.goroutines, after.goroutines, mib(before.rss), mib(peak.rss), mib(after.rss), quietP99, max(openP99, holdP99, attackP99))})
}
