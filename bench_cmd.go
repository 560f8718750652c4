package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/meshcast/meshcast/core/bench"
	"github.com/meshcast/meshcast/core/config"
)

func init() {
	register("bench", "end-to-end load and latency against a running deployment", runBench)
}

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
	if err := config.Parse(fs, args, nil); err != nil {
		return err
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
