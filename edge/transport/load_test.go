package transport

// Load benchmarks for BENCHMARKS.md: memory per idle connected rider on each transport, and
// delivered events per second per edge CPU core. The riders' clients run in a child process
// (this test binary re-executed, see TestMain), so that the server's process holds only the
// server side of each connection: its memory is what the benchmark reads, and the open-files
// limit (20,000 here) is spent once per process, not twice.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// Environment of a load child.
const (
	envChild     = "MESHCAST_LOAD_CHILD" // the transport: grpc, ws-json, ws-proto, sse
	envAddr      = "MESHCAST_LOAD_ADDR"
	envRiders    = "MESHCAST_LOAD_RIDERS"
	envGRPCConns = "MESHCAST_LOAD_GRPC_CONNS"
)

func TestMain(m *testing.M) {
	if tr := os.Getenv(envChild); tr != "" {
		os.Exit(loadChild(tr))
	}
	os.Exit(m.Run())
}

// loadChild opens the riders, prints "ready" once every one got its first event, counts the
// events that arrive afterwards, and on stdin's EOF prints "events <n>" and exits.
func loadChild(tr string) int {
	addr := os.Getenv(envAddr)
	n, _ := strconv.Atoi(os.Getenv(envRiders))
	conns, _ := strconv.Atoi(os.Getenv(envGRPCConns))
	conns = max(conns, 1)
	var events atomic.Int64
	var ready sync.WaitGroup
	ready.Add(n)
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "load child:", err); return 1 }
	q := "lat=35.681236&lon=139.767125&radius_m=1000"

	var ccs []*grpc.ClientConn
	if tr == "grpc" {
		for range conns {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return fail(err)
			}
			ccs = append(ccs, cc)
		}
	}
	req, _ := proto.Marshal(&meshcastv1.WatchRequest{Lat: 35.681236, Lon: 139.767125, RadiusM: 1000})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}}

	open := func(i int) error {
		first := true
		got := func(k int) {
			if first {
				first = false
				ready.Done()
				k--
			}
			events.Add(int64(k))
		}
		switch tr {
		case "grpc":
			st, err := ccs[i%len(ccs)].NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true},
				meshcastv1.RiderService_Watch_FullMethodName, grpc.ForceCodecV2(bytesCodec{}))
			if err != nil {
				return err
			}
			if err := st.SendMsg(req); err != nil {
				return err
			}
			st.CloseSend()
			go func() {
				var b []byte
				for st.RecvMsg(&b) == nil {
					got(1)
				}
			}()
		case "ws-json", "ws-proto":
			sub := SubprotocolJSON
			if tr == "ws-proto" {
				sub = SubprotocolProto
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			c, _, err := websocket.Dial(ctx, "ws://"+addr+PathWebSocket+"?"+q, &websocket.DialOptions{Subprotocols: []string{sub}})
			cancel()
			if err != nil {
				return err
			}
			go func() {
				for {
					_, b, err := c.Read(context.Background())
					if err != nil {
						return
					}
					if sub == SubprotocolJSON {
						got(bytes.Count(b, []byte("\n")) + 1)
					} else {
						got(countDelimited(b))
					}
				}
			}()
		case "sse":
			resp, err := client.Get("http://" + addr + PathSSE + "?" + q)
			if err != nil {
				return err
			}
			if resp.StatusCode != 200 {
				return fmt.Errorf("sse: HTTP %d", resp.StatusCode)
			}
			go func() {
				br := bufio.NewReaderSize(resp.Body, 4096)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil && err != bufio.ErrBufferFull {
						return
					}
					if bytes.HasPrefix(line, []byte("id: ")) {
						got(1)
					}
				}
			}()
		default:
			return fmt.Errorf("unknown transport %q", tr)
		}
		return nil
	}

	// Open with bounded concurrency.
	work := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range work {
				if err := open(i); err != nil {
					select {
					case errc <- fmt.Errorf("rider %d: %w", i, err):
					default:
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return fail(err)
	default:
	}
	ready.Wait()
	events.Store(0)
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	fmt.Printf("events %d\n", events.Load())
	return 0
}

func countDelimited(b []byte) int {
	n := 0
	for len(b) > 0 {
		l, k := uvarint(b)
		if k <= 0 || int(l) > len(b)-k {
			return n
		}
		b = b[k+int(l):]
		n++
	}
	return n
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

// child is a running load child.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

func startChild(b *testing.B, tr, addr string, riders, grpcConns int) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+tr, envAddr+"="+addr,
		envRiders+"="+strconv.Itoa(riders), envGRPCConns+"="+strconv.Itoa(grpcConns))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(out)}
	b.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	line, err := c.stdout.ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("load child: %q %v", line, err)
	}
	return c
}

// stop ends the child and returns the events it counted after "ready".
func (c *child) stop(b *testing.B) int64 {
	c.stdin.Close()
	line, err := c.stdout.ReadString('\n')
	if err != nil {
		b.Fatalf("load child: %v", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "events ")), 10, 64)
	if err != nil {
		b.Fatalf("load child said %q", line)
	}
	c.cmd.Wait()
	return n
}

func benchRiders() int {
	if n, err := strconv.Atoi(os.Getenv("MESHCAST_BENCH_RIDERS")); err == nil && n > 0 {
		return n
	}
	return 10000
}

var loadTransports = []string{"grpc", "ws-json", "ws-proto", "sse"}

// liveMemory returns the live heap and stack bytes after a full GC.
func liveMemory() (heap, stack uint64, goroutines int) {
	// Several cycles: each may halve an idle goroutine's oversized stack once.
	for range 5 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// BenchmarkIdleRiderMemory measures the edge's memory per idle connected rider: live heap +
// goroutine stacks after GC, with and without MESHCAST_BENCH_RIDERS (default 10,000) riders
// connected from a child process, divided by the riders. Every rider watches a 1 km circle
// around Tokyo Station holding 10 vehicles. gRPC riders share 10 connections. Kernel socket
// buffers are not included. Run with -benchtime 1x and one transport per process
// (-bench 'BenchmarkIdleRiderMemory/ws-json$'): the runtime keeps the descriptors of exited
// goroutines (~450 B each, on the heap) for reuse, so a second run in the same process would not
// count the riders' goroutine descriptors.
func BenchmarkIdleRiderMemory(b *testing.B) {
	for _, tr := range loadTransports {
		b.Run(tr, func(b *testing.B) {
			n := benchRiders()
			bs := bus.NewMemory(bus.Options{TTL: time.Hour})
			defer bs.Close()
			ts := startServer(b, bs, nil, Options{})
			sc := &scenario{t: b, b: bs, clk: new(clock), last: map[string]int64{}}
			for i := range 10 {
				sc.fix(fmt.Sprintf("f/v%d", i), pt{35.6812 + float64(i-5)*0.0006, 139.7671 + float64(i%3-1)*0.0008}, 0)
			}
			// One rider first, so the hub's meshes and the server's shared state exist before
			// the baseline.
			if os.Getenv("MESHCAST_HEAP_PROFILE") != "" {
				runtime.MemProfileRate = 1
			}
			warm := startChild(b, tr, ts.addr, 1, 1)
			h0, s0, g0 := liveMemory()
			c := startChild(b, tr, ts.addr, n, 10)
			h1, s1, g1 := liveMemory()
			if p := os.Getenv("MESHCAST_HEAP_PROFILE"); p != "" {
				f, _ := os.Create(p + "." + tr)
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				f, _ = os.Create(p + "." + tr + ".goroutine")
				pprof.Lookup("goroutine").WriteTo(f, 1)
				f.Close()
			}
			reportPerRider(b, n, h0, s0, g0, h1, s1, g1)
			c.stop(b)
			warm.stop(b)
		})
	}
}

// BenchmarkIdleSessionMemory is the baseline of BenchmarkIdleRiderMemory without a transport:
// the same riders as sessions opened in-process, each with one goroutine waiting in Next (as
// the gRPC transports have; an idle WebSocket or SSE rider has none, see direct.go), so that the
// transport's own share is the difference.
func BenchmarkIdleSessionMemory(b *testing.B) {
	n := benchRiders()
	bs := bus.NewMemory(bus.Options{TTL: time.Hour})
	defer bs.Close()
	ts := startServer(b, bs, nil, Options{})
	sc := &scenario{t: b, b: bs, clk: new(clock), last: map[string]int64{}}
	for i := range 10 {
		sc.fix(fmt.Sprintf("f/v%d", i), pt{35.6812 + float64(i-5)*0.0006, 139.7671 + float64(i%3-1)*0.0008}, 0)
	}
	req := &meshcastv1.WatchRequest{Lat: 35.681236, Lon: 139.767125, RadiusM: 1000}
	open := func() (*session.Session, chan struct{}) {
		sess, err := session.New(ts.hub, proto.CloneOf(req), session.Options{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		first := make(chan struct{})
		go func() {
			defer close(done)
			var frames []session.Frame
			var err error
			for i := 0; ; i++ {
				if frames, err = sess.Next(context.Background(), frames[:0]); err != nil {
					return
				}
				if i == 0 {
					close(first)
				}
				frames = frameBuf(frames)
			}
		}()
		<-first
		return sess, done
	}
	warm, wdone := open()
	h0, s0, g0 := liveMemory()
	sessions := make([]*session.Session, n)
	dones := make([]chan struct{}, n)
	for i := range n {
		sessions[i], dones[i] = open()
	}
	h1, s1, g1 := liveMemory()
	reportPerRider(b, n, h0, s0, g0, h1, s1, g1)
	for i, s := range append(sessions, warm) {
		s.Close()
		if i < n {
			<-dones[i]
		}
	}
	<-wdone
}

// BenchmarkIdleGRPCFloor is what grpc-go itself costs per idle server stream, with no session:
// the same server options as Server (codec, keepalive, shared write buffer) and a Watch handler
// that receives the request, sends one message and waits for the stream's end, the least any
// handler can do. The riders (MESHCAST_BENCH_RIDERS, default 10,000) share 10 connections from
// a child process, as in BenchmarkIdleRiderMemory. Run with -benchtime 1x.
func BenchmarkIdleGRPCFloor(b *testing.B) {
	n := benchRiders()
	o, err := Options{}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(
		grpc.ForceServerCodecV2(newCodec()),
		grpc.MaxRecvMsgSize(o.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout}),
	)
	d := meshcastv1.RiderService_ServiceDesc
	d.HandlerType = (*any)(nil)
	d.Streams = []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(_ any, st grpc.ServerStream) error {
		var req rawRequest
		if err := st.RecvMsg(&req); err != nil {
			return err
		}
		if err := st.SendMsg(&rawMessage{b: []byte{0x08, 0x01}}); err != nil { // seq 1
			return err
		}
		<-st.Context().Done()
		return nil
	}}}
	gs.RegisterService(&d, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(l)
	defer gs.Stop()
	warm := startChild(b, "grpc", l.Addr().String(), 1, 1)
	h0, s0, g0 := liveMemory()
	c := startChild(b, "grpc", l.Addr().String(), n, 10)
	h1, s1, g1 := liveMemory()
	reportPerRider(b, n, h0, s0, g0, h1, s1, g1)
	c.stop(b)
	warm.stop(b)
}

// reportPerRider reports the heap, stack and goroutines that n riders added between two
// liveMemory samples.
func reportPerRider(b *testing.B, n int, h0, s0 uint64, g0 int, h1, s1 uint64, g1 int) {
	perHeap := float64(int64(h1)-int64(h0)) / float64(n)
	perStack := float64(int64(s1)-int64(s0)) / float64(n)
	b.ReportMetric(perHeap, "heap-B/rider")
	b.ReportMetric(perStack, "stack-B/rider")
	b.ReportMetric(perHeap+perStack, "B/rider")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/rider")
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDeliveredEvents measures delivered events per second per edge CPU core: 1,000 riders
// (child process; gRPC on 10 connections) watch the same 1 km circle while 50 vehicles in it
// move as fast as the bus takes fixes, for 5 s. Events are counted by the clients; the edge's
// CPU is this process's user+system time over the same window (it includes applying the fixes
// to the in-memory bus, the bridge's share). Run with -benchtime 1x.
func BenchmarkDeliveredEvents(b *testing.B) {
	const riders, vehicles = 1000, 50
	window := 5 * time.Second
	for _, tr := range loadTransports {
		b.Run(tr, func(b *testing.B) {
			bs := bus.NewMemory(bus.Options{TTL: time.Hour})
			defer bs.Close()
			ts := startServer(b, bs, nil, Options{Session: session.Options{QueueLimit: 1024}})
			c := startChild(b, tr, ts.addr, riders, 10)
			sc := &scenario{t: b, b: bs, clk: new(clock), last: map[string]int64{}}
			cpu0, t0 := cpuTime(), time.Now()
			fixes := 0
			for r := 0; time.Since(t0) < window; r++ {
				for i := range vehicles {
					d := float64((i*7+r)%40) * 0.00004
					sc.fix(fmt.Sprintf("f/v%d", i), pt{35.6800 + d, 139.7660 + float64(i%10)*0.0002}, 0)
					fixes++
				}
				// Pace the feed so the riders keep up: a few thousand fixes per second.
				time.Sleep(10 * time.Millisecond)
			}
			cpu, wall := cpuTime()-cpu0, time.Since(t0)
			events := c.stop(b)
			b.ReportMetric(float64(events)/cpu.Seconds(), "events/cpu-s")
			b.ReportMetric(float64(events)/wall.Seconds(), "events/s")
			b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
			b.ReportMetric(float64(fixes)/wall.Seconds(), "fixes/s")
		})
	}
}

// frameBuf keeps a rider's frame slice between batches when it is small (a heartbeat, an
// update); a larger one is dropped so that an idle rider does not hold it.
func frameBuf(frames []session.Frame) []session.Frame {
	clear(frames) // drop references to the encoded bytes
	if cap(frames) > 2 {
		return nil
	}
	return frames[:0]
}
