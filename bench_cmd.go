package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/meshcast/meshcast/core/bench"
	"github.com/meshcast/meshcast/core/config"
)

// runBench drives simulated taxis and holds riders against running edges (core/bench).
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	fs := config.NewFlagSet("bench", `Measure a running deployment end to end: -taxis simulated taxis publish their
fixes over MQTT to -broker while -riders riders, spread over the transports of
-mix and placed at random dispatchable points of the zones' service area, watch
-radius around them on the -edge addresses. Once every rider is connected the
bench measures for -duration: the latency from each fix's timestamp to its
arrival at a rider (p50, p99, p99.9), delivered events/s, riders cut as too
slow or dropped, and the CPU and RSS of the servers named by -edge-pid,
-bridge-pid (from /proc) or -edge-admin, -bridge-admin (from /metrics). It
prints progress every -progress, a table at the end and, with -out, JSON.
Each WebSocket, SSE or gRPC-Web rider takes one open file: above ~18,000
riders use -procs to spread them over child processes (each on its own
127.0.0.x source address when the edge is on loopback).`)
	edges := fs.String("edge", "127.0.0.1:8080", "edge rider addresses (host:port), comma-separated")
	brokers := fs.String("broker", "mqtt://127.0.0.1:1883", "MQTT broker URLs the taxis publish to, comma-separated")
	taxis := fs.Int("taxis", 1000, "simulated taxis (0: none, measure the deployment's own traffic)")
	interval := fs.Duration("interval", 3*time.Second, "report interval of one taxi")
	riders := fs.Int("riders", 1000, "riders held open")
	mix := fs.String("mix", "ws=40,sse=20,grpc=30,grpcweb=10", "transport weights: ws (json), wsproto, sse, grpc, grpcweb")
	radius := fs.Uint("radius", 1000, "radius_m each rider watches")
	duration := fs.Duration("duration", 30*time.Second, "measurement window once every rider is connected")
	warmup := fs.Duration("warmup", 5*time.Second, "wait after connecting, before measuring")
	connectTimeout := fs.Duration("connect-timeout", 5*time.Minute, "bound of connecting every rider")
	concurrency := fs.Int("connect-concurrency", 64, "riders connecting at once (per process)")
	grpcConns := fs.Int("grpc-conns", 8, "HTTP/2 connections per edge and process shared by the gRPC riders")
	procs := fs.Int("procs", 1, "child processes holding the riders (1: this process)")
	zonesFile := fs.String("zones", "", zonesUsage)
	seed := fs.Uint64("seed", 1, "random seed of the taxis and the rider positions")
	edgePIDs := fs.String("edge-pid", "", "edge process ids to sample from /proc, comma-separated")
	bridgePIDs := fs.String("bridge-pid", "", "bridge process ids to sample from /proc, comma-separated")
	edgeAdmin := fs.String("edge-admin", "", "edge admin addresses to sample from /metrics when no -edge-pid, comma-separated")
	bridgeAdmin := fs.String("bridge-admin", "", "bridge admin addresses to sample from /metrics when no -bridge-pid, comma-separated")
	progress := fs.Duration("progress", 5*time.Second, "print progress this often (0: never)")
	out := fs.String("out", "", "write the result as JSON to this file")
	fanout := fs.Bool("fanout", false, "run the edge fan-out harness instead: start redis-server and -edge-bin's edge (pinned to -edge-cpu, the rest to -load-cpu), hold -riders (default 5000, the five transports in equal parts unless -mix) at the centres of a 10x10 block of third meshes, publish vehicle fixes straight into Redis at each of -rates delivered events/s and print the edge's CPU, events per write, latency and RSS per step")
	rates := fs.String("rates", "10000,20000,40000,60000,90000", "with -fanout: delivered events/s of each step, comma-separated (empty: idle riders only, for memory)")
	knee := fs.Bool("knee", false, "with -fanout: after -rates, keep raising the rate by 25% while a step delivers ≥ 95% with p99 ≤ -knee-p99")
	kneeP99 := fs.Duration("knee-p99", 50*time.Millisecond, "with -fanout: the p99 bound of the knee")
	edgeBin := fs.String("edge-bin", "", "with -fanout: the meshcast binary whose edge is measured (default: this one)")
	edgeFlags := fs.String("edge-flags", "", "with -fanout: extra edge flags, space-separated (e.g. \"-write-delay=0\")")
	edgeCPU := fs.Int("edge-cpu", 1, "with -fanout: CPU the edge is pinned to (-1: not pinned)")
	loadCPU := fs.Int("load-cpu", 0, "with -fanout: CPU redis-server, the publisher and the riders are pinned to (-1: not pinned)")
	redisBin := fs.String("redis-server", "redis-server", "with -fanout: the redis-server binary")
	profileDir := fs.String("profile-dir", "", "with -fanout: write a CPU profile of the edge over each step's window to this directory")
	idleVehicles := fs.Int("idle-vehicles", 200, "with -fanout: vehicles published before the riders connect")
	writeFloor := fs.Bool("write-floor", false, "measure the edge's write floor instead: -riders loopback TCP connections read by this process (pinned to -load-cpu) and one thread pinned to -edge-cpu making non-blocking writes of -write-size bytes to random ones at each of -rates writes/s (default 24000); prints the writing thread's CPU per write (what an edge pays per write with nothing around it)")
	writeSize := fs.Int("write-size", 160, "with -write-floor: bytes per write")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *writeFloor {
		return runWriteFloor(ctx, stdout, set, *riders, *rates, *writeSize, *duration, *edgeCPU, *loadCPU, *seed)
	}
	if *fanout {
		return runFanout(ctx, stdout, fanoutFlags{set: set, riders: *riders, mix: *mix, grpcConns: *grpcConns, radius: *radius,
			duration: *duration, warmup: *warmup, interval: *interval, seed: *seed, out: *out, rates: *rates, knee: *knee,
			kneeP99: *kneeP99, edgeBin: *edgeBin, edgeFlags: *edgeFlags, edgeCPU: *edgeCPU, loadCPU: *loadCPU,
			redisBin: *redisBin, idle: *idleVehicles, profileDir: *profileDir})
	}
	m, err := bench.ParseMix(*mix)
	if err != nil {
		return err
	}
	zones, err := loadZones(*zonesFile)
	if err != nil {
		return err
	}
	if *radius == 0 || *radius > 1<<31 {
		return fmt.Errorf("-radius %d: want 1..%d", *radius, 1<<31)
	}
	cfg := bench.Config{Edges: splitCommaList(*edges), Brokers: splitCommaList(*brokers), Zones: zones, Taxis: *taxis,
		Interval: *interval, Seed: *seed, Riders: *riders, Mix: m, RadiusM: uint32(*radius), GRPCConns: *grpcConns,
		ConnectConcurrency: *concurrency, ConnectTimeout: *connectTimeout, Warmup: *warmup, Duration: *duration,
		Procs: *procs, Progress: *progress, Log: os.Stderr}
	if *progress == 0 {
		cfg.Progress = -1
	}
	if v, ok := os.LookupEnv(bench.ChildEnv); ok {
		index, offset, n, err := bench.ParseChild(v)
		if err != nil {
			return err
		}
		return bench.ServeChild(ctx, cfg, index, offset, n, os.Stdin, stdout)
	}
	if *riders < 0 || *taxis < 0 || *procs < 1 {
		return errors.New("-riders and -taxis must not be negative, -procs at least 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Child = func(index, offset, n int) *exec.Cmd {
		cmd := exec.Command(exe, append(append([]string{"bench"}, args...), "-taxis=0", "-procs=1", "-out=", "-progress=0")...)
		cmd.Env = append(os.Environ(), bench.ChildEnv+"="+strconv.Itoa(index)+":"+strconv.Itoa(offset)+":"+strconv.Itoa(n))
		return cmd
	}
	add := func(name, pids, admins string) error {
		for i, p := range splitCommaList(pids) {
			pid, err := strconv.Atoi(p)
			if err != nil || pid <= 0 {
				return fmt.Errorf("-%s-pid %q: want process ids", name, pids)
			}
			cfg.Sources = append(cfg.Sources, bench.Source{Name: fmt.Sprintf("%s %d (pid %d)", name, i, pid), PID: pid})
		}
		if pids == "" {
			for i, a := range splitCommaList(admins) {
				cfg.Sources = append(cfg.Sources, bench.Source{Name: fmt.Sprintf("%s %d (%s)", name, i, a), Admin: a})
			}
		}
		return nil
	}
	if err := errors.Join(add("edge", *edgePIDs, *edgeAdmin), add("bridge", *bridgePIDs, *bridgeAdmin)); err != nil {
		return err
	}
	res, err := bench.Run(ctx, cfg)
	if res == nil {
		return err
	}
	res.WriteTable(stdout)
	if *out != "" {
		f, ferr := os.Create(*out)
		if ferr != nil {
			return errors.Join(err, ferr)
		}
		werr := res.WriteJSON(f)
		return errors.Join(err, werr, f.Close())
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

type fanoutFlags struct {
	set                          map[string]bool
	riders, grpcConns, idle      int
	mix, out, rates              string
	radius                       uint
	duration, warmup, interval   time.Duration
	seed                         uint64
	knee                         bool
	kneeP99                      time.Duration
	edgeBin, edgeFlags, redisBin string
	profileDir                   string
	edgeCPU, loadCPU             int
}

// runFanout runs `meshcast bench -fanout` (core/bench.Fanout).
func runFanout(ctx context.Context, stdout io.Writer, f fanoutFlags) error {
	cfg := bench.FanoutConfig{EdgeBin: f.edgeBin, EdgeFlags: strings.Fields(f.edgeFlags), RedisBin: f.redisBin,
		EdgeCPU: f.edgeCPU, LoadCPU: f.loadCPU, Knee: f.knee, KneeP99: f.kneeP99,
		Interval: f.interval, Idle: f.idle, Seed: f.seed, Log: os.Stderr, ProfileDir: f.profileDir}
	if cfg.EdgeBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.EdgeBin = exe
	}
	if f.riders <= 0 {
		return errors.New("-riders must be positive with -fanout")
	}
	if f.set["grpc-conns"] {
		cfg.GRPCConns = f.grpcConns
	}
	if f.set["riders"] {
		cfg.Riders = f.riders
	}
	if f.set["mix"] {
		m, err := bench.ParseMix(f.mix)
		if err != nil {
			return err
		}
		cfg.Mix = m
	}
	if f.radius == 0 || f.radius > 1<<31 {
		return fmt.Errorf("-radius %d: want 1..%d", f.radius, 1<<31)
	}
	cfg.RadiusM = uint32(f.radius)
	if f.set["duration"] {
		cfg.Duration = f.duration
	}
	if f.set["warmup"] {
		cfg.Warmup = f.warmup
	}
	rates, err := parseRates(f.rates, "delivered events/s")
	if err != nil {
		return err
	}
	cfg.Rates = rates
	if f.edgeCPU >= 0 && f.edgeCPU == f.loadCPU {
		return fmt.Errorf("-edge-cpu and -load-cpu are both %d: pin the edge and the load apart", f.edgeCPU)
	}
	res, err := bench.Fanout(ctx, cfg)
	if res != nil {
		res.WriteTable(stdout)
		if f.out != "" {
			o, ferr := os.Create(f.out)
			if ferr != nil {
				return errors.Join(err, ferr)
			}
			err = errors.Join(err, res.WriteJSON(o), o.Close())
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// runWriteFloor runs bench.WriteFloor and prints its steps.
func runWriteFloor(ctx context.Context, stdout io.Writer, set map[string]bool, riders int, rates string, size int,
	duration time.Duration, writerCPU, loadCPU int, seed uint64) error {
	cfg := bench.WriteFloorConfig{Conns: 5000, Size: size, Duration: duration, WriterCPU: writerCPU, LoadCPU: loadCPU,
		Seed: seed, Log: os.Stderr}
	if set["riders"] {
		cfg.Conns = riders
	}
	if set["rates"] {
		var err error
		if cfg.Rates, err = parseRates(rates, "writes/s"); err != nil {
			return err
		}
	}
	steps, err := bench.WriteFloor(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%9s %10s %8s %8s %12s %6s\n", "target/s", "writes/s", "short", "cpu s", "µs/write", "cores")
	for _, st := range steps {
		fmt.Fprintf(stdout, "%9d %10.0f %8d %8.2f %12.2f %6.2f\n", st.Rate, st.WritesPerS, st.Short, st.CPUSeconds, st.CPUPerWrite, st.Cores)
	}
	return nil
}

// parseRates parses -rates: positive numbers of unit, comma-separated (none: empty).
func parseRates(rates, unit string) ([]int, error) {
	var out []int
	for _, r := range splitCommaList(rates) {
		n, err := strconv.Atoi(r)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-rates %q: want positive %s, comma-separated", rates, unit)
		}
		out = append(out, n)
	}
	return out, nil
}
