package topology

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterScript runs deploy/local/cluster.sh (task cluster:up / cluster:down): up starts the
// twelve processes with PID files, prints the endpoints, and telemetry from the simulator flows
// through the bridges; down stops every process and removes the state directory.
func TestClusterScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 12 processes; not in -short")
	}
	bin := buildMeshcast(t, t.TempDir())
	state := filepath.Join(t.TempDir(), "cluster")
	env := append(os.Environ(),
		"MESHCAST_BIN="+bin,
		"MESHCAST_CLUSTER_DIR="+state,
		// Away from the default so a developer's running topology is not in the way.
		"MESHCAST_CLUSTER_PORT="+strconv.Itoa(20000+rand.IntN(2500)), // with the +10000 cluster bus ports, below the kernel's ephemeral range (32768+)
		"MESHCAST_SIM_TAXIS=50",
		"MESHCAST_SIM_DURATION=60s",
	)
	script := func(arg string) (string, error) {
		cmd := exec.Command("bash", filepath.Join(repoRoot, "deploy/local/cluster.sh"), arg)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	t0 := time.Now()
	out, err := script("up")
	t.Cleanup(func() {
		if _, err := os.Stat(state); err == nil {
			_, _ = script("down")
		}
	})
	if err != nil {
		t.Fatalf("cluster.sh up: %v\n%s", err, out)
	}
	t.Logf("up in %v:\n%s", time.Since(t0).Round(time.Millisecond), out)

	pids := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(state, "pids", "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	if len(pids) != 12 {
		t.Errorf("%d PID files, want 12 (6 redis, mosquitto, 2 bridges, 2 edges, sim): %v", len(pids), pids)
	}
	for name, pid := range pids {
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("%s (pid %d) is not running", name, pid)
		}
	}

	// Telemetry flows: both bridges apply the simulator's fixes (one shared subscription).
	admins := regexp.MustCompile(`bridge [ab] admin  (http://[0-9.:]+)/metrics`).FindAllStringSubmatch(out, -1)
	if len(admins) != 2 {
		t.Fatalf("bridge admin endpoints not printed:\n%s", out)
	}
	for _, m := range admins {
		p := &proc{name: "bridge " + m[1], admin: m[1]}
		waitUntil(t, 30*time.Second, p.name+" applying fixes", func() bool {
			return p.metric(t, "meshcast_bridge_messages_applied_total") > 0
		})
	}

	t0 = time.Now()
	if out, err := script("down"); err != nil {
		t.Fatalf("cluster.sh down: %v\n%s", err, out)
	}
	t.Logf("down in %v", time.Since(t0).Round(time.Millisecond))
	for name, pid := range pids {
		// Exited (and reaped by init, or a zombie until then): signal 0 fails or /proc says Z.
		if syscall.Kill(pid, 0) == nil && !zombie(pid) {
			t.Errorf("%s (pid %d) still running after down", name, pid)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (%v)", state, err)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
