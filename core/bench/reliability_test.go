package bench

// The reliability suite: each case runs a real deployment (harness_test.go) under load, does
// something bad to it, and checks the functional promise (riders kept or cut as designed, the
// final view equal to the truth). Each case adds a row to the table TestMain prints: riders
// kept, updates lost, recovery time. No assertion depends on wall-clock speed; waits are for
// conditions, bounded by waitLimit.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/sim"
	"github.com/meshcast/meshcast/core/testwait"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// row is one case's line in the suite's table.
type row struct {
	name     string
	kept     string
	lost     string
	recovery time.Duration
	notes    string
}

var (
	tableMu sync.Mutex
	table   []row
)

func report(r row) {
	tableMu.Lock()
	table = append(table, r)
	tableMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(table) > 0 {
		fmt.Println("\nreliability suite")
		fmt.Printf("| %-28s | %-26s | %-22s | %-9s | %s\n", "case", "riders kept", "updates lost", "recovery", "notes")
		for _, r := range table {
			rec := "-"
			if r.recovery > 0 {
				rec = r.recovery.Round(10 * time.Millisecond).String()
			}
			fmt.Printf("| %-28s | %-26s | %-22s | %-9s | %s\n", r.name, r.kept, r.lost, rec, r.notes)
		}
	}
	os.Exit(code)
}

// load is background traffic: simulated taxis over MQTT and riders over every transport.
type load struct {
	pub    *sim.Publisher
	cancel context.CancelFunc
	done   chan struct{}
	rs     *riderSet
}

func startLoad(tb testing.TB, d *deployment, taxis int, interval time.Duration, riders int, radius uint32, stallOf func(int) bool) *load {
	tb.Helper()
	zones := tokyo(tb)
	l := &load{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	if taxis > 0 {
		pub, err := sim.Dial(ctx, sim.PublisherConfig{Brokers: []string{d.broker.URL()}, ClientID: fmt.Sprintf("load-%d", time.Now().UnixNano()), QoS: 1})
		if err != nil {
			tb.Fatal(err)
		}
		l.pub = pub
		s, err := sim.New(sim.Config{Zones: zones, Taxis: taxis, Seed: 7, Interval: interval}, time.Now())
		if err != nil {
			tb.Fatal(err)
		}
		go func() {
			defer close(l.done)
			sim.Drive(ctx, s, func(topic string, p []byte) { pub.Publish(topic, "", p) })
		}()
	} else {
		close(l.done)
	}
	rs, err := newRiderSet(context.Background(), []string{d.edgeAddr}, radius, nil, grpcConnsFor(riders))
	if err != nil {
		tb.Fatal(err)
	}
	rs.stallOf = stallOf
	l.rs = rs
	cfg := Config{Zones: zones, Seed: 3, Mix: map[Transport]int{WS: 30, WSProto: 10, SSE: 20, GRPC: 30, GRPCWeb: 10}, ConnectConcurrency: 64}
	var errs []error
	var mu sync.Mutex
	connectRiders(context.Background(), rs, &cfg, 0, riders, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	if len(errs) > 0 {
		tb.Fatalf("%d riders failed to connect, first: %v", len(errs), errs[0])
	}
	tb.Cleanup(l.stop)
	return l
}

// grpcConnsFor is how many HTTP/2 connections riders riders share so that none carries more
// than 50 streams even if every rider were gRPC: the edge admits at most -max-streams-per-conn
// (100 by default) on one connection, and grpc-go queues the streams past it until others end,
// so with too few connections the riders past the cap would wait for their snapshot forever.
func grpcConnsFor(riders int) int { return riders/50 + 1 }

func (l *load) stop() {
	l.cancel()
	<-l.done
	if l.pub != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l.pub.Close(ctx)
		cancel()
		l.pub = nil
	}
	l.rs.close()
}

// TestReconnectStorm: every rider drops at once and reconnects at once. The edge stays up,
// every rider gets a stream that starts with a snapshot, and every one receives updates
// afterwards (nobody starved).
func TestReconnectStorm(t *testing.T) {
	const riders = 2000
	d := startDeployment(t, deployOptions{})
	l := startLoad(t, d, 2000, time.Second, riders, 1000, nil)
	l.rs.close() // everybody drops at once

	rs, err := newRiderSet(context.Background(), []string{d.edgeAddr}, 1000, nil, grpcConnsFor(riders))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.close()
	cfg := Config{Zones: tokyo(t), Seed: 3, Mix: map[Transport]int{WS: 30, WSProto: 10, SSE: 20, GRPC: 30, GRPCWeb: 10}, ConnectConcurrency: riders}
	start := time.Now()
	var failed []int
	var mu sync.Mutex
	rs2 := rs
	// All at once; a refused attempt (a connection limit answering 503) is retried.
	var wg sync.WaitGroup
	for i := range riders {
		wg.Go(func() {
			lat, lon := placeOf(cfg.Zones, cfg.Seed, i)
			for try := 0; ; try++ {
				err := rs2.open(context.Background(), i, transportOf(cfg.Mix, i), lat, lon)
				if err == nil {
					return
				}
				if try == 20 {
					mu.Lock()
					failed = append(failed, i)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	recovery := time.Since(start)
	if len(failed) > 0 {
		t.Fatalf("%d riders could not reconnect after 20 tries", len(failed))
	}
	if !d.edge.alive() {
		t.Fatal("edge died in the storm")
	}
	c := rs.c.load()
	if c.Snapshots < riders {
		t.Errorf("%d snapshots for %d reconnected riders", c.Snapshots, riders)
	}
	// Nobody starved: every rider receives events after its snapshot (heartbeats count for
	// riders with no taxi in view).
	perRider := riderEventCounts(rs)
	waitFor(t, "every reconnected rider to receive an event after its snapshot", func() bool {
		return perRider() == riders
	})
	report(row{name: "reconnect storm (2000)", kept: fmt.Sprintf("%d/%d", c.Opened, riders), lost: "n/a (state: snapshot)",
		recovery: recovery, notes: fmt.Sprintf("%d refused attempts retried, every rider got a snapshot and later events", c.ConnectFailed)})
}

// TestSlowConsumers: 10% of the riders stop reading. The stalled ones are cut with their
// transport's "too slow" (WebSocket 4008, SSE comment, gRPC and gRPC-Web RESOURCE_EXHAUSTED), which
// they read once they read again; the others keep every stream with no drop or sequence gap, and
// the edge's memory stays bounded meanwhile. The normal riders' p99 is reported, not asserted
// (wall clock), for three windows: alone; with the same 50 riders at the same places reading (a
// control: 10% more riders in a dense area load the machine whether they read or not); and
// while those 50 are stalled (from their last snapshot); each window holds the same number of
// upserts. Every rider watches 3 km, the stalled ones around Tokyo Station, where taxis are
// dense: how soon a stalled rider is cut depends on how fast its area changes (edge/transport:
// "Riders that stop reading"), and a native gRPC stream is cut only after its 64 KiB window and
// grpc-go's 64 KiB write quota are full, which takes tens of seconds here. -send-buffer is 16 KiB.
func TestSlowConsumers(t *testing.T) {
	const (
		normal, stalledN = 450, 50
		radius           = 3000
		samples          = 100000 // upserts in each measuring window
		cutLimit         = 3 * time.Minute
	)
	d := startDeployment(t, deployOptions{edgeArgs: []string{"-send-buffer", "16384", "-write-timeout", "2s"}})
	l := startLoad(t, d, 2000, time.Second, normal, radius, nil)
	pid := d.edge.cmd.Process.Pid
	rss := func() int64 {
		s, err := procSample(pid)
		if err != nil {
			t.Fatal(err)
		}
		return s.RSSBytes
	}
	l.rs.measure()
	waitFor(t, "the baseline window", func() bool { return l.rs.hist.Count() >= samples })
	p99Base, nBase := l.rs.hist.Quantile(0.99), l.rs.hist.Count()
	rssBase := rss()
	place := func(i int) (float64, float64) {
		return 35.681236 + float64(i%7)*0.001, 139.767125 + float64(i%5)*0.001
	}
	// Control: the same 50 riders at the same places, reading, so that the stall's own effect
	// on the others can be told from the effect of 10% more riders in a dense area.
	ctl, err := newRiderSet(context.Background(), []string{d.edgeAddr}, radius, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range stalledN {
		lat, lon := place(i)
		if err := ctl.open(context.Background(), i, Transports[i%len(Transports)], lat, lon); err != nil {
			t.Fatal(err)
		}
	}
	l.rs.measure()
	waitFor(t, "the window with 10% more riders reading", func() bool { return l.rs.hist.Count() >= samples })
	p99Ctl := l.rs.hist.Quantile(0.99)
	ctl.close()
	waitFor(t, "the control riders to leave", func() bool {
		return metricSum(t, d.edge.admin, "meshcast_edge_connections") <= normal
	})

	// The stalled riders, one set per transport so that each transport's cuts are counted.
	sets := make([]*riderSet, len(Transports))
	for k := range sets {
		rs, err := newRiderSet(context.Background(), []string{d.edgeAddr}, radius, nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.close()
		rs.stallOf = func(int) bool { return true }
		sets[k] = rs
	}
	tooSlow := func() float64 {
		return metricValue(t, d.edge.admin, `meshcast_edge_streams_ended_total{reason="too_slow"}`)
	}
	cut0 := tooSlow()
	for i := range stalledN {
		k := i % len(Transports)
		lat, lon := place(i)
		if err := sets[k].open(context.Background(), i, Transports[k], lat, lon); err != nil {
			t.Fatal(err)
		}
	}
	// Every stalled rider has its snapshot and reads no more: the window starts.
	l.rs.measure()
	start := time.Now()
	rssMax := rssBase
	cutAll := testwait.Until(cutLimit, func() bool {
		rssMax = max(rssMax, rss())
		if l.rs.hist.Count() >= samples {
			l.rs.measuring.Store(false) // the window ends, as the others, after this many upserts
		}
		return tooSlow()-cut0 >= stalledN
	})
	recovery := time.Since(start)
	p99With, nWith := l.rs.hist.Quantile(0.99), l.rs.hist.Count()
	// The stalled riders read again: each must find its stream ended as too slow.
	byTr := make([]string, len(sets))
	want := int64(stalledN / len(Transports))
	for k, rs := range sets {
		rs.wakeStalled()
		if cutAll {
			waitFor(t, fmt.Sprintf("the stalled %s riders to read how their streams ended", Transports[k]), func() bool {
				c := rs.c.load()
				return c.StalledCuts+c.Drops >= want
			})
		}
	}
	if !cutAll {
		// Which transport kept its stalled riders: wait until the riders saw the cuts the edge made.
		cuts := tooSlow() - cut0
		waitFor(t, "the riders to see the cuts the edge made", func() bool {
			var seen int64
			for _, rs := range sets {
				c := rs.c.load()
				seen += c.StalledCuts + c.Drops // a cut as too slow, or an ending the rider could not read
			}
			return float64(seen) >= cuts
		})
	}
	var stalledCuts, stalledDrops int64
	for k, rs := range sets {
		c := rs.c.load()
		byTr[k] = fmt.Sprintf("%s %d/%d", Transports[k], c.StalledCuts, want)
		stalledCuts += c.StalledCuts
		stalledDrops += c.Drops
	}
	if !cutAll {
		t.Fatalf("after %v the edge had cut %.0f of %d stalled riders; cut as seen by the riders: %v", cutLimit, tooSlow()-cut0, stalledN, byTr)
	}

	c := l.rs.c.load()
	if c.Cuts != 0 || c.Drops != 0 || c.SeqErrors != 0 || c.Connected != normal {
		t.Errorf("normal riders: %+v, want all %d connected with no cut, drop or seq error", c, normal)
	}
	if stalledCuts != stalledN || stalledDrops != 0 {
		t.Errorf("stalled riders cut as too slow: %v (%d ended otherwise), want all %d", byTr, stalledDrops, stalledN)
	}
	// Bounded: each stalled rider holds at most one pending update per vehicle in view plus its
	// transport's buffer (16 KiB send buffer, or a gRPC stream's 64 KiB window and write quota).
	if grew := rssMax - rssBase; grew > 64<<20 {
		t.Errorf("edge RSS grew by %d MiB with %d stalled riders", grew>>20, stalledN)
	}
	ratio := float64(p99With) / float64(max(p99Base, time.Millisecond))
	report(row{name: "10% of riders stop reading", kept: fmt.Sprintf("%d/%d reading; %d/%d stalled cut (%s)", c.Connected, normal, stalledCuts, stalledN, strings.Join(byTr, ", ")),
		lost: "0 (no cut/drop/seq gap)", recovery: recovery,
		notes: fmt.Sprintf("the readers' p99: %v alone (%d upserts), %v with the 50 reading, %v while they are stalled (%d upserts): %.2fx alone, %.2fx the reading run; edge RSS %d MiB, max %d MiB while stalled; every stalled rider read its too-slow ending",
			p99Base, nBase, p99Ctl, p99With, nWith, ratio, float64(p99With)/float64(max(p99Ctl, time.Millisecond)), rssBase>>20, rssMax>>20)})
}

// metricValue returns one series of a Prometheus text endpoint (0 when absent), named with its
// labels as exposed, e.g. `x_total{reason="a"}`.
func metricValue(t *testing.T, admin, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(metricsText(t, admin), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// riderEventCounts returns a function counting riders that received at least two events.
func riderEventCounts(rs *riderSet) func() int {
	return func() int { return int(rs.busy.Load()) }
}

// TestBadInputAtVolume: a stream of fuzzed MQTT payloads and topics, and malformed client
// frames and requests on every transport, during normal traffic. The normal riders keep every
// stream (no cut, drop or sequence error) and keep receiving updates; both processes stay up.
func TestBadInputAtVolume(t *testing.T) {
	const riders = 500
	d := startDeployment(t, deployOptions{})
	l := startLoad(t, d, 1000, time.Second, riders, 1000, nil)
	l.rs.measure()

	// Fuzzed MQTT: mutated good payloads, random bytes, odd topics.
	ctx := context.Background()
	bad, err := sim.Dial(ctx, sim.PublisherConfig{Brokers: []string{d.broker.URL()}, ClientID: "fuzz", QoS: 1, InFlight: 32})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	recv0, rej0 := metricSum(t, d.bridge.admin, "meshcast_bridge_messages_received_total"), metricSum(t, d.bridge.admin, "meshcast_bridge_messages_rejected_total")
	good := []byte(`{"lat":35.681236,"lon":139.767125,"ts":1732260000123,"status":"vacant","heading":90.0,"speed":12.5,"class":"standard"}`)
	const fuzzed = 20000
	for i := range fuzzed {
		p := mutate(r, good)
		topic := fmt.Sprintf("taxi/fuzz/v%d/state", i%500)
		ct := ""
		switch i % 10 {
		case 7:
			ct = "application/x-protobuf"
		case 8:
			topic = "taxi/" + strings.Repeat("x", 70) + "/v/state"
		case 9:
			topic = "taxi/fuzz/v%2F1/state"
		}
		bad.Publish(topic, ct, p)
	}
	// Malformed client frames on every transport.
	badClients(t, d.edgeAddr, r)
	bad.Close(ctx)
	waitFor(t, "the bridge to have received every fuzzed message", func() bool {
		return metricSum(t, d.bridge.admin, "meshcast_bridge_messages_received_total") >= recv0+fuzzed
	})
	rejected := metricSum(t, d.bridge.admin, "meshcast_bridge_messages_rejected_total") - rej0

	// Normal traffic continues: new updates reach the riders after the bad input.
	before := l.rs.c.upserts.Load()
	waitFor(t, "updates after the bad input", func() bool { return l.rs.c.upserts.Load() > before+int64(riders) })
	if !d.edge.alive() || !d.bridge.alive() {
		t.Fatal("a process died")
	}
	if httpStatus(d.bridge.admin+"/readyz") != 200 || httpStatus(d.edge.admin+"/readyz") != 200 {
		t.Fatal("a process is not ready after the bad input")
	}
	c := l.rs.c.load()
	if c.Cuts != 0 || c.Drops != 0 || c.SeqErrors != 0 || c.Connected != riders {
		t.Errorf("normal riders: %+v, want all %d connected with no cut, drop or seq error", c, riders)
	}
	report(row{name: "bad input at volume", kept: fmt.Sprintf("%d/%d", c.Connected, riders), lost: "0 (no cut/drop/seq gap)",
		notes: fmt.Sprintf("%d fuzzed MQTT messages (%.0f rejected by the bridge), %d malformed client requests; normal p99 %v", fuzzed, rejected, badClientCount, l.rs.hist.Quantile(0.99))})
	if rejected < fuzzed/2 {
		t.Errorf("only %.0f of %d fuzzed messages rejected: the fuzz did not reach the bridge", rejected, fuzzed)
	}
}

// mutate returns a fuzzed copy of b: bit flips, truncation, insertion, or random bytes.
func mutate(r *rand.Rand, b []byte) []byte {
	out := append([]byte(nil), b...)
	switch r.IntN(5) {
	case 0:
		for range 1 + r.IntN(8) {
			i := r.IntN(len(out))
			out[i] ^= byte(1 << r.IntN(8))
		}
	case 1:
		out = out[:r.IntN(len(out))]
	case 2:
		i := r.IntN(len(out))
		junk := make([]byte, 1+r.IntN(32))
		for j := range junk {
			junk[j] = byte(r.IntN(256))
		}
		out = append(out[:i], append(junk, out[i:]...)...)
	case 3:
		out = make([]byte, r.IntN(512))
		for j := range out {
			out[j] = byte(r.IntN(256))
		}
	case 4:
		out = []byte(strings.Replace(string(out), "35.681236", []string{"1e999", "-91", "NaN", `"x"`, "null"}[r.IntN(5)], 1))
	}
	return out
}

// badClientCount is how many malformed requests badClients sends.
const badClientCount = 4 * 50

// badClients sends malformed requests on every transport: WebSocket binary garbage and bad
// moves, bad queries over SSE and WebSocket, garbage gRPC and gRPC-Web request bodies.
func badClients(t *testing.T, addr string, r *rand.Rand) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := newHTTPClient()
	var wg sync.WaitGroup
	for i := range 50 {
		junk := make([]byte, 1+r.IntN(200))
		for j := range junk {
			junk[j] = byte(r.IntN(256))
		}
		wg.Go(func() { badWS(addr, junk, i) })
		wg.Go(func() {
			resp, err := hc.Get(fmt.Sprintf("http://%s/v1/sse?lat=%d&lon=abc&radius_m=-%d", addr, 91+i, i))
			if err == nil {
				resp.Body.Close()
			}
		})
		wg.Go(func() {
			st, err := cc.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, meshcastv1.RiderService_Watch_FullMethodName,
				grpc.ForceCodecV2(rawCodec{}))
			if err == nil {
				st.SendMsg(junk)
				st.CloseSend()
				var b []byte
				st.RecvMsg(&b)
			}
		})
		wg.Go(func() { badGRPCWeb(hc, addr, junk) })
	}
	wg.Wait()
}

// TestBridgeKill9, TestMosquittoRestart, TestRedisMasterKill, TestEdgeDrain: a fault under
// load; the truth (controlled vehicles with known last fixes) must be what every watching
// rider finally sees.
func TestBridgeKill9(t *testing.T) {
	faultCase(t, "bridge kill -9", deployOptions{}, func(t *testing.T, d *deployment, tr *truth) {
		d.bridge.signal(t, syscall.SIGKILL)
		tr.round(t) // published while no bridge runs: queued by mosquitto for the bridge's session
		tr.flush(t)
		d.restartBridge(t)
	}, false)
}

func TestMosquittoRestart(t *testing.T) {
	faultCase(t, "mosquitto restart", deployOptions{persist: true}, func(t *testing.T, d *deployment, tr *truth) {
		conns := metricSum(t, d.bridge.admin, "meshcast_bridge_connections_total")
		if err := d.broker.Restart(); err != nil {
			t.Fatal(err)
		}
		// mosquitto 2.0.11 restores sessions and queued messages from its persistence file but
		// not $share subscriptions (deploy/README.md): a fix published before the bridge has
		// subscribed again matches no subscriber and the broker drops it, whatever its QoS. So
		// the round after the restart is published once the bridge is connected and subscribed
		// again; QoS 1 then covers it like any other.
		waitFor(t, "the bridge to reconnect and subscribe after the broker restart", func() bool {
			return metricSum(t, d.bridge.admin, "meshcast_bridge_connections_total") > conns &&
				httpStatus(d.bridge.admin+"/readyz") == http.StatusOK
		})
	}, true)
}

func TestRedisMasterKill(t *testing.T) {
	faultCase(t, "Redis master kill", deployOptions{replicas: 1}, func(t *testing.T, d *deployment, tr *truth) {
		ms, err := d.cluster.Masters()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.cluster.KillMaster(ms[0]); err != nil {
			t.Fatal(err)
		}
		tr.round(t)
	}, true)
}

func TestEdgeDrain(t *testing.T) {
	faultCase(t, "edge SIGTERM drain", deployOptions{}, func(t *testing.T, d *deployment, tr *truth) {
		old := d.edge
		d.restartEdgeOn(t, freeAddr(t)) // a second edge; riders of the first reconnect to it
		old.signal(t, syscall.SIGTERM)
		if code := old.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("edge exited with %d after SIGTERM", code)
		}
		tr.round(t)
	}, true)
}

// faultCase runs background load and watching riders, applies fault, publishes a last round
// of the truth (when roundAfter; otherwise the fault's own last round, published during the
// fault, is the truth) and waits until every watching rider's view equals it.
func faultCase(t *testing.T, name string, o deployOptions, fault func(*testing.T, *deployment, *truth), roundAfter bool) {
	d := startDeployment(t, o)
	startLoad(t, d, 500, time.Second, 200, 1000, nil)
	tr := newTruth(t, d)
	views := make([]*view, 8)
	for i := range views {
		views[i] = watchView(t, d, i)
	}
	tr.round(t)
	waitFor(t, "the views to match the truth before the fault", func() bool { return allMatch(views, tr) })
	for range 3 {
		tr.round(t)
	}
	start := time.Now()
	fault(t, d, tr)
	if roundAfter {
		tr.round(t)
	}
	if !testwait.Until(waitLimit, func() bool { return allMatch(views, tr) }) {
		for _, v := range views {
			if diff := v.diff(tr); diff != "" {
				t.Errorf("view %d: %s", v.n, diff)
			}
		}
		published, failed := tr.pub.Stats()
		t.Logf("truth: %d rounds of %d, publisher acknowledged %d, gave up %d; bridge received %.0f, applied %.0f",
			tr.rounds, tr.n, published, failed, metricSum(t, d.bridge.admin, "meshcast_bridge_messages_received_total"),
			metricSum(t, d.bridge.admin, "meshcast_bridge_messages_applied_total"))
		for _, m := range []string{"meshcast_bridge_events_published_total", "meshcast_bridge_bus_errors_total", "meshcast_hub_events_received_total",
			"meshcast_hub_deliveries_total", "meshcast_hub_expired_total", "meshcast_hub_resyncs_total"} {
			admin := d.edge.admin
			if strings.HasPrefix(m, "meshcast_bridge") {
				admin = d.bridge.admin
			}
			t.Logf("%s %.0f", m, metricSum(t, admin, m))
		}
		t.FailNow()
	}
	rec := time.Since(start)
	recon := 0
	for _, v := range views {
		recon += v.reconnects()
	}
	report(row{name: name, kept: fmt.Sprintf("%d/%d watching riders", len(views), len(views)), lost: "0 (final view = truth)",
		recovery: rec, notes: fmt.Sprintf("%d controlled vehicles, %d rounds, %d reconnects", tr.n, tr.rounds, recon)})
}

func allMatch(vs []*view, tr *truth) bool {
	for _, v := range vs {
		if v.diff(tr) != "" {
			return false
		}
	}
	return true
}

// metricsText fetches a process's /metrics (Prometheus text).
func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := newHTTPClient().Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricSum sums every sample of a metric on a Prometheus text endpoint.
func metricSum(t *testing.T, admin, name string) float64 {
	t.Helper()
	sum := 0.0
	for line := range strings.SplitSeq(metricsText(t, admin), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestVehicleReturnsAfterExpiry: vehicles whose fixes stop for longer than the TTL disappear
// from the riders' views; when their fixes resume they must come back (the cause suspected
// behind the mosquitto restart failures).
func TestVehicleReturnsAfterExpiry(t *testing.T) {
	d := startDeployment(t, deployOptions{})
	tr := newTruth(t, d)
	views := []*view{watchView(t, d, 0), watchView(t, d, 1)}
	tr.round(t)
	waitFor(t, "the views to match the truth", func() bool { return allMatch(views, tr) })
	waitFor(t, "the vehicles to expire from the views (TTL)", func() bool {
		for _, v := range views {
			v.mu.Lock()
			n := len(v.cars)
			v.mu.Unlock()
			if n != 0 {
				return false
			}
		}
		return true
	})
	start := time.Now()
	tr.round(t)
	if !testwait.Until(waitLimit, func() bool { return allMatch(views, tr) }) {
		t.Fatalf("after expiry, resumed fixes did not reach the riders: view 0: %s", views[0].diff(tr))
	}
	report(row{name: "vehicles return after TTL expiry", kept: "2/2 watching riders", lost: "0 (final view = truth)", recovery: time.Since(start),
		notes: "fixes stopped for longer than the TTL, then resumed"})
}
