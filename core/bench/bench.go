package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/sim"
)

// Config is one load run.
type Config struct {
	Edges   []string // rider addresses (host:port); riders are spread over them round-robin
	Brokers []string // MQTT broker URLs the taxis publish to; none: no taxis
	Zones   *geofence.Set
	// Taxis publish every Interval (default 3s) over TaxiConns MQTT connections (default
	// Taxis/2000, at least 1).
	Taxis     int
	Interval  time.Duration
	TaxiConns int
	Seed      uint64
	// Riders are held open, Mix gives each transport's weight (default ws 40, sse 20, grpc 30,
	// grpcweb 10). Each watches RadiusM (default 1000) around a random dispatchable point of
	// Zones' service area.
	Riders  int
	Mix     map[Transport]int
	RadiusM uint32
	// GRPCConns is the number of HTTP/2 connections per edge (per process) the gRPC riders
	// share (default 8, and at least one per 50 riders of the process: the edge admits
	// -max-streams-per-conn streams on one connection, 100 by default, and grpc-go queues the
	// streams past it until others end).
	GRPCConns int
	// ConnectConcurrency bounds the riders connecting at once (per process; default 64).
	ConnectConcurrency int
	// ConnectTimeout bounds the connect phase (default 5 minutes).
	ConnectTimeout time.Duration
	// Warmup is a wait after the riders are connected, before measuring (default 0).
	Warmup time.Duration
	// Duration is the measurement window once every rider connected. Required.
	Duration time.Duration
	// Procs > 1 spreads the riders over that many child processes made by Child.
	Procs int
	// Child returns the command that runs the riders [offset, offset+riders) in a child
	// process (the running binary in its child mode, see ServeChild).
	Child func(index, offset, riders int) *exec.Cmd
	// Sources are the server processes to sample (CPU, RSS) at the window's start and end.
	Sources []Source
	// Progress is printed to Log this often (default 5s; negative: never).
	Progress time.Duration
	Log      io.Writer
	// stallOf marks riders that stop reading once their stream opened (reliability tests).
	stallOf func(i int) bool
}

// Quantiles of the end-to-end latency.
type Latency struct {
	Samples uint64  `json:"samples"`
	P50ms   float64 `json:"p50_ms"`
	P90ms   float64 `json:"p90_ms"`
	P99ms   float64 `json:"p99_ms"`
	P999ms  float64 `json:"p999_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// ServerResult is one sampled server's use over the window.
type ServerResult struct {
	Name         string  `json:"name"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	Cores        float64 `json:"cores"`           // CPU seconds per second of window
	RSSStartMB   float64 `json:"rss_start_mb"`    //
	RSSEndMB     float64 `json:"rss_end_mb"`      //
	MicrosPerMsg float64 `json:"us_per_fix"`      // CPU per fix published in the window
	MicrosPerEvt float64 `json:"us_per_event"`    // CPU per event delivered in the window
	Error        string  `json:"error,omitempty"` //
}

// Result is what a run measured.
type Result struct {
	Started        time.Time             `json:"started"`
	Riders         int                   `json:"riders"`
	Mix            map[Transport]int     `json:"mix"`
	RidersBy       map[Transport]int     `json:"riders_by_transport"`
	Taxis          int                   `json:"taxis"`
	FixesPerSecond float64               `json:"fixes_per_second"` // published by the bench's taxis in the window
	Procs          int                   `json:"procs"`
	ConnectSeconds float64               `json:"connect_seconds"`
	ConnectRate    float64               `json:"connect_rate"` // riders per second
	WindowSeconds  float64               `json:"window_seconds"`
	Counters       Counters              `json:"counters"` // Events, Upserts, Cuts, Drops: in the window
	EventsPerSec   float64               `json:"events_per_second"`
	Latency        Latency               `json:"latency"`
	LatencyBy      map[Transport]Latency `json:"latency_by_transport"`
	Servers        []ServerResult        `json:"servers,omitempty"`
	hist           *Histogram            `json:"-"`
}

func (c *Config) defaults() error {
	if len(c.Edges) == 0 {
		return errors.New("bench: no edge address")
	}
	if c.Zones == nil {
		return errors.New("bench: no zones")
	}
	if c.Duration <= 0 {
		return errors.New("bench: duration must be positive")
	}
	if c.Interval <= 0 {
		c.Interval = sim.DefaultInterval
	}
	if c.TaxiConns <= 0 {
		c.TaxiConns = max(1, c.Taxis/2000)
	}
	if len(c.Mix) == 0 {
		c.Mix = map[Transport]int{WS: 40, SSE: 20, GRPC: 30, GRPCWeb: 10}
	}
	total := 0
	for tr, w := range c.Mix {
		if w < 0 || !knownTransport(tr) {
			return fmt.Errorf("bench: mix %s=%d: want a known transport and a weight ≥ 0", tr, w)
		}
		total += w
	}
	if total == 0 {
		return errors.New("bench: the mix has no weight")
	}
	if c.RadiusM == 0 {
		c.RadiusM = 1000
	}
	if c.GRPCConns <= 0 {
		c.GRPCConns = 8
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Minute
	}
	if c.Progress == 0 {
		c.Progress = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Procs > 1 && c.Child == nil {
		return errors.New("bench: Procs > 1 needs Child")
	}
	return nil
}

func knownTransport(t Transport) bool {
	for _, k := range Transports {
		if k == t {
			return true
		}
	}
	return false
}

// ParseMix parses "ws=40,sse=20,grpc=30,grpcweb=10".
func ParseMix(s string) (map[Transport]int, error) {
	m := map[Transport]int{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		w, err := strconv.Atoi(v)
		if !ok || err != nil || w < 0 || !knownTransport(Transport(k)) {
			return nil, fmt.Errorf("bench: mix entry %q: want transport=weight with transport one of %v", part, Transports)
		}
		m[Transport(k)] += w
	}
	if len(m) == 0 {
		return nil, errors.New("bench: empty mix")
	}
	return m, nil
}

// transportOf picks rider i's transport: the weights laid out over a cycle of their sum, so
// any run of consecutive riders follows the mix.
func transportOf(mix map[Transport]int, i int) Transport {
	total := 0
	for _, t := range Transports {
		total += mix[t]
	}
	k := i % total
	for _, t := range Transports {
		if k < mix[t] {
			return t
		}
		k -= mix[t]
	}
	return WS
}

// placeOf returns rider i's position: a random dispatchable point of the service area,
// a function of the seed and i only.
func placeOf(zones *geofence.Set, seed uint64, i int) (lat, lon float64) {
	minLat, minLon, maxLat, maxLon := 90.0, 180.0, -90.0, -180.0
	for _, z := range zones.Zones() {
		if z.Kind == geofence.ServiceArea {
			minLat, minLon = min(minLat, z.MinLat), min(minLon, z.MinLon)
			maxLat, maxLon = max(maxLat, z.MaxLat), max(maxLon, z.MaxLon)
		}
	}
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	for range 10000 {
		lat = minLat + r.Float64()*(maxLat-minLat)
		lon = minLon + r.Float64()*(maxLon-minLon)
		if zones.Classify(lat, lon).Dispatchable() {
			return lat, lon
		}
	}
	return lat, lon
}

// connectRiders opens riders [offset, offset+n) of the run in rs, at most conc at a time.
func connectRiders(ctx context.Context, rs *riderSet, cfg *Config, offset, n int, errLog func(error)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.ConnectConcurrency, max(n, 1)) {
		wg.Go(func() {
			for i := range work {
				lat, lon := placeOf(cfg.Zones, cfg.Seed, i)
				if err := rs.open(ctx, i, transportOf(cfg.Mix, i), lat, lon); err != nil && ctx.Err() == nil {
					errLog(err)
				}
			}
		})
	}
	for i := offset; i < offset+n; i++ {
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
}

// rateLogger prints at most one error per second.
func rateLogger(w io.Writer) func(error) {
	var mu sync.Mutex
	var last time.Time
	var skipped int
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < time.Second {
			skipped++
			return
		}
		last = time.Now()
		if skipped > 0 {
			fmt.Fprintf(w, "bench: %v (and %d more errors)\n", err, skipped)
		} else {
			fmt.Fprintf(w, "bench: %v\n", err)
		}
		skipped = 0
	}
}

// riderGroup is where the riders live: this process, or child processes.
type riderGroup interface {
	counters() Counters
	histogram() *Histogram
	measure()
	close() error
	// final ends the riders and returns the window's counters and histograms (all, and per
	// transport in the order of Transports).
	final() (Counters, *Histogram, []*Histogram)
}

type localGroup struct{ rs *riderSet }

func (g localGroup) counters() Counters    { return g.rs.c.load() }
func (g localGroup) histogram() *Histogram { return &g.rs.hist }
func (g localGroup) measure()              { g.rs.measure() }
func (g localGroup) close() error          { g.rs.close(); return nil }
func (g localGroup) final() (Counters, *Histogram, []*Histogram) {
	c := g.rs.c.load()
	g.rs.close()
	var by []*Histogram
	for i := range g.rs.histBy {
		by = append(by, &g.rs.histBy[i])
	}
	return c, &g.rs.hist, by
}

// Run runs one load: taxis, riders, the window; it returns what it measured.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Started: time.Now().UTC(), Riders: cfg.Riders, Mix: cfg.Mix, Taxis: cfg.Taxis, Procs: max(cfg.Procs, 1),
		RidersBy: map[Transport]int{}}
	for i := range cfg.Riders {
		res.RidersBy[transportOf(cfg.Mix, i)]++
	}
	logf := func(format string, a ...any) { fmt.Fprintf(cfg.Log, format+"\n", a...) }

	// Taxis.
	var pub *sim.Publisher
	taxisDone := make(chan struct{})
	tctx, stopTaxis := context.WithCancel(context.Background())
	defer stopTaxis()
	if cfg.Taxis > 0 && len(cfg.Brokers) > 0 {
		var err error
		pub, err = sim.Dial(ctx, sim.PublisherConfig{Brokers: cfg.Brokers, ClientID: fmt.Sprintf("meshcast-bench-%d", time.Now().UnixNano()),
			Conns: cfg.TaxiConns, InFlight: 64, QoS: 1})
		if err != nil {
			return nil, err
		}
		s, err := sim.New(sim.Config{Zones: cfg.Zones, Taxis: cfg.Taxis, Seed: cfg.Seed, Interval: cfg.Interval}, time.Now())
		if err != nil {
			pub.Close(context.Background())
			return nil, err
		}
		ct := s.ContentType()
		go func() {
			defer close(taxisDone)
			sim.Drive(tctx, s, func(topic string, payload []byte) { pub.Publish(topic, ct, payload) })
		}()
		logf("bench: %d taxis publishing every %v (%.0f fixes/s) to %v", cfg.Taxis, cfg.Interval, float64(cfg.Taxis)/cfg.Interval.Seconds(), cfg.Brokers)
	} else {
		close(taxisDone)
	}
	stopPub := func() {
		stopTaxis()
		<-taxisDone
		if pub != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			pub.Close(cctx)
			cancel()
		}
	}
	defer stopPub()

	// Riders.
	cctx, cancelConnect := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancelConnect()
	start := time.Now()
	var group riderGroup
	if cfg.Procs > 1 {
		g, err := startChildren(cctx, &cfg, logf)
		if err != nil {
			return nil, err
		}
		group = g
	} else {
		rs, err := newRiderSet(context.Background(), cfg.Edges, cfg.RadiusM, nil, max(cfg.GRPCConns, cfg.Riders/50+1))
		if err != nil {
			return nil, err
		}
		rs.stallOf = cfg.stallOf
		group = localGroup{rs}
		go connectRiders(cctx, rs, &cfg, 0, cfg.Riders, rateLogger(cfg.Log))
	}
	defer group.close()

	// Wait until every rider is connected or failed, printing progress.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Now()
	for {
		c := group.counters()
		if c.Opened+c.ConnectFailed >= int64(cfg.Riders) {
			break
		}
		select {
		case <-cctx.Done():
			return nil, fmt.Errorf("bench: connect phase: %d of %d riders connected, %d failed: %w", c.Opened, cfg.Riders, c.ConnectFailed, cctx.Err())
		case <-tick.C:
		}
		if cfg.Progress > 0 && time.Since(lastLog) >= cfg.Progress {
			lastLog = time.Now()
			logf("bench: connecting: %d/%d riders (%d failed) in %v", c.Opened, cfg.Riders, c.ConnectFailed, time.Since(start).Round(time.Second))
		}
	}
	c := group.counters()
	res.ConnectSeconds = time.Since(start).Seconds()
	res.ConnectRate = float64(c.Opened) / res.ConnectSeconds
	logf("bench: %d riders connected (%d failed) in %.1fs (%.0f/s)", c.Opened, c.ConnectFailed, res.ConnectSeconds, res.ConnectRate)
	if cfg.Warmup > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.Warmup):
		}
	}

	// The window. The bench's own process is sampled too (its riders when Procs is 1).
	cfg.Sources = append(cfg.Sources, Source{Name: "bench (this process)", PID: os.Getpid()})
	before := sampleAll(cfg.Sources)
	var pub0 int64
	if pub != nil {
		pub0, _ = pub.Stats()
	}
	group.measure()
	w0 := time.Now()
	end := time.NewTimer(cfg.Duration)
	defer end.Stop()
	var prog <-chan time.Time
	if cfg.Progress > 0 {
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		prog = t.C
	}
	var lastEvents int64
	lastT := w0
window:
	for {
		select {
		case <-ctx.Done():
			break window
		case <-end.C:
			break window
		case now := <-prog:
			c := group.counters()
			h := group.histogram()
			logf("bench: %5.0fs riders %d events/s %.0f p50 %v p99 %v cuts %d drops %d",
				now.Sub(w0).Seconds(), c.Connected, float64(c.Events-lastEvents)/now.Sub(lastT).Seconds(),
				h.Quantile(0.5), h.Quantile(0.99), c.Cuts, c.Drops)
			lastEvents, lastT = c.Events, now
		}
	}
	res.WindowSeconds = time.Since(w0).Seconds()
	after := sampleAll(cfg.Sources)
	var h *Histogram
	var hBy []*Histogram
	res.Counters, h, hBy = group.final()
	res.hist = h
	if pub != nil {
		p1, _ := pub.Stats()
		res.FixesPerSecond = float64(p1-pub0) / res.WindowSeconds
	}
	res.EventsPerSec = float64(res.Counters.Events) / res.WindowSeconds
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	lat := func(h *Histogram) Latency {
		return Latency{Samples: h.Count(), P50ms: ms(h.Quantile(0.5)), P90ms: ms(h.Quantile(0.9)), P99ms: ms(h.Quantile(0.99)),
			P999ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max())}
	}
	res.Latency = lat(h)
	res.LatencyBy = map[Transport]Latency{}
	for i, hb := range hBy {
		if hb.Count() > 0 {
			res.LatencyBy[Transports[i]] = lat(hb)
		}
	}
	for i, s := range cfg.Sources {
		sr := ServerResult{Name: s.Name}
		b, a := before[i], after[i]
		if b.err != nil || a.err != nil {
			sr.Error = errors.Join(b.err, a.err).Error()
		} else {
			sr.CPUSeconds = a.s.CPUSeconds - b.s.CPUSeconds
			sr.Cores = sr.CPUSeconds / res.WindowSeconds
			sr.RSSStartMB = float64(b.s.RSSBytes) / (1 << 20)
			sr.RSSEndMB = float64(a.s.RSSBytes) / (1 << 20)
			if res.FixesPerSecond > 0 {
				sr.MicrosPerMsg = sr.CPUSeconds * 1e6 / (res.FixesPerSecond * res.WindowSeconds)
			}
			if res.Counters.Events > 0 {
				sr.MicrosPerEvt = sr.CPUSeconds * 1e6 / float64(res.Counters.Events)
			}
		}
		res.Servers = append(res.Servers, sr)
	}
	return res, ctx.Err()
}

type sampled struct {
	s   ProcSample
	err error
}

func sampleAll(srcs []Source) []sampled {
	out := make([]sampled, len(srcs))
	for i, s := range srcs {
		out[i].s, out[i].err = s.Sample()
	}
	return out
}

// Histogram returns the run's latency histogram.
func (r *Result) Histogram() *Histogram { return r.hist }

// WriteTable prints the result as a table.
func (r *Result) WriteTable(w io.Writer) {
	var trs []string
	for _, t := range Transports {
		if r.RidersBy[t] > 0 {
			trs = append(trs, fmt.Sprintf("%s %d", t, r.RidersBy[t]))
		}
	}
	sort.Strings(trs)
	c := r.Counters
	fmt.Fprintf(w, "\n%-26s %s\n", "riders", fmt.Sprintf("%d (%s), %d procs", r.Riders, strings.Join(trs, ", "), r.Procs))
	fmt.Fprintf(w, "%-26s %d (%.0f fixes/s published in the window)\n", "taxis", r.Taxis, r.FixesPerSecond)
	fmt.Fprintf(w, "%-26s %.1fs, %.0f riders/s, %d failed\n", "connect", r.ConnectSeconds, r.ConnectRate, c.ConnectFailed)
	fmt.Fprintf(w, "%-26s %.1fs\n", "window", r.WindowSeconds)
	fmt.Fprintf(w, "%-26s p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms (%d upserts)\n", "latency (fix → rider)",
		r.Latency.P50ms, r.Latency.P90ms, r.Latency.P99ms, r.Latency.P999ms, r.Latency.MaxMs, r.Latency.Samples)
	for _, t := range Transports {
		if l, ok := r.LatencyBy[t]; ok {
			fmt.Fprintf(w, "%-26s p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms\n", "  "+string(t), l.P50ms, l.P99ms, l.P999ms)
		}
	}
	fmt.Fprintf(w, "%-26s %.0f events/s (%d events, %d snapshots)\n", "delivered", r.EventsPerSec, c.Events, c.Snapshots)
	fmt.Fprintf(w, "%-26s %d connected at the end, %d cut as too slow, %d dropped, %d seq errors\n", "riders kept", c.Connected, c.Cuts, c.Drops, c.SeqErrors)
	for _, s := range r.Servers {
		if s.Error != "" {
			fmt.Fprintf(w, "%-26s %s\n", s.Name, s.Error)
			continue
		}
		fmt.Fprintf(w, "%-26s %.2f cores, RSS %.0f → %.0f MB, %.1f µs/fix, %.2f µs/event\n", s.Name, s.Cores, s.RSSStartMB, s.RSSEndMB, s.MicrosPerMsg, s.MicrosPerEvt)
	}
}

// WriteJSON writes the result as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// --- child processes ---

// childLine is what a child prints: its cumulative counters and histogram.
type childLine struct {
	C  Counters         `json:"c"`
	H  map[int]uint64   `json:"h"`
	HB []map[int]uint64 `json:"hb"` // per transport, in the order of Transports
}

// ChildEnv is the environment variable that makes `meshcast bench` a rider child:
// "<index>:<offset>:<riders>".
const ChildEnv = "MESHCAST_BENCH_CHILD_OF"

// ParseChild parses ChildEnv's value.
func ParseChild(v string) (index, offset, riders int, err error) {
	f := strings.Split(v, ":")
	if len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("bench: %s=%q: want index:offset:riders", ChildEnv, v)
	}
	var errs [3]error
	index, errs[0] = strconv.Atoi(f[0])
	offset, errs[1] = strconv.Atoi(f[1])
	riders, errs[2] = strconv.Atoi(f[2])
	if err := errors.Join(errs[:]...); err != nil {
		return 0, 0, 0, fmt.Errorf("bench: %s=%q: %w", ChildEnv, v, err)
	}
	return index, offset, riders, nil
}

// ServeChild runs riders [offset, offset+riders) of cfg (Edges, Zones, Seed, Mix, RadiusM,
// GRPCConns, ConnectConcurrency) from source address 127.0.0.<index+2> when the edges are on
// loopback. It prints a childLine on out every 500ms, starts measuring when in says "measure",
// and on in's end closes its riders, prints a last line and returns.
func ServeChild(ctx context.Context, cfg Config, index, offset, riders int, in io.Reader, out io.Writer) error {
	cfg.Duration = time.Hour
	if err := cfg.defaults(); err != nil {
		return err
	}
	var local net.IP
	if host, _, err := net.SplitHostPort(cfg.Edges[0]); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			local = net.IPv4(127, 0, 0, byte(2+index%250))
		}
	}
	rs, err := newRiderSet(context.Background(), cfg.Edges, cfg.RadiusM, local, max(cfg.GRPCConns, riders/50+1))
	if err != nil {
		return err
	}
	rs.stallOf = cfg.stallOf
	cctx, cancel := context.WithCancel(ctx)
	go connectRiders(cctx, rs, &cfg, offset, riders, rateLogger(cfg.Log))
	enc := json.NewEncoder(out)
	var mu sync.Mutex
	emit := func() {
		mu.Lock()
		defer mu.Unlock()
		l := childLine{C: rs.c.load(), H: rs.hist.Sparse()}
		for i := range rs.histBy {
			l.HB = append(l.HB, rs.histBy[i].Sparse())
		}
		enc.Encode(l)
	}
	stopTick := make(chan struct{})
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
				emit()
			}
		}
	}()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == "measure" {
			rs.measure()
			emit()
		}
	}
	close(stopTick)
	<-tickDone
	emit() // the window's final figures, before the riders go
	cancel()
	rs.close()
	return nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	last  childLine
	done  chan struct{}
}

type childGroup struct {
	children []*child
	hist     Histogram
	histBy   [5]Histogram
	closed   bool
}

func startChildren(ctx context.Context, cfg *Config, logf func(string, ...any)) (*childGroup, error) {
	g := &childGroup{}
	per := (cfg.Riders + cfg.Procs - 1) / cfg.Procs
	for k := range cfg.Procs {
		off := k * per
		n := min(per, cfg.Riders-off)
		if n <= 0 {
			break
		}
		cmd := cfg.Child(k, off, n)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			g.close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			g.close()
			return nil, err
		}
		if cmd.Stderr == nil {
			cmd.Stderr = cfg.Log
		}
		if err := cmd.Start(); err != nil {
			g.close()
			return nil, fmt.Errorf("bench: start child %d: %w", k, err)
		}
		ch := &child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
		go func() {
			defer close(ch.done)
			dec := json.NewDecoder(stdout)
			for {
				var l childLine
				if err := dec.Decode(&l); err != nil {
					return
				}
				ch.mu.Lock()
				ch.last = l
				ch.mu.Unlock()
			}
		}()
		g.children = append(g.children, ch)
	}
	return g, nil
}

func (g *childGroup) counters() Counters {
	var s Counters
	for _, ch := range g.children {
		ch.mu.Lock()
		c := ch.last.C
		ch.mu.Unlock()
		s.Connected += c.Connected
		s.Opened += c.Opened
		s.ConnectFailed += c.ConnectFailed
		s.Events += c.Events
		s.Upserts += c.Upserts
		s.Snapshots += c.Snapshots
		s.Cuts += c.Cuts
		s.Drops += c.Drops
		s.SeqErrors += c.SeqErrors
		s.StalledCuts += c.StalledCuts
	}
	return s
}

func (g *childGroup) histogram() *Histogram {
	g.hist.Reset()
	for _, ch := range g.children {
		ch.mu.Lock()
		g.hist.AddSparse(ch.last.H)
		ch.mu.Unlock()
	}
	return &g.hist
}

func (g *childGroup) final() (Counters, *Histogram, []*Histogram) {
	g.close()
	var by []*Histogram
	for i := range g.histBy {
		g.histBy[i].Reset()
		for _, ch := range g.children {
			if i < len(ch.last.HB) {
				g.histBy[i].AddSparse(ch.last.HB[i])
			}
		}
		by = append(by, &g.histBy[i])
	}
	return g.counters(), g.histogram(), by
}

func (g *childGroup) measure() {
	for _, ch := range g.children {
		ch.mu.Lock()
		ch.last.C.Events, ch.last.C.Upserts, ch.last.C.Snapshots, ch.last.C.Cuts, ch.last.C.Drops = 0, 0, 0, 0, 0
		ch.last.H, ch.last.HB = nil, nil
		ch.mu.Unlock()
		io.WriteString(ch.stdin, "measure\n")
	}
}

// close ends the children: their stdin closes, they print their final line and exit.
// The counters read afterwards are the window's.
func (g *childGroup) close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	for _, ch := range g.children {
		ch.stdin.Close()
	}
	var errs []error
	for _, ch := range g.children {
		<-ch.done
		errs = append(errs, ch.cmd.Wait())
	}
	return errors.Join(errs...)
}
