package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/testport"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// FanoutConfig is one run of the edge fan-out harness (Fanout): a redis-server and a `meshcast
// edge` started for the run, the edge pinned to EdgeCPU and everything else (Redis, the publisher,
// the riders) to LoadCPU, riders standing at the centres of a block of third meshes, and vehicles
// published straight into Redis (bus.Apply, as a bridge does) at the pace that gives each target
// delivered rate.
type FanoutConfig struct {
	EdgeBin   string   // the binary whose `edge` subcommand is measured (required)
	EdgeFlags []string // extra flags for the edge (e.g. -write-delay=0)
	RedisBin  string   // default "redis-server"
	EdgeCPU   int      // CPU the edge is pinned to (taskset); negative: not pinned
	LoadCPU   int      // CPU Redis, the publisher and the riders are pinned to; negative: not pinned
	Riders    int      // default 5000
	Mix       map[Transport]int
	// GRPCConns is the number of HTTP/2 connections the gRPC riders share (Riders: one each).
	// Default: one per 50 gRPC riders (the edge's -max-streams-per-conn is 100 by default).
	GRPCConns int
	RadiusM   uint32 // default 1000: a 3x3 block of third meshes around each rider
	// Block is the side of the square block of third meshes the vehicles move in (default 10);
	// riders stand at the centres of its inner meshes (all but the outer ring).
	Block int
	// Rates are the delivered events per second to drive, one step each, in order. None: the
	// riders connect, get their snapshot of Idle vehicles and stay idle for Duration (memory).
	Rates []int
	// Knee continues after Rates with steps 25% apart while a step delivers at least 95% of its
	// target with p99 ≤ KneeP99 (default 50ms), at most 8 more steps.
	Knee    bool
	KneeP99 time.Duration
	// Interval is how often each vehicle reports (default 3s): the number of vehicles follows
	// from the rate.
	Interval time.Duration
	Idle     int           // vehicles published before the riders connect (default 200)
	Warmup   time.Duration // before each step's window (default 3s)
	Duration time.Duration // each step's window (default 10s)
	Seed     uint64
	Log      io.Writer
	// ProfileDir, when set, gets a CPU profile of the edge over each step's window
	// (fanout-<rate>.pprof, from the edge's /debug/pprof/profile).
	ProfileDir string
}

// FanoutStep is what one step measured.
type FanoutStep struct {
	Target          int     `json:"target_per_s"`
	Delivered       float64 `json:"delivered_per_s"` // events the riders received per second
	Predicted       float64 `json:"predicted_per_s"` // deliveries the publisher's geometry predicted
	Updates         float64 `json:"updates_per_s"`   // vehicle fixes published per second
	Vehicles        int     `json:"vehicles"`
	EdgeCores       float64 `json:"edge_cores"`
	MicrosPerEvent  float64 `json:"edge_us_per_event"`
	EventsPerCPUSec float64 `json:"events_per_edge_cpu_s"`
	WritesPerSec    float64 `json:"edge_writes_per_s"`
	EventsPerWrite  float64 `json:"events_per_write"`
	RSSMB           float64 `json:"edge_rss_mb"`
	Latency         Latency `json:"latency"`
	// Where the tail comes from: the p99 of the edge's own latency to its write (an upper bucket
	// bound of meshcast_edge_delivery_latency_seconds) and of this harness's scheduler latency.
	EdgeWriteP99ms   float64 `json:"edge_write_p99_ms"`
	BenchSchedP99ms  float64 `json:"bench_sched_p99_ms"`
	Cuts, Drops      int64   `json:"-"`
	Connected        int64   `json:"connected"`
	LoadAvg          string  `json:"loadavg"`
	LoadCPUBusy      float64 `json:"load_cpu_busy"` // share of the load CPU in use (/proc/stat)
	BenchCores       float64 `json:"bench_cores"`   // this process (riders, publisher)
	RedisCores       float64 `json:"redis_cores"`
	SeqErrors        int64   `json:"seq_errors"`
	WindowSeconds    float64 `json:"window_s"`
	KneeStep         bool    `json:"knee_step,omitempty"`
	CutsAndDropsText string  `json:"cuts_drops"`
}

// FanoutResult is a whole run.
type FanoutResult struct {
	Started        time.Time         `json:"started"`
	EdgeBin        string            `json:"edge_bin"`
	EdgeFlags      []string          `json:"edge_flags"`
	Riders         int               `json:"riders"`
	RidersBy       map[Transport]int `json:"riders_by_transport"`
	ConnectSeconds float64           `json:"connect_seconds"`
	RSSBeforeMB    float64           `json:"edge_rss_before_riders_mb"`
	RSSIdleMB      float64           `json:"edge_rss_idle_mb"` // with every rider connected and idle
	PerRiderKB     float64           `json:"edge_rss_per_rider_kb"`
	Steps          []FanoutStep      `json:"steps"`
	Knee           int               `json:"knee_per_s,omitempty"`
}

func (c *FanoutConfig) defaults() error {
	if c.EdgeBin == "" {
		return errors.New("fanout: no edge binary")
	}
	if c.RedisBin == "" {
		c.RedisBin = "redis-server"
	}
	if c.Riders <= 0 {
		c.Riders = 5000
	}
	if len(c.Mix) == 0 {
		c.Mix = map[Transport]int{WS: 1, WSProto: 1, SSE: 1, GRPC: 1, GRPCWeb: 1}
	}
	if c.GRPCConns <= 0 {
		n := 0
		for i := range c.Riders {
			if transportOf(c.Mix, i) == GRPC {
				n++
			}
		}
		c.GRPCConns = max(1, (n+49)/50)
	}
	if c.RadiusM == 0 {
		c.RadiusM = 1000
	}
	if c.Block == 0 {
		c.Block = 10
	}
	if c.Block < 3 || c.Block > 100 {
		return fmt.Errorf("fanout: block %d: want 3..100", c.Block)
	}
	for _, r := range c.Rates {
		if r <= 0 {
			return fmt.Errorf("fanout: rate %d: want a positive rate", r)
		}
	}
	if c.KneeP99 <= 0 {
		c.KneeP99 = 50 * time.Millisecond
	}
	if c.Interval <= 0 {
		c.Interval = 3 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 200
	}
	if c.Warmup <= 0 {
		c.Warmup = 3 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Fanout runs the fan-out harness: see FanoutConfig.
func Fanout(ctx context.Context, cfg FanoutConfig) (*FanoutResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(cfg.Log, format+"\n", a...) }
	if cfg.LoadCPU >= 0 {
		if err := pinSelf(cfg.LoadCPU); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "meshcast-fanout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// Redis.
	rport, err := testport.Free(21000, 29000)
	if err != nil {
		return nil, err
	}
	redis, err := startPinned(ctx, cfg.LoadCPU, filepath.Join(dir, "redis.log"), cfg.RedisBin,
		"--port", strconv.Itoa(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		return nil, err
	}
	defer stopProc(redis)
	busAddr := "redis://127.0.0.1:" + strconv.Itoa(rport)
	var b bus.Bus
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err = bus.Open(ctx, busAddr, bus.Options{KeyPrefix: "fanout"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("fanout: redis at %s: %w", busAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer b.Close()

	// The edge.
	lport, err := testport.Free(21000, 29000)
	if err != nil {
		return nil, err
	}
	aport, err := testport.Free(21000, 29000)
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(lport)
	admin := "127.0.0.1:" + strconv.Itoa(aport)
	args := append([]string{"edge", "-listen", listen, "-admin", admin, "-bus", busAddr, "-bus-prefix", "fanout",
		"-insecure-no-auth", "-log-level", "warn"}, cfg.EdgeFlags...)
	edge, err := startPinned(ctx, cfg.EdgeCPU, filepath.Join(dir, "edge.log"), cfg.EdgeBin, args...)
	if err != nil {
		return nil, err
	}
	defer stopProc(edge)
	if err := waitReady(ctx, "http://"+admin+"/readyz", 20*time.Second); err != nil {
		return nil, fmt.Errorf("fanout: edge %s: %w (log: %s)", cfg.EdgeBin, err, tailFile(filepath.Join(dir, "edge.log")))
	}
	logf("fanout: edge %s %s pinned to CPU %d (pid %d), redis-server pid %d, load on CPU %d",
		cfg.EdgeBin, strings.Join(cfg.EdgeFlags, " "), cfg.EdgeCPU, edge.Process.Pid, redis.Process.Pid, cfg.LoadCPU)

	res := &FanoutResult{Started: time.Now().UTC(), EdgeBin: cfg.EdgeBin, EdgeFlags: cfg.EdgeFlags, Riders: cfg.Riders,
		RidersBy: map[Transport]int{}}
	for i := range cfg.Riders {
		res.RidersBy[transportOf(cfg.Mix, i)]++
	}
	before, err := sampleEdge(edge.Process.Pid)
	if err != nil {
		return nil, err
	}
	res.RSSBeforeMB = float64(before.rss) / (1 << 20)

	// The world: a block of meshes, riders at the centres of the inner ones.
	w, err := newWorld(cfg)
	if err != nil {
		return nil, err
	}
	pub := newPublisher(ctx, b, w)
	defer pub.close()
	for range cfg.Idle {
		pub.publishNext(w.addVehicle())
	}
	pub.wait()

	grpcConns := cfg.GRPCConns
	rs, err := newRiderSet(context.Background(), []string{listen}, cfg.RadiusM, nil, grpcConns)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	var connErrs []error
	var mu sync.Mutex
	connect := ConnectRidersAt(cctx, rs, cfg.Riders, cfg.Mix, 64, w.riderPos, func(err error) {
		mu.Lock()
		if len(connErrs) < 5 {
			connErrs = append(connErrs, err)
		}
		mu.Unlock()
	})
	cancel()
	if connect != nil {
		return nil, connect
	}
	c := rs.c.load()
	res.ConnectSeconds = time.Since(start).Seconds()
	logf("fanout: %d riders connected (%d failed) in %.1fs", c.Opened, c.ConnectFailed, res.ConnectSeconds)
	if c.ConnectFailed > 0 {
		return nil, fmt.Errorf("fanout: %d riders failed to connect: %v", c.ConnectFailed, errors.Join(connErrs...))
	}

	// Idle: the memory figure (the riders got their snapshot; nothing moves).
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return res, err
	}
	idle, err := sampleEdge(edge.Process.Pid)
	if err != nil {
		return nil, err
	}
	res.RSSIdleMB = float64(idle.rss) / (1 << 20)
	res.PerRiderKB = float64(idle.rss-before.rss) / 1000 / float64(cfg.Riders)
	logf("fanout: edge RSS %.1f MB before the riders, %.1f MB with %d idle riders: %.2f KB per rider",
		res.RSSBeforeMB, res.RSSIdleMB, cfg.Riders, res.PerRiderKB)
	if len(cfg.Rates) == 0 {
		if err := sleepCtx(ctx, cfg.Duration); err != nil {
			return res, err
		}
		idle, err = sampleEdge(edge.Process.Pid)
		if err != nil {
			return nil, err
		}
		res.RSSIdleMB = float64(idle.rss) / (1 << 20)
		res.PerRiderKB = float64(idle.rss-before.rss) / 1000 / float64(cfg.Riders)
		logf("fanout: after %v idle: %.1f MB, %.2f KB per rider", cfg.Duration, res.RSSIdleMB, res.PerRiderKB)
		return res, nil
	}

	// The steps.
	rates := append([]int(nil), cfg.Rates...)
	extra := 0
	for k := 0; k < len(rates); k++ {
		st, err := runStep(ctx, cfg, rates[k], edge.Process.Pid, redis.Process.Pid, admin, w, pub, rs, logf)
		if err != nil {
			return res, err
		}
		st.KneeStep = k >= len(cfg.Rates)
		res.Steps = append(res.Steps, st)
		good := st.Delivered >= 0.95*float64(st.Target) && st.Latency.P99ms <= float64(cfg.KneeP99)/1e6
		if good {
			res.Knee = max(res.Knee, st.Target)
		}
		if cfg.Knee && k == len(rates)-1 && good && extra < 8 {
			rates = append(rates, rates[k]*5/4)
			extra++
		}
	}
	return res, nil
}

// runStep drives one rate: warm-up, then the window.
func runStep(ctx context.Context, cfg FanoutConfig, rate int, pid, redisPID int, admin string, w *world, pub *publisher, rs *riderSet,
	logf func(string, ...any)) (FanoutStep, error) {
	st := FanoutStep{Target: rate}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pub.drive(pctx, float64(rate), cfg.Interval)
	}()
	defer func() { stop(); <-done }()
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return st, err
	}
	rs.measure()
	cpu0 := cpuStat()
	self0, _ := procSample(os.Getpid())
	redis0, _ := procSample(redisPID)
	p0 := pub.stats()
	s0, err := sampleEdge(pid)
	if err != nil {
		return st, err
	}
	var tail tailProbe
	tail.start(ctx, admin)
	t0 := time.Now()
	var prof chan error
	if cfg.ProfileDir != "" {
		prof = make(chan error, 1)
		go func() {
			prof <- fetchProfile(ctx, "http://"+admin+"/debug/pprof/profile?seconds="+strconv.Itoa(int(cfg.Duration.Seconds())),
				filepath.Join(cfg.ProfileDir, fmt.Sprintf("fanout-%d.pprof", rate)))
		}()
	}
	if err := sleepCtx(ctx, cfg.Duration); err != nil {
		return st, err
	}
	s1, err := sampleEdge(pid)
	if err != nil {
		return st, err
	}
	win := time.Since(t0).Seconds()
	tail.stop(ctx)
	p1 := pub.stats()
	cpu1 := cpuStat()
	self1, _ := procSample(os.Getpid())
	redis1, _ := procSample(redisPID)
	c := rs.c.load()
	h := &rs.hist
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	st.WindowSeconds = win
	st.Delivered = float64(c.Events) / win
	st.Predicted = (p1.deliveries - p0.deliveries) / win
	st.Updates = float64(p1.updates-p0.updates) / win
	st.Vehicles = p1.vehicles
	cpu := s1.cpu - s0.cpu
	st.EdgeCores = cpu / win
	if c.Events > 0 {
		st.MicrosPerEvent = cpu * 1e6 / float64(c.Events)
	}
	if cpu > 0 {
		st.EventsPerCPUSec = float64(c.Events) / cpu
	}
	writes := s1.writes - s0.writes
	st.WritesPerSec = float64(writes) / win
	if writes > 0 {
		st.EventsPerWrite = float64(c.Events) / float64(writes)
	}
	st.RSSMB = float64(s1.rss) / (1 << 20)
	st.Latency = Latency{Samples: h.Count(), P50ms: ms(h.Quantile(0.5)), P90ms: ms(h.Quantile(0.9)), P99ms: ms(h.Quantile(0.99)),
		P999ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max())}
	st.EdgeWriteP99ms, st.BenchSchedP99ms = tail.ms()
	if tail.err != nil {
		logf("fanout: %v", tail.err)
	}
	st.Cuts, st.Drops, st.Connected, st.SeqErrors = c.Cuts, c.Drops, c.Connected, c.SeqErrors
	st.CutsAndDropsText = fmt.Sprintf("%d cut, %d dropped", c.Cuts, c.Drops)
	st.LoadAvg = loadAvg()
	st.BenchCores = (self1.CPUSeconds - self0.CPUSeconds) / win
	st.RedisCores = (redis1.CPUSeconds - redis0.CPUSeconds) / win
	if cfg.LoadCPU >= 0 {
		st.LoadCPUBusy = cpu1.busy(cpu0, cfg.LoadCPU)
	}
	if prof != nil {
		if err := <-prof; err != nil {
			logf("fanout: profile: %v", err)
		}
	}
	logf("fanout: %6d/s delivered %7.0f/s (predicted %.0f, %.0f fixes/s, %d vehicles) edge %.2f cores %.2f µs/event %.0f events/CPU-s %.2f events/write p50 %.1f p99 %.1f p99.9 %.1f ms RSS %.0f MB; load CPU %.0f%% busy (bench %.2f, redis %.2f cores), loadavg %s, %s",
		rate, st.Delivered, st.Predicted, st.Updates, st.Vehicles, st.EdgeCores, st.MicrosPerEvent, st.EventsPerCPUSec,
		st.EventsPerWrite, st.Latency.P50ms, st.Latency.P99ms, st.Latency.P999ms, st.RSSMB, 100*st.LoadCPUBusy, st.BenchCores, st.RedisCores, st.LoadAvg, st.CutsAndDropsText)
	by := "fanout:         p50/p99 ms by transport:"
	for i, tr := range Transports {
		if h := &rs.histBy[i]; h.Count() > 0 {
			by += fmt.Sprintf(" %s %.1f/%.1f", tr, ms(h.Quantile(0.5)), ms(h.Quantile(0.99)))
		}
	}
	logf("%s", by)
	logf("fanout:         the tail: p99 of the edge's write latency ≤ %.0f ms (its histogram's bucket), of this harness's scheduler latency %.2f ms",
		st.EdgeWriteP99ms, st.BenchSchedP99ms)
	return st, nil
}

// WriteTable prints the result as a table.
func (r *FanoutResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nedge %s %s\n", r.EdgeBin, strings.Join(r.EdgeFlags, " "))
	var trs []string
	for _, t := range Transports {
		if r.RidersBy[t] > 0 {
			trs = append(trs, fmt.Sprintf("%s %d", t, r.RidersBy[t]))
		}
	}
	fmt.Fprintf(w, "riders %d (%s), connected in %.1fs; edge RSS %.1f MB before, %.1f MB idle: %.2f KB per rider\n",
		r.Riders, strings.Join(trs, ", "), r.ConnectSeconds, r.RSSBeforeMB, r.RSSIdleMB, r.PerRiderKB)
	if len(r.Steps) == 0 {
		return
	}
	fmt.Fprintf(w, "%9s %10s %10s %6s %8s %11s %8s %8s %8s %8s %7s %5s %5s %s\n", "target/s", "delivered", "fixes/s", "cores",
		"µs/event", "events/CPUs", "ev/write", "p50 ms", "p99 ms", "p99.9 ms", "RSS MB", "load%", "bench", "loadavg")
	for _, s := range r.Steps {
		mark := ""
		if s.KneeStep {
			mark = " (knee search)"
		}
		fmt.Fprintf(w, "%9d %10.0f %10.0f %6.2f %8.2f %11.0f %8.2f %8.1f %8.1f %8.1f %7.0f %5.0f %5.2f %s%s\n", s.Target, s.Delivered,
			s.Updates, s.EdgeCores, s.MicrosPerEvent, s.EventsPerCPUSec, s.EventsPerWrite, s.Latency.P50ms, s.Latency.P99ms,
			s.Latency.P999ms, s.RSSMB, 100*s.LoadCPUBusy, s.BenchCores, s.LoadAvg, mark)
		if s.Cuts+s.Drops+s.SeqErrors > 0 {
			fmt.Fprintf(w, "%9s %s, %d seq errors\n", "", s.CutsAndDropsText, s.SeqErrors)
		}
	}
	if r.Knee > 0 {
		fmt.Fprintf(w, "knee: %d delivered/s (the highest step with ≥ 95%% delivered and p99 within the bound)\n", r.Knee)
	}
}

// ConnectRidersAt opens riders 0..n-1 of mix in rs at pos(i), conc at a time, and returns when all
// are connected or failed (an error only when ctx ended first).
func ConnectRidersAt(ctx context.Context, rs *riderSet, n int, mix map[Transport]int, conc int, pos func(i int) (lat, lon float64), errLog func(error)) error {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(conc, max(n, 1)) {
		wg.Go(func() {
			for i := range work {
				lat, lon := pos(i)
				if err := rs.open(ctx, i, transportOf(mix, i), lat, lon); err != nil && ctx.Err() == nil {
					errLog(err)
				}
			}
		})
	}
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	return ctx.Err()
}

// --- the world: meshes, riders, vehicles ---

type world struct {
	radius                   float64
	minLat, minLon           float64 // the block's south-west corner
	maxLat, maxLon           float64
	centres                  [][2]float64 // rider positions (centres of the inner meshes)
	perCentre                []int        // riders at each centre
	riders                   int
	rnd                      *rand.Rand
	mu                       sync.Mutex
	vehicles                 []*fanVehicle
	stepM                    float64
	latPerMetre, lonPerMetre float64
}

type fanVehicle struct {
	id       string
	lat, lon float64
	seen     bool
}

func newWorld(cfg FanoutConfig) (*world, error) {
	// The block around Tokyo Station (35.681, 139.767).
	m, err := mesh.Third(35.681, 139.767)
	if err != nil {
		return nil, err
	}
	bd := m.Bounds()
	dLat, dLon := bd.MaxLat-bd.MinLat, bd.MaxLon-bd.MinLon
	half := cfg.Block / 2
	w := &world{
		radius: float64(cfg.RadiusM),
		minLat: bd.MinLat - float64(half)*dLat, minLon: bd.MinLon - float64(half)*dLon,
		rnd:    rand.New(rand.NewPCG(cfg.Seed, 0x66616e)),
		riders: cfg.Riders,
		stepM:  30, // ~10 m/s over 3 s
	}
	w.maxLat, w.maxLon = w.minLat+float64(cfg.Block)*dLat, w.minLon+float64(cfg.Block)*dLon
	for r := 1; r < cfg.Block-1; r++ {
		for c := 1; c < cfg.Block-1; c++ {
			w.centres = append(w.centres, [2]float64{w.minLat + (float64(r)+0.5)*dLat, w.minLon + (float64(c)+0.5)*dLon})
		}
	}
	w.perCentre = make([]int, len(w.centres))
	for i := range cfg.Riders {
		w.perCentre[i%len(w.centres)]++
	}
	midLat := (w.minLat + w.maxLat) / 2
	w.latPerMetre = 1 / (mesh.EarthRadiusM * math.Pi / 180)
	w.lonPerMetre = w.latPerMetre / math.Cos(midLat*math.Pi/180)
	return w, nil
}

// riderPos is rider i's position: the centres in turn.
func (w *world) riderPos(i int) (lat, lon float64) {
	c := w.centres[i%len(w.centres)]
	return c[0], c[1]
}

// addVehicle adds a vehicle at a random point of the block.
func (w *world) addVehicle() *fanVehicle {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := &fanVehicle{id: fmt.Sprintf("bench/v%06d", len(w.vehicles)),
		lat: w.minLat + w.rnd.Float64()*(w.maxLat-w.minLat), lon: w.minLon + w.rnd.Float64()*(w.maxLon-w.minLon)}
	w.vehicles = append(w.vehicles, v)
	return v
}

// move moves v by one step in a random direction (reflected at the block's edges) and returns
// the deliveries it causes: an upsert to every rider within the radius of the new position, a
// removal to every rider within the radius of the old one only.
func (w *world) move(v *fanVehicle) (lat, lon float64, deliveries int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.rnd.Float64() * 2 * math.Pi
	oldLat, oldLon, seen := v.lat, v.lon, v.seen
	if seen {
		lat = reflect(v.lat+math.Sin(a)*w.stepM*w.latPerMetre, w.minLat, w.maxLat)
		lon = reflect(v.lon+math.Cos(a)*w.stepM*w.lonPerMetre, w.minLon, w.maxLon)
	} else {
		lat, lon = v.lat, v.lon
	}
	for i, c := range w.centres {
		in := mesh.DistanceM(c[0], c[1], lat, lon) <= w.radius
		was := seen && mesh.DistanceM(c[0], c[1], oldLat, oldLon) <= w.radius
		if in || was {
			deliveries += w.perCentre[i]
		}
	}
	v.lat, v.lon, v.seen = lat, lon, true
	return lat, lon, deliveries
}

func reflect(x, lo, hi float64) float64 {
	const eps = 1e-9
	if x < lo {
		x = lo + (lo - x)
	}
	if x >= hi {
		x = hi - (x - hi) - eps
	}
	return min(max(x, lo), hi-eps)
}

// --- the publisher ---

// publisher applies the vehicles' fixes to the bus from a few goroutines (a vehicle always on the
// same one, so its fixes stay in order).
type publisher struct {
	b       bus.Bus
	w       *world
	queues  []chan *fanVehicle
	wg      sync.WaitGroup
	pending sync.WaitGroup
	mu      sync.Mutex
	updates int64
	deliv   float64
	next    int
	errs    int64
	ctx     context.Context
}

type pubStats struct {
	updates    int64
	deliveries float64
	vehicles   int
}

func newPublisher(ctx context.Context, b bus.Bus, w *world) *publisher {
	p := &publisher{b: b, w: w, ctx: ctx}
	for range 16 {
		q := make(chan *fanVehicle, 1024)
		p.queues = append(p.queues, q)
		p.wg.Go(func() {
			for v := range q {
				p.apply(v)
				p.pending.Done()
			}
		})
	}
	return p
}

func (p *publisher) apply(v *fanVehicle) {
	lat, lon, d := p.w.move(v)
	m, err := mesh.Third(lat, lon)
	if err != nil {
		return
	}
	u := bus.Update{Dispatchable: true, Vehicle: &meshcastv1.Vehicle{Id: v.id, Fleet: "bench", Lat: lat, Lon: lon,
		HeadingDeg: 90, SpeedKmh: 30, Class: meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD, Mesh: m.String(),
		ObservedAtMs: time.Now().UnixMilli()}}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	_, err = p.b.Apply(ctx, u)
	cancel()
	p.mu.Lock()
	if err != nil {
		p.errs++
	} else {
		p.updates++
		p.deliv += float64(d)
	}
	p.mu.Unlock()
}

// publishNext queues one fix of v.
func (p *publisher) publishNext(v *fanVehicle) {
	p.pending.Add(1)
	var h uint32
	for i := 0; i < len(v.id); i++ {
		h = h*31 + uint32(v.id[i])
	}
	p.queues[h%uint32(len(p.queues))] <- v
}

func (p *publisher) wait() { p.pending.Wait() }

func (p *publisher) close() {
	for _, q := range p.queues {
		close(q)
	}
	p.wg.Wait()
}

func (p *publisher) stats() pubStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return pubStats{updates: p.updates, deliveries: p.deliv, vehicles: len(p.w.vehicles)}
}

// drive publishes fixes until ctx ends, paced so that the predicted deliveries come to rate per
// second; vehicles take turns, and vehicles are added while one turn is shorter than interval.
func (p *publisher) drive(ctx context.Context, rate float64, interval time.Duration) {
	const tick = 5 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	budget := 0.0
	avg := 0.0 // mean deliveries per fix
	turnStart := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			budget += rate * now.Sub(last).Seconds()
			last = now
			budget = min(budget, rate) // never more than a second's worth after a stall
		}
		for budget > 0 {
			p.w.mu.Lock()
			n := len(p.w.vehicles)
			p.w.mu.Unlock()
			if p.next >= n {
				// A turn is over: add vehicles while the turn was shorter than interval.
				turn := time.Since(turnStart)
				p.next = 0
				turnStart = time.Now()
				if turn < interval && avg > 0 {
					want := int(rate / avg * interval.Seconds())
					for range max(want-n, 0) {
						p.w.addVehicle()
					}
				}
				continue
			}
			p.w.mu.Lock()
			v := p.w.vehicles[p.next]
			p.w.mu.Unlock()
			p.next++
			d := p.predict(v)
			avg = 0.99*avg + 0.01*d
			if avg == 0.01*d {
				avg = d
			}
			budget -= max(d, 1)
			p.publishNext(v)
		}
	}
}

// predict estimates v's next fix's deliveries as those of its current position (the step is
// short against the radius).
func (p *publisher) predict(v *fanVehicle) float64 {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	n := 0
	for i, c := range p.w.centres {
		if mesh.DistanceM(c[0], c[1], v.lat, v.lon) <= p.w.radius {
			n += p.w.perCentre[i]
		}
	}
	return float64(n)
}

// --- processes ---

// startPinned starts bin with args pinned to cpu (taskset; cpu < 0: not pinned), its output in
// logFile.
func startPinned(ctx context.Context, cpu int, logFile, bin string, args ...string) (*fanProc, error) {
	name := bin
	if cpu >= 0 {
		args = append([]string{"-c", strconv.Itoa(cpu), bin}, args...)
		name = "taskset"
	}
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("fanout: start %s: %w", bin, err)
	}
	p := &fanProc{Cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// fanProc is a started process; done closes when it has exited.
type fanProc struct {
	*exec.Cmd
	done chan struct{}
}

// stopProc ends p: SIGTERM, then SIGKILL after 5s.
func stopProc(p *fanProc) {
	p.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Process.Kill()
		<-p.done
	}
}

func waitReady(ctx context.Context, url string, d time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func tailFile(name string) string {
	b, _ := os.ReadFile(name)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// edgeSample is one reading of the edge: CPU seconds, RSS and write system calls so far.
type edgeSample struct {
	cpu    float64
	rss    int64
	writes int64
}

func sampleEdge(pid int) (edgeSample, error) {
	// The edge runs under taskset, which execs it: same pid.
	s, err := procSample(pid)
	if err != nil {
		return edgeSample{}, err
	}
	out := edgeSample{cpu: s.CPUSeconds, rss: s.RSSBytes}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return edgeSample{}, fmt.Errorf("fanout: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(io))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "syscw:"); ok {
			out.writes, _ = strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		}
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuTimes are the per-CPU jiffies of /proc/stat: busy and total.
type cpuTimes map[int][2]float64

func cpuStat() cpuTimes {
	out := cpuTimes{}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return out
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var total, idle float64
		for i, v := range f[1:] {
			x, _ := strconv.ParseFloat(v, 64)
			total += x
			if i == 3 || i == 4 { // idle, iowait
				idle += x
			}
		}
		out[n] = [2]float64{total - idle, total}
	}
	return out
}

// busy is the share of cpu in use between t0 and t.
func (t cpuTimes) busy(t0 cpuTimes, cpu int) float64 {
	a, b := t0[cpu], t[cpu]
	if b[1] <= a[1] {
		return 0
	}
	return (b[0] - a[0]) / (b[1] - a[1])
}

// pinSelf pins every thread of this process to cpu (threads created later inherit it).
func pinSelf(cpu int) error {
	if cpu < 0 || cpu >= 1024 {
		return fmt.Errorf("fanout: cpu %d out of range", cpu)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("fanout: pin to CPU %d: %w", cpu, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := setAffinity(tid, cpu); err != nil {
			return err
		}
	}
	return nil
}

// setAffinity pins thread tid (0: the calling thread) to cpu (0 ≤ cpu < 1024).
func setAffinity(tid, cpu int) error {
	if cpu < 0 || cpu >= 1024 {
		return fmt.Errorf("bench: cpu %d out of range", cpu)
	}
	var set [16]uint64
	set[cpu/64] |= 1 << (cpu % 64)
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set))); e != 0 {
		return fmt.Errorf("bench: pin thread %d to CPU %d: %w", tid, cpu, e)
	}
	return nil
}

// WriteJSON writes the result as indented JSON.
func (r *FanoutResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}
