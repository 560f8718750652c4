package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// WriteFloorConfig is one run of WriteFloor: what the edge's direct writes cost with nothing
// around them.
type WriteFloorConfig struct {
	Conns    int           // loopback TCP connections written to (default 5000)
	Rates    []int         // writes per second of each step (default 24,000)
	Size     int           // bytes per write (default 160: a WebSocket JSON event and its frame)
	Duration time.Duration // measurement window of each step (default 10s)
	Warmup   time.Duration // writes at the step's rate before its window (default 2s)
	// WriterCPU is the CPU the writing thread is pinned to, LoadCPU the one of everything else
	// (the readers); negative: not pinned.
	WriterCPU, LoadCPU int
	Seed               uint64
	Log                io.Writer // progress (nil: none)
}

// WriteFloorStep is what one step measured.
type WriteFloorStep struct {
	Rate        int     `json:"rate"`         // writes/s asked for
	Writes      int64   `json:"writes"`       // non-blocking writes made in the window
	Short       int64   `json:"short"`        // of those, taken only in part or not at all (socket full)
	WritesPerS  float64 `json:"writes_per_s"` // made
	CPUSeconds  float64 `json:"cpu_seconds"`  // the writing thread's user + system time in the window
	CPUPerWrite float64 `json:"us_per_write"` // µs of the writing thread's CPU per write
	Cores       float64 `json:"cores"`        // the writing thread's share of one CPU
}

// WriteFloor measures the cost of the edge's direct writes alone, on this machine: Conns
// loopback TCP connections, each read by a goroutine of this process (pinned to LoadCPU), and
// one thread pinned to WriterCPU that makes, at each rate, non-blocking write system calls of
// Size bytes to connections picked at random (as the edge's flusher writes riders' batches),
// paced every millisecond. The CPU is that thread's own (getrusage RUSAGE_THREAD), which on
// loopback includes the receiver's TCP processing that the write runs, as the edge's does. It
// is the floor under the edge's CPU per write: the fan-out harness's edge µs per event times its
// events per write can come down to it, not below.
func WriteFloor(ctx context.Context, cfg WriteFloorConfig) ([]WriteFloorStep, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 5000
	}
	if len(cfg.Rates) == 0 {
		cfg.Rates = []int{24000}
	}
	if cfg.Size == 0 {
		cfg.Size = 160
	}
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 2 * time.Second
	}
	if cfg.Conns < 1 || cfg.Size < 1 || cfg.Duration < 0 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("writefloor: want conns ≥ 1 (%d), size ≥ 1 (%d), a positive duration and warmup", cfg.Conns, cfg.Size)
	}
	for _, r := range cfg.Rates {
		if r < 1 || r > 10_000_000 {
			return nil, fmt.Errorf("writefloor: rate %d: want 1..10000000 writes/s", r)
		}
	}
	logf := func(format string, a ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "writefloor: "+format+"\n", a...)
		}
	}
	if cfg.LoadCPU >= 0 {
		if err := pinSelf(cfg.LoadCPU); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	var readers sync.WaitGroup
	defer readers.Wait()
	conns := make([]*net.TCPConn, 0, cfg.Conns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range cfg.Conns {
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, fmt.Errorf("writefloor: dial connection %d: %w", len(conns)+1, err)
		}
		readers.Go(func() {
			defer d.Close()
			b := make([]byte, 4096)
			for {
				if _, err := d.Read(b); err != nil {
					return
				}
			}
		})
		c, err := ln.Accept()
		if err != nil {
			d.Close()
			return nil, err
		}
		conns = append(conns, c.(*net.TCPConn))
	}
	logf("%d connections open", len(conns))
	ws := make([]floorWriter, len(conns))
	for i, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			return nil, err
		}
		ws[i].rc = rc
		w := &ws[i]
		w.fn = func(fd uintptr) bool {
			w.n, w.err = syscall.Write(int(fd), w.p)
			return true
		}
	}
	type result struct {
		steps []WriteFloorStep
		err   error
	}
	done := make(chan result, 1)
	go func() { // the writing thread
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if cfg.WriterCPU >= 0 {
			if err := pinThread(cfg.WriterCPU); err != nil {
				done <- result{err: err}
				return
			}
		}
		var steps []WriteFloorStep
		for _, rate := range cfg.Rates {
			st, err := floorStep(ctx, ws, rate, cfg)
			if err != nil {
				done <- result{steps, err}
				return
			}
			logf("%d writes/s: %d writes (%d short), %.2f µs of the writer's CPU per write, %.2f cores",
				rate, st.Writes, st.Short, st.CPUPerWrite, st.Cores)
			steps = append(steps, st)
		}
		done <- result{steps, nil}
	}()
	r := <-done
	return r.steps, r.err
}

type floorWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	p   []byte
	n   int
	err error
}

// floorStep writes at rate for cfg.Warmup, then measures cfg.Duration (on the writing thread).
func floorStep(ctx context.Context, ws []floorWriter, rate int, cfg WriteFloorConfig) (WriteFloorStep, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(rate)))
	msg := make([]byte, cfg.Size)
	st := WriteFloorStep{Rate: rate}
	const tick = time.Millisecond
	start := time.Now()
	measureAt := start.Add(cfg.Warmup)
	end := measureAt.Add(cfg.Duration)
	var cpu0 float64
	measuring := false
	sent := 0 // writes of this step so far
	for {
		now := time.Now()
		if !measuring && !now.Before(measureAt) {
			measuring, cpu0, st.Writes, st.Short = true, threadCPU(), 0, 0
		}
		if !now.Before(end) {
			break
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		due := int(float64(rate) * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			w := &ws[rng.IntN(len(ws))]
			w.p = msg
			if err := w.rc.Write(w.fn); err != nil {
				return st, fmt.Errorf("writefloor: %w", err)
			}
			w.p = nil
			switch {
			case w.err == syscall.EAGAIN:
				st.Short++
			case w.err != nil:
				return st, fmt.Errorf("writefloor: write: %w", w.err)
			case w.n < len(msg):
				st.Short++ // the rest is dropped: the readers only count bytes
			}
			st.Writes++
		}
		time.Sleep(tick - time.Since(now)%tick)
	}
	st.CPUSeconds = threadCPU() - cpu0
	st.WritesPerS = float64(st.Writes) / cfg.Duration.Seconds()
	st.Cores = st.CPUSeconds / cfg.Duration.Seconds()
	if st.Writes == 0 {
		return st, errors.New("writefloor: no write in the window")
	}
	st.CPUPerWrite = st.CPUSeconds / float64(st.Writes) * 1e6
	return st, nil
}

// threadCPU is the calling thread's user + system time in seconds.
func threadCPU() float64 {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// pinThread pins the calling thread to cpu.
func pinThread(cpu int) error { return setAffinity(0, cpu) }
