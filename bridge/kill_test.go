package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/mosquittotest"
)

// buildMeshcast builds the meshcast binary into a temporary directory (once per test binary).
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "meshcast-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "meshcast")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func meshcastBinary(t testing.TB) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// bridgeProc is `meshcast bridge` running as a separate process.
type bridgeProc struct {
	cmd   *exec.Cmd
	admin string // http://host:port
	done  chan struct{}
	log   *strings.Builder
	mu    *sync.Mutex
}

func startBridgeProc(t testing.TB, bin string, args ...string) *bridgeProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"bridge", "-admin", "127.0.0.1:0"}, args...)...)
	cmd.Dir = ".."
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &bridgeProc{cmd: cmd, done: make(chan struct{}), log: &strings.Builder{}, mu: &sync.Mutex{}}
	cmd.Stderr = lockedWriter{p.mu, p.log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "admin listening on "); ok {
				addr <- a
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("bridge process log:\n%s", p.logs())
		}
	})
	select {
	case p.admin = <-addr:
	case <-p.done:
		t.Fatalf("bridge exited during start-up:\n%s", p.logs())
	case <-time.After(waitTimeout):
		t.Fatalf("bridge did not report its admin address:\n%s", p.logs())
	}
	waitFor(t, "the bridge process to be ready", func() bool { return httpStatus(p.admin+"/readyz") == 200 })
	return p
}

func (p *bridgeProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM (a clean shutdown: drain, disconnect keeping the session) and waits for
// the process to exit with status 0.
func (p *bridgeProc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		t.Fatalf("bridge did not exit within %v of SIGTERM", waitTimeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("bridge exited with %d after SIGTERM:\n%s", code, p.logs())
	}
}

func (p *bridgeProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
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

// restartCase is the setup of the tests that stop a bridge mid-stream and start another with
// the same client id: a bridge process on its own broker and a fresh bus prefix, and a recorder
// of the events it publishes on the Tokyo Station and Shinjuku meshes.
type restartCase struct {
	bin    string
	broker *mosquittotest.Broker
	args   []string // the bridge's, for its successor
	first  *bridgeProc
	rec    *recorder
	bus    bus.Bus
}

func startRestartCase(t *testing.T, clientID string, workers int) *restartCase {
	rc := &restartCase{bin: meshcastBinary(t), broker: mosquittotest.Start(t), rec: &recorder{}}
	prefix := uniquePrefix()
	rc.args = []string{"-broker", rc.broker.URL(), "-bus", cluster.URL(), "-bus-prefix", prefix,
		"-client-id", clientID, "-zones", "deploy/zones/tokyo.geojson", "-ttl", "1h", "-log-level", "warn",
		"-workers", strconv.Itoa(workers), "-queue", "32"}
	rc.first = startBridgeProc(t, rc.bin, rc.args...)
	tb, err := bus.Open(context.Background(), cluster.URL(), bus.Options{KeyPrefix: prefix, TTL: time.Hour, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	rc.bus = tb
	subscribe(t, tb, rc.rec, meshStation, meshShinjuk)
	return rc
}

// TestKillNineLosesNothing kills `meshcast bridge` with SIGKILL in the middle of a stream and
// starts it again with the same client id: every fix sent ends up applied (its upsert was
// published, by the first or the second process), thanks to manual acknowledgement and the
// broker's redelivery of the persistent session.
func TestKillNineLosesNothing(t *testing.T) {
	rc := startRestartCase(t, "bridge-kill9", 16)
	bin, broker, args, first, rec, tb := rc.bin, rc.broker, rc.args, rc.first, rc.rec, rc.bus

	// Every vehicle alternates between two meshes, always vacant: every fix makes an upsert.
	places := [2][2]float64{tokyoStation, shinjuku}

	const vehicles, fixes = 50, 80
	total := vehicles * fixes
	base := time.Now().UnixMilli() - 30*60*1000 // half an hour ago: fresh for the 1h TTL
	type sentFix struct {
		id string
		ts int64
	}
	var msgs []sentFix
	pub := newPublisher(t, broker.Addr, "terminals-kill9")
	published := make(chan int, total)
	go func() {
		for i := range fixes {
			for v := range vehicles {
				ts := base + int64(i*vehicles+v)
				p := places[(i+v)%2]
				if err := pub.try(fmt.Sprintf("taxi/acme/k%d/state", v), "", fixJSON(p[0], p[1], ts, "vacant")); err != nil {
					t.Errorf("publish: %v", err)
					close(published)
					return
				}
				published <- 1
			}
		}
		close(published)
	}()
	for i := range fixes {
		for v := range vehicles {
			msgs = append(msgs, sentFix{fmt.Sprintf("acme/k%d", v), base + int64(i*vehicles+v)})
		}
	}
	upserts := func() map[sentFix]int {
		seen := map[sentFix]int{}
		for _, ev := range rec.allEvents() {
			if u := ev.GetUpsert(); u != nil {
				seen[sentFix{u.GetId(), ev.GetObservedAtMs()}]++
			}
		}
		return seen
	}
	waitFor(t, "a fifth of the fixes to be applied", func() bool { return len(upserts()) >= total/5 })
	first.kill()
	killedAt := len(upserts())
	sentAtKill := len(published)
	t.Logf("killed the bridge after %d fixes were applied", killedAt)

	second := startBridgeProc(t, bin, args...)
	for range published { // the publisher finishes (the broker queues for the dead session)
	}
	waitFor(t, "every fix to be applied", func() bool { return len(upserts()) >= total })
	seen := upserts()
	var missing []sentFix
	for _, m := range msgs {
		if seen[m] == 0 {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d fixes never applied, e.g. %v", len(missing), total, missing[:min(5, len(missing))])
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("killed after %d of %d fixes applied (%d not yet published); all applied after the restart, %d upserts repeated",
		killedAt, total, total-sentAtKill, dups)

	// The final state: each vehicle in the mesh of its last fix, with that fix.
	got := 0
	for _, code := range []string{meshStation, meshShinjuk} {
		m, _ := mesh.Parse(code)
		snap, err := tb.Snapshot(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range snap {
			var n int
			fmt.Sscanf(v.GetId(), "acme/k%d", &n)
			wantTS := base + int64((fixes-1)*vehicles+n)
			wantMesh := []string{meshStation, meshShinjuk}[(fixes-1+n)%2]
			if v.GetObservedAtMs() != wantTS || code != wantMesh {
				t.Errorf("%s in %s @%d, want in %s @%d", v.GetId(), code, v.GetObservedAtMs(), wantMesh, wantTS)
			}
			got++
		}
	}
	if got != vehicles {
		t.Errorf("%d vehicles in the snapshots, want %d", got, vehicles)
	}
	if t.Failed() {
		t.Logf("second bridge log:\n%s", second.logs())
	}
}
