package bench

// The deployment the end-to-end benchmark and the reliability suite run against: a real
// mosquitto (core/mosquittotest), a real 3-master Redis Cluster (core/bus/redistest), and
// `meshcast bridge` and `meshcast edge` as their own processes, built from this module.

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mosquittotest"
	"github.com/meshcast/meshcast/core/testwait"
)

// waitLimit bounds every wait for a condition (not a speed assertion).
const waitLimit = 60 * time.Second

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testwait.For(tb, waitLimit, what, cond)
}

var (
	buildMu  sync.Mutex
	builtBin string
	buildErr error
)

// moduleRoot is the directory of go.mod (the processes run there, for deploy/zones).
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// meshcastBinary builds the meshcast binary once per test process.
func meshcastBinary(tb testing.TB) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtBin == "" && buildErr == nil {
		dir, err := os.MkdirTemp("", "meshcast-bench-bin")
		if err != nil {
			tb.Fatal(err)
		}
		bin := filepath.Join(dir, "meshcast")
		cmd := exec.Command("go", "build", "-o", bin, ".")
		cmd.Dir = moduleRoot(tb)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		} else {
			builtBin = bin
		}
	}
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return builtBin
}

func tokyo(tb testing.TB) *geofence.Set {
	tb.Helper()
	z, err := geofence.LoadFile(filepath.Join(moduleRoot(tb), "deploy/zones/tokyo.geojson"))
	if err != nil {
		tb.Fatal(err)
	}
	return z
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is one meshcast process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	admin string
	done  chan struct{}
	mu    sync.Mutex
	log   bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log.Len() < 1<<20 {
		p.log.Write(b)
	}
	return len(b), nil
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig and waits for the process to exit.
func (p *proc) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		tb.Fatalf("%s did not exit within %v of %v", p.name, waitLimit, sig)
	}
}

func startProc(tb testing.TB, bin, name string, args ...string) *proc {
	tb.Helper()
	admin := freeAddr(tb)
	p := &proc{name: name, admin: "http://" + admin, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{name, "-admin", admin, "-log-level", "warn"}, args...)...)
	p.cmd.Dir = moduleRoot(tb)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		if p.alive() {
			p.signal(tb, syscall.SIGKILL)
		}
		if tb.Failed() {
			tb.Logf("%s log:\n%s", name, p.logs())
		}
	})
	waitFor(tb, name+" to be ready", func() bool {
		if !p.alive() {
			tb.Fatalf("%s exited during start-up:\n%s", name, p.logs())
		}
		return httpStatus(p.admin+"/readyz") == http.StatusOK
	})
	return p
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// deployment is mosquitto + Redis Cluster + one bridge + one edge.
type deployment struct {
	bin      string
	broker   *mosquittotest.Broker
	cluster  *redistest.Cluster
	bridge   *proc
	edge     *proc
	mu       sync.Mutex
	edgeAddr string // the address of the edge riders connect to now (see addr)
	edgeArgs []string
	brArgs   []string
}

// deployOptions adjusts the processes.
type deployOptions struct {
	replicas   int      // Redis replicas per master
	persist    bool     // mosquitto keeps sessions and queued messages across a restart
	edgeArgs   []string // extra flags of the edge
	bridgeArgs []string // extra flags of the bridge
}

func startDeployment(tb testing.TB, o deployOptions) *deployment {
	tb.Helper()
	d := &deployment{bin: meshcastBinary(tb)}
	d.broker = mosquittotest.Start(tb, mosquittotest.Options{Persistence: o.persist})
	d.cluster = redistest.StartCluster(tb, 3, o.replicas)
	prefix := fmt.Sprintf("b%d", time.Now().UnixNano()%1e9)
	d.brArgs = append([]string{"-broker", d.broker.URL(), "-bus", d.cluster.URL(), "-bus-prefix", prefix,
		"-client-id", "bench-" + prefix}, o.bridgeArgs...)
	d.bridge = startProc(tb, d.bin, "bridge", d.brArgs...)
	d.edgeAddr = freeAddr(tb)
	d.edgeArgs = append([]string{"-listen", d.edgeAddr, "-bus", d.cluster.URL(), "-bus-prefix", prefix}, o.edgeArgs...)
	if edgeNeedsInsecure(d.bin) {
		d.edgeArgs = append(d.edgeArgs, "-insecure-no-auth")
	}
	d.edge = startProc(tb, d.bin, "edge", d.edgeArgs...)
	return d
}

// edgeNeedsInsecure reports whether this edge has auth (issue 6) and so needs
// -insecure-no-auth to start without it.
func edgeNeedsInsecure(bin string) bool {
	out, _ := exec.Command(bin, "edge", "-help").CombinedOutput()
	return bytes.Contains(out, []byte("insecure-no-auth"))
}

// restartBridge starts a new bridge with the same flags.
func (d *deployment) restartBridge(tb testing.TB) {
	tb.Helper()
	d.bridge = startProc(tb, d.bin, "bridge", d.brArgs...)
}

// addr is the current edge's rider address.
func (d *deployment) addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.edgeAddr
}

// restartEdgeOn starts another edge on listen, which becomes the current one.
func (d *deployment) restartEdgeOn(tb testing.TB, listen string) {
	tb.Helper()
	args := append([]string{}, d.edgeArgs...)
	for i := range args {
		if args[i] == "-listen" {
			args[i+1] = listen
		}
	}
	p := startProc(tb, d.bin, "edge", args...)
	d.mu.Lock()
	d.edge, d.edgeAddr = p, listen
	d.mu.Unlock()
}

// sources are the processes the bench samples.
func (d *deployment) sources() []Source {
	return []Source{{Name: "edge", PID: d.edge.pid()}, {Name: "bridge", PID: d.bridge.pid()}, {Name: "mosquitto", PID: d.broker.PID()}}
}
