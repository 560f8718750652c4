package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/mosquittotest"
	"github.com/meshcast/meshcast/core/testwait"
)

// secretPW is the Redis password of TestNoPasswordInLogs: it must appear in no output.
const secretPW = "s3cr3tPW"

// proc is a started meshcast process with its output captured.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan error
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// output is everything the process printed so far.
func (p *proc) output() string { return p.stdout.String() + p.stderr.String() }

// waitOutput waits until the output matches re and returns the first submatch (or the match).
func (p *proc) waitOutput(t *testing.T, re *regexp.Regexp, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if m := re.FindStringSubmatch(p.output()); m != nil {
			return m[len(m)-1]
		}
		select {
		case err := <-p.exited:
			t.Fatalf("process exited (%v) before printing %v; output:\n%s", err, re, p.output())
		case <-time.After(10 * time.Millisecond): // polling interval, bounded by the deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v within %v; output:\n%s", re, limit, p.output())
		}
	}
}

// stop sends SIGTERM and waits for the exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit 60s after SIGTERM; output:\n%s", p.output())
	}
}

// exitOutput waits for a process expected to fail on its own and returns its output.
func (p *proc) exitOutput(t *testing.T) string {
	t.Helper()
	select {
	case err := <-p.exited:
		if err == nil {
			t.Fatalf("exited 0; output:\n%s", p.output())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("still running after 60s; output:\n%s", p.output())
	}
	return p.output()
}

// TestNoPasswordInLogs runs the built edge and bridge with the Redis password in the bus URL
// (as the prod overlay does) against a real redis-server that requires it and a real mosquitto,
// at the debug level, through start-up, serving, the bus going away under them (bus errors in
// both) and the stop, plus start-ups that fail on the bus (wrong password, bus gone) or on a
// broker URL with a password. The password appears in no line either process prints; the
// redacted address does.
func TestNoPasswordInLogs(t *testing.T) {
	bin := buildMeshcast(t)
	r := redistest.StartSingle(t)
	if _, err := r.Do("CONFIG", "SET", "requirepass", secretPW); err != nil {
		t.Fatal(err)
	}
	mq := mosquittotest.Start(t)
	busURL := "redis://:" + secretPW + "@" + r.Addr
	const redacted = "redis://:xxxxx@"
	var outputs []string
	defer func() {
		for i, out := range outputs {
			if strings.Contains(out, secretPW) {
				t.Errorf("output %d carries the password:\n%s", i, out)
			}
		}
	}()

	// 1. Wrong password: the edge refuses to start, naming the bus without any password.
	wrong := startProc(t, bin, "edge", "-insecure-no-auth", "-bus", "redis://:wr0ngPW@"+r.Addr,
		"-listen", "127.0.0.1:0", "-admin", "", "-log-level", "debug", "-log-format", "json")
	out := wrong.exitOutput(t)
	outputs = append(outputs, out)
	if strings.Contains(out, "wr0ngPW") || !strings.Contains(out, "redis://:xxxxx@"+r.Addr) {
		t.Errorf("edge with a wrong password: want the redacted bus address and no password:\n%s", out)
	}

	// 2. Edge and bridge serving, a rider watching, the simulator publishing.
	edge := startProc(t, bin, "edge", "-insecure-no-auth", "-bus", busURL, "-listen", "127.0.0.1:0",
		"-admin", "127.0.0.1:0", "-drain-window", "100ms", "-log-level", "debug", "-log-format", "json")
	edgeAddr := edge.waitOutput(t, regexp.MustCompile(`edge listening on (\S+)`), 30*time.Second)
	edgeAdmin := edge.waitOutput(t, regexp.MustCompile(`admin listening on (http://\S+)`), 30*time.Second)
	edge.waitOutput(t, regexp.MustCompile(`"msg":"edge serving".*"bus":"`+regexp.QuoteMeta(redacted+r.Addr)+`"`), 10*time.Second)
	bridge := startProc(t, bin, "bridge", "-bus", busURL, "-broker", mq.URL(), "-client-id", "secrets-test",
		"-admin", "127.0.0.1:0", "-zones", "deploy/zones/tokyo.geojson", "-log-level", "debug", "-log-format", "json")
	bridgeAdmin := bridge.waitOutput(t, regexp.MustCompile(`admin listening on (http://\S+)`), 30*time.Second)
	waitStatus(t, bridgeAdmin+"/readyz", 200)
	waitStatus(t, edgeAdmin+"/readyz", 200)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+edgeAddr+"/v1/ws?lat=35.681236&lon=139.767125&radius_m=500", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // the snapshot
		t.Fatal(err)
	}
	sim := startProc(t, bin, "sim", "-broker", mq.URL(), "-taxis", "50", "-interval", "200ms", "-duration", "2m",
		"-zones", "deploy/zones/tokyo.geojson", "-client-id", "secrets-sim")
	waitMetric(t, bridgeAdmin, "meshcast_bridge_messages_applied_total{result=\"applied\"}")

	// 3. The bus goes away under both: bus errors in both processes' logs.
	r.Kill()
	outputs = append(outputs, waitStatus(t, edgeAdmin+"/readyz", 503), waitStatus(t, bridgeAdmin+"/readyz", 503))
	// The bridge's fixes fail at its apply timeout: counted and logged (they used to sit in
	// Apply for ever, unseen), and retried.
	waitMetric(t, bridgeAdmin, "meshcast_bridge_bus_errors_total")
	bridge.waitOutput(t, regexp.MustCompile(`"msg":"bridge: bus apply failed, retrying"`), 30*time.Second)
	sim.stop(t)
	ws.CloseNow() // the hub unsubscribes the rider's meshes: bus errors
	edge.waitOutput(t, regexp.MustCompile(`"level":"DEBUG","msg":"bus: unsubscribe failed`), 30*time.Second)
	edge.stop(t)
	bridge.stop(t)
	outputs = append(outputs, edge.output(), bridge.output())

	// 4. The bridge cannot reach the bus at start: the error names it without the password.
	gone := startProc(t, bin, "bridge", "-bus", busURL, "-broker", mq.URL(), "-client-id", "secrets-test-2",
		"-admin", "", "-zones", "deploy/zones/tokyo.geojson", "-log-level", "debug", "-log-format", "json")
	out = gone.exitOutput(t)
	outputs = append(outputs, out)
	if !strings.Contains(out, redacted+r.Addr) {
		t.Errorf("bridge without its bus: want the redacted bus address in the error:\n%s", out)
	}

	// 5. A broker URL with a password and a wrong scheme: the error hides the password too.
	badBroker := startProc(t, bin, "bridge", "-bus", "memory://", "-broker", "http://meshcast-bridge:brokerPW@127.0.0.1:1",
		"-admin", "", "-log-level", "debug", "-log-format", "json")
	out = badBroker.exitOutput(t)
	if strings.Contains(out, "brokerPW") || !strings.Contains(out, "http://meshcast-bridge:xxxxx@127.0.0.1:1") {
		t.Errorf("bridge with a bad broker URL: want it redacted in the error:\n%s", out)
	}
}

// waitStatus polls url until it answers code and returns the body.
func waitStatus(t *testing.T, url string, code int) string {
	t.Helper()
	var body string
	var last error
	if !testwait.Until(30*time.Second, func() bool {
		resp, err := http.Get(url)
		if last = err; err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return resp.StatusCode == code
	}) {
		t.Fatalf("%s: no %d within 30s (last %v)", url, code, last)
	}
	return body
}

// waitMetric polls the admin /metrics until the sample named (with its labels) is above 0.
func waitMetric(t *testing.T, admin, sample string) {
	t.Helper()
	if !testwait.Until(30*time.Second, func() bool {
		resp, err := http.Get(admin + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, sample+" "); ok && v != "0" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("%s/metrics: %s not above 0 within 30s", admin, sample)
	}
}
