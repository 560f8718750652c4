package topology

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/testwait"
)

// repoRoot is the main module's root, relative to this package.
const repoRoot = "../.."

// buildMeshcast builds the meshcast binary into dir, or returns $MESHCAST_TOPOLOGY_BIN when set
// (a binary built elsewhere, e.g. from another checkout).
func buildMeshcast(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("MESHCAST_TOPOLOGY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "meshcast")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build meshcast: %v\n%s", err, out)
	}
	return bin
}

// edgeAuthArgs returns ["-insecure-no-auth"] when this build of the edge has that flag (it refuses
// to start without auth otherwise), else nothing.
func edgeAuthArgs(t *testing.T, bin string) []string {
	t.Helper()
	out, _ := exec.Command(bin, "edge", "-help").CombinedOutput()
	if strings.Contains(string(out), "-insecure-no-auth") {
		return []string{"-insecure-no-auth"}
	}
	return nil
}

// proc is one meshcast process started by the test.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	logf   string
	admin  string // http://host:port
	listen string // edge only: host:port of the rider listener
}

// startProc starts `meshcast args...`, waits until it has printed its admin address (and, for an
// edge, its listen address), and kills it when the test ends. stderr goes to a log file whose tail
// is printed if the test fails.
func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	logf := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), logf: logf}
	wantListen := args[0] == "edge"
	addrs := make(chan [2]string, 1)
	go func() {
		var admin, listen string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "admin listening on "); ok {
				admin = a
			}
			if a, ok := strings.CutPrefix(line, "edge listening on "); ok {
				listen = a
			}
			if admin != "" && (listen != "" || !wantListen) {
				addrs <- [2]string{admin, listen}
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); lf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log tail:\n%s", name, tail(logf, 30))
		}
	})
	select {
	case a := <-addrs:
		p.admin, p.listen = a[0], a[1]
	case <-p.done:
		t.Fatalf("%s exited before listening:\n%s", name, tail(logf, 30))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its addresses within 30s:\n%s", name, tail(logf, 30))
	}
	return p
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the process (SIGSTOP / SIGCONT pause and resume it).
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// ready reports whether /readyz answers 200.
func (p *proc) ready() bool {
	resp, err := http.Get(p.admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, p.name+" /readyz 200", p.ready)
}

// metric sums every sample of the named counter or gauge on /metrics (0 when absent).
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// waitUntil polls cond until it holds or the timeout passes (then the test fails).
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return testwait.For(t, timeout, what, cond)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// publisher publishes QoS 1 fixes over its own MQTT connection, waiting for each PUBACK.
type publisher struct{ c *paho.Client }

func newPublisher(t *testing.T, addr, id string) *publisher {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("publisher dial %s: %v", addr, err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("publisher connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("publisher connect: reason %d", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &publisher{c: c}
}

// fix publishes one vacant fix of taxi/topo/<vehicle>/state at (lat, lon) with time ts (Unix ms).
func (p *publisher) fix(t *testing.T, vehicle string, lat, lon float64, ts int64) {
	t.Helper()
	payload := fmt.Appendf(nil, `{"lat":%v,"lon":%v,"ts":%d,"status":"vacant","heading":90,"speed":20}`, lat, lon, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.c.Publish(ctx, &paho.Publish{Topic: "taxi/" + fleet + "/" + vehicle + "/state", QoS: 1, Payload: payload}); err != nil {
		t.Fatalf("publish %s: %v", vehicle, err)
	}
}

// metricsDump returns the lines of /metrics that start with prefix (for failure messages).
func (p *proc) metricsDump(prefix string) string {
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}
