package bench

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// BenchmarkEndToEnd runs the load of `meshcast bench` against a real deployment: mosquitto, a
// 3-master Redis Cluster, `meshcast bridge` and `meshcast edge` as separate processes.
// Knobs: MESHCAST_BENCH_RIDERS (1000), _TAXIS (1000), _PROCS (1), _SECONDS (10), _MIX
// (ws=40,sse=20,grpc=30,grpcweb=10), _RADIUS (1000). Reports the latency quantiles, delivered
// events/s and the edge's and bridge's CPU per fix and per event; logs the full table.
func BenchmarkEndToEnd(b *testing.B) {
	mix, err := ParseMix(strings.TrimSpace(os.Getenv("MESHCAST_BENCH_MIX") + ""))
	if err != nil {
		mix = nil
	}
	d := startDeployment(b, deployOptions{})
	zones := tokyo(b)
	riders := envInt("MESHCAST_BENCH_RIDERS", 1000)
	procs := envInt("MESHCAST_BENCH_PROCS", 1)
	radius := envInt("MESHCAST_BENCH_RADIUS", 1000)
	mixArg := os.Getenv("MESHCAST_BENCH_MIX")
	if mixArg == "" {
		mixArg = "ws=40,sse=20,grpc=30,grpcweb=10"
	}
	for range b.N {
		cfg := Config{Edges: []string{d.edgeAddr}, Brokers: []string{d.broker.URL()}, Zones: zones,
			Taxis: envInt("MESHCAST_BENCH_TAXIS", 1000), Riders: riders, Mix: mix, RadiusM: uint32(radius),
			Duration: time.Duration(envInt("MESHCAST_BENCH_SECONDS", 10)) * time.Second, Warmup: 5 * time.Second,
			Procs: procs, Sources: d.sources(), Log: benchLog{b}, Seed: 1}
		cfg.Child = func(index, offset, n int) *exec.Cmd {
			cmd := exec.Command(d.bin, "bench", "-edge", d.edgeAddr, "-mix", mixArg, "-radius", strconv.Itoa(radius),
				"-seed", "1", "-taxis=0", "-procs=1", "-progress=0")
			cmd.Dir = moduleRoot(b)
			cmd.Env = append(os.Environ(), ChildEnv+"="+strconv.Itoa(index)+":"+strconv.Itoa(offset)+":"+strconv.Itoa(n))
			return cmd
		}
		res, err := Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		var sb strings.Builder
		res.WriteTable(&sb)
		b.Log(sb.String())
		b.ReportMetric(res.Latency.P50ms, "p50-ms")
		b.ReportMetric(res.Latency.P99ms, "p99-ms")
		b.ReportMetric(res.Latency.P999ms, "p99.9-ms")
		b.ReportMetric(res.EventsPerSec, "events/s")
		for _, s := range res.Servers {
			if s.Name == "edge" {
				b.ReportMetric(s.MicrosPerEvt, "edge-µs/event")
				b.ReportMetric(s.RSSEndMB, "edge-RSS-MB")
			}
			if s.Name == "bridge" {
				b.ReportMetric(s.MicrosPerMsg, "bridge-µs/fix")
			}
		}
		if out := os.Getenv("MESHCAST_BENCH_OUT"); out != "" {
			f, err := os.Create(out)
			if err == nil {
				res.WriteJSON(f)
				f.Close()
			}
		}
	}
}

// benchLog writes progress lines to the test log.
type benchLog struct{ tb testing.TB }

func (l benchLog) Write(p []byte) (int, error) {
	l.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
