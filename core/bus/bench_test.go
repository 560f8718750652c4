package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// benchApply runs parallel Apply calls of vehicle transitions from the given number of goroutines
// (RunParallel's, set by the caller): a fleet of 25,600 vehicles spread over 1000 meshes is split
// between them (25 each with 1024 goroutines; the fleet does not grow with the client's
// concurrency); every goroutine sends its vehicles fixes in turn with increasing times; every 10th
// fix of a vehicle moves it to the next mesh (a removal and an upsert), the others are upserts in
// place. transitions/s counts Apply calls (each applied, none stale); cas-items/call and
// write-items/call are the mean batch sizes of the two script calls.
//
// With servers given, it also reports the CPU time per transition of this process (client-µs/op,
// from getrusage: the bus and rueidis, but also the benchmark loop) and of the Redis servers
// (redis-µs/op, from INFO cpu), which share the machine's cores.
func benchApply(b *testing.B, bb bus.Bus, goroutines int, servers ...*redistest.Node) {
	ms := gridMeshes(1000)
	names := make([]string, len(ms)) // formatted once: the loop measures the bus
	for i, m := range ms {
		names[i] = m.String()
	}
	perG := max(1, benchFleet/goroutines)
	var gs atomic.Int64
	base := time.Now().UnixMilli()
	var events atomic.Int64
	b.ReportAllocs()
	redis0, self0 := redisCPU(b, servers), selfCPU()
	var cas0, casN0, wr0, wrN0 int64
	if len(servers) > 0 {
		cas0, casN0, wr0, wrN0 = bus.BatchStats(bb)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := int(gs.Add(1))
		ids := make([]string, perG)
		for i := range ids {
			ids[i] = fmt.Sprintf("bench%d/g%d-v%d", base, g, i)
		}
		v := &meshcastv1.Vehicle{Fleet: fmt.Sprintf("bench%d", base), Lat: 35.68, Lon: 139.76, HeadingDeg: 90, SpeedKmh: 30,
			Class: meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD}
		u := bus.Update{Vehicle: v, Dispatchable: true}
		ctx := context.Background()
		var n, ev int
		for pb.Next() {
			i, k := n%perG, n/perG
			m := (g*perG + i + (k+i)/10) % len(ms) // moves when (k+i)%10 == 0
			v.Id, v.Mesh, v.ObservedAtMs = ids[i], names[m], base+int64(k)
			res, err := bb.Apply(ctx, u)
			if err != nil {
				b.Error(err)
				return
			}
			if !res.Applied {
				b.Errorf("fix %d of %s not applied", k, v.Id)
				return
			}
			ev += res.Events
			n++
		}
		events.Add(int64(ev))
	})
	b.StopTimer()
	if len(servers) > 0 {
		b.ReportMetric((redisCPU(b, servers)-redis0).Seconds()*1e6/float64(b.N), "redis-µs/op")
		b.ReportMetric((selfCPU()-self0).Seconds()*1e6/float64(b.N), "client-µs/op")
		cas, casN, wr, wrN := bus.BatchStats(bb)
		b.ReportMetric(float64(casN-casN0)/float64(max(cas-cas0, 1)), "cas-items/call")
		b.ReportMetric(float64(wrN-wrN0)/float64(max(wr-wr0, 1)), "write-items/call")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transitions/s")
	b.ReportMetric(float64(events.Load())/float64(b.N), "events/op")
}

// benchFleet is the number of vehicles of benchApply.
const benchFleet = 25600

// redisCPU returns the CPU time (user+sys) the servers have used so far.
func redisCPU(b *testing.B, servers []*redistest.Node) time.Duration {
	var sum time.Duration
	for _, n := range servers {
		v, err := n.Do("INFO", "cpu")
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(v.(string), "\n") {
			k, val, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_user" || k == "used_cpu_sys" {
				f, _ := strconv.ParseFloat(val, 64)
				sum += time.Duration(f * float64(time.Second))
			}
		}
	}
	return sum
}

// selfCPU returns the CPU time (user+sys) this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchGoroutines is the number of concurrent Apply calls (BUS_GOROUTINES, default 1024, whatever
// GOMAXPROCS): Apply is two round trips, each waiting for the batch of its bucket, so throughput
// needs many calls in flight, as a bridge with as many workers has.
func benchGoroutines() int {
	if p, err := strconv.Atoi(os.Getenv("BUS_GOROUTINES")); err == nil && p > 0 {
		return p
	}
	return 1024
}

// setParallelism makes RunParallel start benchGoroutines() goroutines (rounded up to a multiple
// of GOMAXPROCS).
func setParallelism(b *testing.B) {
	p := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchGoroutines() + p - 1) / p)
}

// benchBatching applies BUS_BATCHING="<vehicle buckets>,<mesh buckets>,<max batch>" (measuring
// other bucket counts) until the benchmark ends.
func benchBatching(b *testing.B) {
	v := os.Getenv("BUS_BATCHING")
	if v == "" {
		return
	}
	var vb, mb, mx int
	if _, err := fmt.Sscanf(v, "%d,%d,%d", &vb, &mb, &mx); err != nil || vb <= 0 || mb <= 0 || mx <= 0 {
		b.Fatalf("BUS_BATCHING=%q: want <vehicle buckets>,<mesh buckets>,<max batch>", v)
	}
	b.Cleanup(bus.SetBatching(vb, mb, mx))
}

func benchOptions() bus.Options {
	// BUS_FLUSH_DELAY overrides Options.FlushDelay ("-1ns" disables it).
	fd, _ := time.ParseDuration(os.Getenv("BUS_FLUSH_DELAY"))
	return bus.Options{KeyPrefix: uniquePrefix(), Logger: slog.New(slog.DiscardHandler), FlushDelay: fd}
}

// BenchmarkApplyCluster measures Apply throughput into a local 3-master Redis Cluster.
func BenchmarkApplyCluster(b *testing.B) {
	_, c := sharedRedis(b)
	benchBatching(b)
	setParallelism(b)
	benchApply(b, openRedis(b, c.URL(), benchOptions()), benchGoroutines(), c.Nodes()...)
}

// BenchmarkApplySingle measures Apply throughput into one local Redis.
func BenchmarkApplySingle(b *testing.B) {
	s, _ := sharedRedis(b)
	benchBatching(b)
	setParallelism(b)
	benchApply(b, openRedis(b, s.URL(), benchOptions()), benchGoroutines(), s.Node)
}

// BenchmarkApplyMemory measures the in-memory bus.
func BenchmarkApplyMemory(b *testing.B) {
	bb := bus.NewMemory(benchOptions())
	defer bb.Close()
	benchApply(b, bb, runtime.GOMAXPROCS(0))
}
