package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/mosquittotest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkBridgeThroughput measures one `meshcast bridge` process (a separate OS process, as
// in production) between a real mosquitto and the 3-master Redis Cluster: K publisher
// connections send M QoS 1 messages of V vehicles spread over the Tokyo service area as fast
// as they can (pipelined), and the clock stops when the bridge has processed (applied and
// acknowledged) all of them. Reported per run: msgs/s, and CPU time per message of the bridge,
// mosquitto, the Redis masters together, and the publishing test process. Every process
// shares the machine's cores.
//
//	go test -run XXX -bench BridgeThroughput -benchtime 1x ./bridge/
//
// Knobs (environment): MESHCAST_BENCH_MESSAGES (M, default 200000), MESHCAST_BENCH_PUBLISHERS
// (K, default 4), MESHCAST_BENCH_VEHICLES (V, default 50000), MESHCAST_BENCH_WORKERS (bridge
// -workers, default its own), MESHCAST_BENCH_QUEUE (bridge -queue),
// MESHCAST_BENCH_RECEIVE_MAXIMUM (bridge -receive-maximum), MESHCAST_BENCH_INFLIGHT (mosquitto
// max_inflight_messages: the publishers' in-flight limit, default the harness's 1000),
// MESHCAST_BENCH_PROFILE=file (CPU profile of the bridge, MESHCAST_BENCH_PROFILE_SECONDS long),
// MESHCAST_BENCH_RATE (messages per second over all publishers instead of as fast as they can:
// the bridge's CPU per message at a fleet's steady rate, e.g. 3,333 for 10,000 taxis at 3 s;
// each fix's ts is then its send time, and age-p50/p99/p99.9-ms report the quantiles of the
// bridge's meshcast_bridge_fix_age_seconds: send to acknowledgement),
// MESHCAST_BENCH_BATCH_DELAY (bridge -bus-batch-delay), MESHCAST_BENCH_READ_DELAY (bridge -read-delay), MESHCAST_BENCH_IDLE_SECONDS (first measure the idle CPU of the bridge, mosquitto and Redis for
// that long, logged), MESHCAST_BENCH_BIN (the meshcast binary to run as the bridge instead of one built from this
// tree: an A/B comparison of two builds, or a wrapper script that pins it to a core).
//
// Also reported: the quantiles of the bridge's meshcast_bridge_processing_seconds (receipt of the
// MQTT message to its acknowledgement, which follows the SPUBLISH; the upper bound of the
// histogram bucket holding the quantile), and the Redis commands the masters ran per message
// (INFO commandstats: calls of EVALSHA and of all commands).
//
// Pinned, as BENCHMARKS.md reports it (the bridge alone on core 1, everything else on core 0):
//
//	go test -c -o /tmp/bridge.test ./bridge && go build -o /tmp/meshcast .
//	printf '#!/bin/sh\nexec taskset -c 1 /tmp/meshcast "$@"\n' > /tmp/pinned && chmod +x /tmp/pinned
//	cd bridge && MESHCAST_BENCH_BIN=/tmp/pinned MESHCAST_BENCH_RATE=3333 MESHCAST_BENCH_MESSAGES=66660 \
//	    MESHCAST_BENCH_VEHICLES=10000 taskset -c 0 /tmp/bridge.test -test.run XXX -test.bench BridgeThroughput -test.benchtime 1x
func BenchmarkBridgeThroughput(b *testing.B) { benchBridge(b, false) }

// BenchmarkBridgeBacklog measures the bridge alone draining a backlog: the bridge subscribes
// (a persistent session) and stops, the M messages are published and queued by mosquitto for
// its session, then the bridge starts again and the clock runs from its start until it has
// processed all of them. No publisher competes for the cores; mosquitto and Redis still do.
// Same knobs as BenchmarkBridgeThroughput.
func BenchmarkBridgeBacklog(b *testing.B) { benchBridge(b, true) }

func benchBridge(b *testing.B, backlog bool) {
	m := envInt("MESHCAST_BENCH_MESSAGES", 200000)
	k := envInt("MESHCAST_BENCH_PUBLISHERS", 4)
	v := envInt("MESHCAST_BENCH_VEHICLES", 50000)
	rate := envInt("MESHCAST_BENCH_RATE", 0)
	bin := os.Getenv("MESHCAST_BENCH_BIN")
	if bin == "" {
		bin = meshcastBinary(b)
	}
	broker := mosquittotest.Start(b, mosquittotest.Options{MaxInflight: envInt("MESHCAST_BENCH_INFLIGHT", 0)})
	zones := tokyoZones(b)

	// Vehicles at random dispatchable points; each message moves its vehicle a little, so
	// most are upserts in the same mesh and some cross into the next one.
	rng := rand.New(rand.NewPCG(1, 2))
	pos := make([][2]float64, v)
	for i := range pos {
		for {
			lat, lon := 35.52+rng.Float64()*0.3, 139.56+rng.Float64()*0.36
			if zones.Classify(lat, lon).Dispatchable() {
				pos[i] = [2]float64{lat, lon}
				break
			}
		}
	}
	type msg struct {
		topic    string
		payload  []byte
		lat, lon float64
	}
	base := time.Now().UnixMilli() - 20*60*1000
	perConn := make([][]msg, k)
	for j := range m {
		veh, fix := j%v, j/v
		p := pos[veh]
		p[0] += float64(fix) * 0.0001
		ms := msg{topic: fmt.Sprintf("taxi/bench/v%d/state", veh), lat: p[0], lon: p[1]}
		if rate == 0 {
			ms.payload = fixJSON(p[0], p[1], base+int64(fix)*3000, "vacant")
		}
		perConn[veh%k] = append(perConn[veh%k], ms)
	}

	for i := range b.N {
		b.StopTimer()
		prefix := uniquePrefix()
		args := []string{"-broker", broker.URL(), "-bus", cluster.URL(), "-bus-prefix", prefix,
			"-client-id", fmt.Sprintf("bench-%d-%s", i, prefix), "-zones", "deploy/zones/tokyo.geojson",
			"-ttl", "1h", "-log-level", "warn"}
		if w := os.Getenv("MESHCAST_BENCH_WORKERS"); w != "" {
			args = append(args, "-workers", w)
		}
		if q := os.Getenv("MESHCAST_BENCH_QUEUE"); q != "" {
			args = append(args, "-queue", q)
		}
		if d := os.Getenv("MESHCAST_BENCH_BATCH_DELAY"); d != "" {
			args = append(args, "-bus-batch-delay", d)
		}
		if d := os.Getenv("MESHCAST_BENCH_READ_DELAY"); d != "" {
			args = append(args, "-read-delay", d)
		}
		if r := os.Getenv("MESHCAST_BENCH_RECEIVE_MAXIMUM"); r != "" {
			args = append(args, "-receive-maximum", r)
		}
		proc := startBridgeProc(b, bin, args...)
		pubs := make([]*paho.Client, k)
		for c := range pubs {
			pubs[c] = dialAsync(b, broker.Addr, fmt.Sprintf("bench-pub-%d-%d", i, c))
		}
		publish := func() {
			var wg sync.WaitGroup
			for c := range pubs {
				wg.Go(func() {
					ctx := context.Background()
					t0 := time.Now()
					for n, ms := range perConn[c] {
						if rate > 0 { // pacing, not synchronisation: this connection's share of the rate
							if d := time.Until(t0.Add(time.Duration(n) * time.Duration(k) * time.Second / time.Duration(rate))); d > 0 {
								time.Sleep(d)
							}
						}
						payload := ms.payload
						if payload == nil {
							// Paced: the fix's ts is its send time, rounded to the nearest ms, so
							// that the bridge's meshcast_bridge_fix_age_seconds measures the delay
							// from the publisher's send to the acknowledgement (±0.5 ms).
							payload = fixJSON(ms.lat, ms.lon, (time.Now().UnixMicro()+500)/1000, "vacant")
						}
						_, err := pubs[c].PublishWithOptions(ctx, &paho.Publish{Topic: ms.topic, QoS: 1, Payload: payload},
							paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
						if err != nil {
							b.Errorf("publish: %v", err)
							return
						}
					}
					// mosquitto handles a connection's packets in order: once this one is
					// acknowledged, every message before it has been accepted.
					if _, err := pubs[c].Publish(ctx, &paho.Publish{Topic: "bench/done", QoS: 1}); err != nil {
						b.Errorf("publish: %v", err)
					}
				})
			}
			wg.Wait()
		}
		if idle := envInt("MESHCAST_BENCH_IDLE_SECONDS", 0); idle > 0 && !backlog {
			// The idle cost: the bridge connected and subscribed, Redis and mosquitto up, no traffic.
			c0 := sampleCPU(b, proc.cmd.Process.Pid, broker.PID())
			time.Sleep(time.Duration(idle) * time.Second)
			c1 := sampleCPU(b, proc.cmd.Process.Pid, broker.PID())
			per := func(d time.Duration) float64 { return d.Seconds() / float64(idle) * 1000 }
			b.Logf("idle for %d s: CPU ms per second: bridge %.1f, mosquitto %.1f, redis (3 masters) %.1f",
				idle, per(c1.bridge-c0.bridge), per(c1.mosquitto-c0.mosquitto), per(c1.redis-c0.redis))
		}
		var published time.Duration
		if backlog {
			proc.stop(b)
			publish()
		}
		cpu0 := sampleCPU(b, 0, broker.PID())
		cmd0 := redisCommands(b)
		var io0 [2]int64
		var cs0 int64
		if !backlog {
			io0 = procSyscalls(proc.cmd.Process.Pid)
			cs0 = procSwitches(proc.cmd.Process.Pid)
		}
		load0 := loadAvg()
		start := time.Now()
		b.StartTimer()
		if backlog {
			proc = startBridgeProc(b, bin, args...)
		} else {
			cpu0.bridge = procCPU(b, proc.cmd.Process.Pid)
		}
		waitProfile := profileBridge(proc.admin, envInt("MESHCAST_BENCH_PROFILE_SECONDS", 3))
		if !backlog {
			publish()
			published = time.Since(start)
		}
		// Polled only once the publishers are done (each /metrics scrape costs the bridge CPU,
		// which at a low rate would be a visible share of its work).
		deadline := time.Now().Add(10 * time.Minute)
		for processed(proc.admin) < float64(m) {
			if time.Now().After(deadline) {
				b.Fatalf("processed %v of %d after 10 minutes", processed(proc.admin), m)
			}
			time.Sleep(100 * time.Millisecond) // polling interval (the resolution of the measurement; /metrics costs CPU)
		}
		el := time.Since(start)
		b.StopTimer()
		waitProfile()
		cpu1 := sampleCPU(b, proc.cmd.Process.Pid, broker.PID())
		cmd1 := redisCommands(b)
		io1 := procSyscalls(proc.cmd.Process.Pid)
		cs1 := procSwitches(proc.cmd.Process.Pid)
		lat := scrapeHistogram(proc.admin, "meshcast_bridge_processing_seconds")
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(m) }
		b.ReportMetric(float64(m)/el.Seconds(), "msgs/s")
		b.ReportMetric(per(cpu1.bridge-cpu0.bridge), "bridge-cpu-µs/msg")
		b.ReportMetric(per(cpu1.mosquitto-cpu0.mosquitto), "mosquitto-cpu-µs/msg")
		b.ReportMetric(per(cpu1.redis-cpu0.redis), "redis-cpu-µs/msg")
		if !backlog {
			b.ReportMetric(per(cpu1.self-cpu0.self), "publisher-cpu-µs/msg")
		}
		b.ReportMetric(float64(cmd1.evalsha-cmd0.evalsha)/float64(m), "evalsha/msg")
		b.ReportMetric(float64(cmd1.all-cmd0.all)/float64(m), "redis-cmds/msg")
		b.ReportMetric(float64(cmd1.usec-cmd0.usec)/float64(m), "redis-script-µs/msg")
		b.ReportMetric(float64(io1[0]-io0[0])/float64(m), "bridge-reads/msg")
		b.ReportMetric(float64(io1[1]-io0[1])/float64(m), "bridge-writes/msg")
		b.ReportMetric(float64(cs1-cs0)/float64(m), "bridge-switches/msg")
		for _, q := range []float64{0.5, 0.99, 0.999} {
			b.ReportMetric(lat.quantile(q)*1000, fmt.Sprintf("p%g-ms", q*100))
		}
		if age := scrapeHistogram(proc.admin, "meshcast_bridge_fix_age_seconds"); rate > 0 && len(age.le) > 0 {
			// Send to acknowledgement (the fixes' ts is their send time): what the bridge adds
			// before its receipt (a read delay) shows here and not in processing.
			for _, q := range []float64{0.5, 0.99, 0.999} {
				b.ReportMetric(age.quantile(q)*1000, fmt.Sprintf("age-p%g-ms", q*100))
			}
		}
		if bw := scrapeHistogram(proc.admin, "meshcast_bus_batch_wait_seconds"); len(bw.le) > 0 {
			b.ReportMetric(bw.quantile(0.5)*1000, "bus-wait-p50-ms")
			b.ReportMetric(bw.quantile(0.99)*1000, "bus-wait-p99-ms")
		}
		b.Logf("load average %s at the start, %s at the end", load0, loadAvg())
		if testing.Verbose() {
			for name, v := range cmd1.per {
				if d := [2]int64{v[0] - cmd0.per[name][0], v[1] - cmd0.per[name][1]}; d[0] > 0 {
					b.Logf("redis %s: %.2f calls/msg, %.1f µs/call", name, float64(d[0])/float64(m), float64(d[1])/float64(d[0]))
				}
			}
		}
		b.Logf("%d messages, %d publishers, %d vehicles, backlog %v: published in %v, processed in %v (%.0f msg/s); CPU s: bridge %.2f, mosquitto %.2f, redis %.2f, test process %.2f (wall %.2f s, 2 cores)",
			m, k, v, backlog, published.Round(time.Millisecond), el.Round(time.Millisecond), float64(m)/el.Seconds(),
			(cpu1.bridge - cpu0.bridge).Seconds(), (cpu1.mosquitto - cpu0.mosquitto).Seconds(),
			(cpu1.redis - cpu0.redis).Seconds(), (cpu1.self - cpu0.self).Seconds(), el.Seconds())
		for _, c := range pubs {
			_ = c.Disconnect(&paho.Disconnect{})
		}
		proc.kill()
	}
}

// dialAsync connects a paho client for pipelined QoS 1 publishing.
func dialAsync(tb testing.TB, addr, id string) *paho.Client {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60}); err != nil {
		tb.Fatal(err)
	}
	return c
}

// processed returns how many messages the bridge has finished (acknowledged): processed
// valid ones plus rejected ones, from its /metrics.
func processed(admin string) float64 {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "meshcast_bridge_processing_seconds_count ") ||
			strings.HasPrefix(line, "meshcast_bridge_messages_rejected_total{") {
			f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			n += f
		}
	}
	return n
}

type cpuSample struct{ bridge, mosquitto, redis, self time.Duration }

func sampleCPU(tb testing.TB, bridgePID, mosquittoPID int) cpuSample {
	var s cpuSample
	if bridgePID != 0 {
		s.bridge = procCPU(tb, bridgePID)
	}
	s.mosquitto = procCPU(tb, mosquittoPID)
	for _, addr := range cluster.Addrs() {
		v, err := redistest.Do(addr, 5*time.Second, "INFO", "cpu")
		if err != nil {
			tb.Fatal(err)
		}
		for _, l := range strings.Split(fmt.Sprint(v), "\n") {
			for _, key := range []string{"used_cpu_sys:", "used_cpu_user:"} {
				if x, ok := strings.CutPrefix(strings.TrimSpace(l), key); ok {
					f, _ := strconv.ParseFloat(x, 64)
					s.redis += time.Duration(f * float64(time.Second))
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return s
}

// procCPU returns the user+system CPU time of a process from /proc/<pid>/stat (clock ticks of
// 10 ms: USER_HZ is 100 on Linux).
func procCPU(tb testing.TB, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// profileBridge, when MESHCAST_BENCH_PROFILE names a file, writes a CPU profile of the bridge
// process taken during the run.
func profileBridge(admin string, seconds int) (wait func()) {
	file := os.Getenv("MESHCAST_BENCH_PROFILE")
	if file == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, seconds))
		if err != nil {
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(file)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}()
	return func() { <-done }
}

// loadAvg returns the 1, 5 and 15 minute load averages (/proc/loadavg).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

type redisCalls struct {
	evalsha, all, usec int64 // usec: time in scripts (INFO commandstats)
	per                map[string][2]int64
}

// redisCommands returns the commands the cluster's masters have run (INFO commandstats; commands
// run by a script count too, so all is the Redis work in commands).
func redisCommands(tb testing.TB) redisCalls {
	c := redisCalls{per: map[string][2]int64{}}
	for _, addr := range cluster.Addrs() {
		v, err := redistest.Do(addr, 5*time.Second, "INFO", "commandstats")
		if err != nil {
			tb.Fatal(err)
		}
		for _, l := range strings.Split(fmt.Sprint(v), "\n") {
			// cmdstat_evalsha:calls=12,usec=345,...
			name, rest, ok := strings.Cut(strings.TrimSpace(l), ":calls=")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest+",", ',')], 10, 64)
			c.all += n
			if _, u, ok := strings.Cut(rest, ",usec="); ok {
				us, _ := strconv.ParseInt(u[:strings.IndexByte(u+",", ',')], 10, 64)
				p := c.per[name]
				c.per[name] = [2]int64{p[0] + n, p[1] + us}
				if name == "cmdstat_evalsha" || name == "cmdstat_eval" { // commands run by scripts count in both
					c.usec += us
				}
			}
			if name == "cmdstat_evalsha" || name == "cmdstat_eval" {
				c.evalsha += n
			}
		}
	}
	return c
}

// histogram is a cumulative Prometheus histogram as scraped: upper bounds and counts.
type histogram struct {
	le     []float64
	counts []float64
}

// quantile returns the upper bound of the bucket that holds quantile q (+Inf past the last
// bound; NaN without observations).
func (h histogram) quantile(q float64) float64 {
	if len(h.counts) == 0 || h.counts[len(h.counts)-1] == 0 {
		return math.NaN()
	}
	total := h.counts[len(h.counts)-1]
	for i, c := range h.counts {
		if c >= q*total {
			return h.le[i]
		}
	}
	return math.Inf(1)
}

// scrapeHistogram reads the buckets of an unlabelled histogram from /metrics.
func scrapeHistogram(admin, name string) histogram {
	var h histogram
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return h
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+"_bucket{le=\"")
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, "\"} ")
		if !ok {
			continue
		}
		b, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 == nil && err2 == nil {
			h.le, h.counts = append(h.le, b), append(h.counts, n)
		}
	}
	return h
}

// procSyscalls returns the read and write system calls a process has made (/proc/<pid>/io:
// syscr, syscw; every thread's, sockets included).
func procSyscalls(pid int) (rw [2]int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return rw
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			rw[0], _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			rw[1], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return rw
}

// procSwitches returns the context switches of every thread of a process so far (voluntary: it
// went to sleep, which is what waking up costs; and involuntary), from /proc/<pid>/task/*/status.
func procSwitches(pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			for _, k := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if v, ok := strings.CutPrefix(l, k); ok {
					x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					n += x
				}
			}
		}
	}
	return n
}
