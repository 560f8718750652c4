package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshcast/meshcast/core/testport"
)

// controlTimeout bounds every control command the harness sends.
const controlTimeout = 5 * time.Second

// pollInterval is how often the harness re-checks a condition it waits for.
const pollInterval = 25 * time.Millisecond

// Node is one redis-server process started by the harness.
type Node struct {
	Port int    // TCP port on 127.0.0.1; the cluster bus uses Port+10000
	Addr string // "127.0.0.1:Port"
	ID   string // cluster node id ("" for a single server)

	bin  string
	args []string
	dir  string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

// Do sends one command to this node (see the package-level [Do]).
func (n *Node) Do(args ...string) (any, error) {
	v, err := Do(n.Addr, controlTimeout, args...)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", n.Addr, strings.Join(args, " "), err)
	}
	return v, nil
}

// Alive reports whether the node's process is running.
func (n *Node) Alive() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// LogTail returns the last lines of the node's log file.
func (n *Node) LogTail(lines int) string {
	b, err := os.ReadFile(n.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// start launches the process. The child gets SIGKILL when the thread that started it dies
// (Pdeathsig), so a crashed or timed-out test binary does not leave servers behind.
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done != nil {
		select {
		case <-n.done:
		default:
			return fmt.Errorf("node %s already running", n.Addr)
		}
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Dir = n.dir
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s on port %d: %w", n.bin, n.Port, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go n.wait(cmd, out, done)
	return nil
}

// wait reaps the process; it is the only goroutine a running node owns.
func (n *Node) wait(cmd *exec.Cmd, out *os.File, done chan struct{}) {
	_ = cmd.Wait()
	out.Close()
	close(done)
}

// Kill sends SIGKILL to the node's process and waits until it has exited.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// waitPing waits until the node answers PING, its process exits, or the deadline passes.
func (n *Node) waitPing(deadline time.Time) error {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	var last error
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited during start-up:\n%s", n.Port, n.LogTail(20))
		default:
		}
		v, err := Do(n.Addr, time.Second, "PING")
		if err == nil && v == "PONG" {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d does not answer PING: %v", n.Port, last)
		}
		time.Sleep(pollInterval)
	}
}

// freePort returns a loopback port in 15000-29999 whose cluster bus port (port+10000) is free too.
func freePort() (int, error) { return testport.Free(15000, 30000, 10000) }

// newNode prepares (but does not start) a server on a free port in its own directory under dir.
func newNode(bin, dir string, extra func(port int) []string) (*Node, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	nd := filepath.Join(dir, "node-"+strconv.Itoa(port))
	if err := os.MkdirAll(nd, 0o755); err != nil {
		return nil, err
	}
	n := &Node{
		Port: port,
		Addr: "127.0.0.1:" + strconv.Itoa(port),
		bin:  bin,
		dir:  nd,
		log:  filepath.Join(nd, "redis.log"),
	}
	n.args = append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", nd,
		"--logfile", n.log,
		"--save", "",
		"--appendonly", "no",
		"--enable-debug-command", "local",
	}, extra(port)...)
	return n, nil
}
