// Package mosquittotest starts a real mosquitto broker for tests: the Debian
// mosquitto 2.0 binary (/usr/sbin/mosquitto, or Options.Bin) on a free
// loopback port, with a generated configuration: one plain MQTT listener,
// anonymous access, no persistence unless asked for, and queue limits large
// enough that a test or benchmark never loses a QoS 1 message to them
// (max_queued_messages, max_queued_bytes; max_inflight_messages is
// configurable).
//
// The process dies with the test: Start stops it in tb.Cleanup, and it is
// started with Pdeathsig SIGKILL so that a crashed or timed-out test binary
// does not leave a broker behind. Start-up waits (polling with a deadline)
// until the broker accepts TCP connections. Kill, Stop and Restart let fault
// tests take the broker away and bring it back on the same port with the same
// configuration (and, with Options.Persistence, the same sessions and queued
// messages as of its last save).
//
// The broker's log (stderr; errors, warnings, notices and connections) is kept in its directory and
// printed (its tail) when the test fails.
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/testport"
)

// DefaultBin is where Debian installs mosquitto.
const DefaultBin = "/usr/sbin/mosquitto"

// Options configures StartWith. The zero value is a usable broker.
type Options struct {
	Bin string // default DefaultBin, falling back to "mosquitto" on PATH
	// Dir holds the configuration, the log and the persistence file. Default: a new temporary
	// directory that Stop removes.
	Dir string
	// Persistence keeps sessions, subscriptions and queued messages in Dir/mosquitto.db,
	// saved every PersistenceInterval and on a clean Stop (not on Kill), so a Restart finds
	// them. Default off.
	Persistence bool
	// PersistenceInterval is autosave_interval in seconds; default 1.
	PersistenceInterval int
	// MaxInflight is max_inflight_messages: QoS 1/2 messages in flight to one client (and,
	// for MQTT v5, the Receive Maximum the broker announces). 0 means the default, 1000;
	// a negative value means no limit.
	MaxInflight int
	// MaxQueued is max_queued_messages per client beyond the in-flight ones (offline clients
	// with a kept session included). Default 10,000,000.
	MaxQueued int
	// Extra lines appended to the generated configuration.
	Extra []string
	// StartTimeout bounds waiting for the broker to accept connections. Default 10s.
	StartTimeout time.Duration
}

// Broker is one mosquitto process.
type Broker struct {
	Port int    // TCP port on 127.0.0.1
	Addr string // "127.0.0.1:Port"

	o      Options
	dir    string
	ownDir bool
	conf   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
}

// URL returns "mqtt://127.0.0.1:Port", the form autopaho and the meshcast flags take.
func (b *Broker) URL() string { return "mqtt://" + b.Addr }

// Start starts a broker for a test or benchmark, fails tb if that does not work, and kills it
// in tb.Cleanup, after logging the tail of its log if the test failed.
func Start(tb testing.TB, o ...Options) *Broker {
	tb.Helper()
	var opt Options
	if len(o) > 0 {
		opt = o[0]
	}
	b, err := StartWith(opt)
	if err != nil {
		tb.Fatalf("mosquittotest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("mosquitto %s log tail:\n%s", b.Addr, b.LogTail(40))
		}
		b.Stop()
	})
	return b
}

// StartWith starts a broker and waits until it accepts connections. The caller must call Stop.
func StartWith(o Options) (*Broker, error) {
	if o.Bin == "" {
		o.Bin = DefaultBin
		if _, err := os.Stat(o.Bin); err != nil {
			o.Bin = "mosquitto"
		}
	}
	if o.MaxInflight > 65535 {
		return nil, fmt.Errorf("mosquittotest: MaxInflight %d above 65535", o.MaxInflight)
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 1000
	} else if o.MaxInflight < 0 {
		o.MaxInflight = 0 // mosquitto: 0 is unlimited
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = 10_000_000
	}
	if o.PersistenceInterval <= 0 {
		o.PersistenceInterval = 1
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	b := &Broker{o: o, dir: o.Dir}
	if b.dir == "" {
		d, err := os.MkdirTemp("", "mosquittotest-")
		if err != nil {
			return nil, fmt.Errorf("mosquitto dir: %w", err)
		}
		b.dir, b.ownDir = d, true
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, fmt.Errorf("mosquitto dir: %w", err)
	}
	var last error
	for range 5 { // another process may take the port between the check and the bind
		port, err := freePort()
		if err != nil {
			b.cleanup()
			return nil, err
		}
		b.Port, b.Addr = port, "127.0.0.1:"+strconv.Itoa(port)
		if err := b.writeConfig(); err != nil {
			b.cleanup()
			return nil, err
		}
		if last = b.start(); last == nil {
			return b, nil
		}
		b.Kill()
	}
	b.cleanup()
	return nil, last
}

func (b *Broker) cleanup() {
	if b.ownDir {
		os.RemoveAll(b.dir)
	}
}

// Dir returns the broker's directory (config, log, persistence file).
func (b *Broker) Dir() string { return b.dir }

func (b *Broker) writeConfig() error {
	lines := []string{
		"# generated by mosquittotest",
		"per_listener_settings false",
		"allow_anonymous true",
		"listener " + strconv.Itoa(b.Port) + " 127.0.0.1",
		"log_dest stderr",
		"log_type error", "log_type warning", "log_type notice", "log_type information",
		"connection_messages true",
		"log_timestamp_format %Y-%m-%dT%H:%M:%S",
		"set_tcp_nodelay true",
		"max_inflight_messages " + strconv.Itoa(b.o.MaxInflight),
		"max_queued_messages " + strconv.Itoa(b.o.MaxQueued),
		"max_queued_bytes 0",
		"persistent_client_expiration 1h",
	}
	if os.Geteuid() == 0 {
		// Started as root, mosquitto drops to user "mosquitto", which cannot write to the
		// harness's directory: stay root (the broker only listens on loopback).
		lines = append(lines, "user root")
	}
	if b.o.Persistence {
		lines = append(lines,
			"persistence true",
			"persistence_location "+b.dir+"/",
			"persistence_file mosquitto.db",
			"autosave_interval "+strconv.Itoa(b.o.PersistenceInterval),
		)
	} else {
		lines = append(lines, "persistence false")
	}
	lines = append(lines, b.o.Extra...)
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("mosquitto config: %w", err)
	}
	return nil
}

// start launches the process and waits until it accepts connections.
func (b *Broker) start() error {
	b.mu.Lock()
	if b.done != nil {
		select {
		case <-b.done:
		default:
			b.mu.Unlock()
			return fmt.Errorf("mosquitto on %s already running", b.Addr)
		}
	}
	log, err := os.OpenFile(filepath.Join(b.dir, "mosquitto.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("mosquitto log: %w", err)
	}
	cmd := exec.Command(b.o.Bin, "-c", b.conf)
	cmd.Dir = b.dir
	cmd.Stdout, cmd.Stderr = log, log
	// SIGKILL when the thread that started it dies, so a crashed test leaves no broker behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		b.mu.Unlock()
		return fmt.Errorf("start %s on port %d: %w", b.o.Bin, b.Port, err)
	}
	done := make(chan struct{})
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	go func() { // the reaper: the only goroutine a running broker owns
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	return b.waitAccept(time.Now().Add(b.o.StartTimeout), done)
}

func (b *Broker) waitAccept(deadline time.Time, done chan struct{}) error {
	for {
		select {
		case <-done:
			return fmt.Errorf("mosquitto on port %d exited during start-up:\n%s", b.Port, b.LogTail(20))
		default:
		}
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquitto on port %d does not accept connections: %v\n%s", b.Port, err, b.LogTail(20))
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// Alive reports whether the broker process is running.
func (b *Broker) Alive() bool {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
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

// PID returns the process id of the running broker (0 when it is not running), e.g. to read
// its CPU time from /proc in a benchmark.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	select {
	case <-b.done:
		return 0
	default:
	}
	return b.cmd.Process.Pid
}

// Kill sends SIGKILL to the broker and waits until it has exited. Unsaved state is lost.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL, 0) }

// Shutdown sends SIGTERM (mosquitto saves its persistence file and closes the connections)
// and waits until the broker has exited, killing it after 10 s.
func (b *Broker) Shutdown() { b.signal(syscall.SIGTERM, 10*time.Second) }

func (b *Broker) signal(sig syscall.Signal, grace time.Duration) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace <= 0 {
		<-done
		return
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Restart starts a stopped or killed broker again on the same port with the same
// configuration and waits until it accepts connections. A running broker is shut down first
// (SIGTERM).
func (b *Broker) Restart() error {
	if b.Alive() {
		b.Shutdown()
	}
	deadline := time.Now().Add(b.o.StartTimeout)
	for {
		err := b.start()
		if err == nil {
			return nil
		}
		// The port may linger for a moment after the old process died; retry until the deadline.
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the broker and removes its directory if the harness created it.
func (b *Broker) Stop() {
	b.Kill()
	b.cleanup()
}

// LogTail returns the last lines of the broker's log.
func (b *Broker) LogTail(lines int) string {
	data, err := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// freePort returns a loopback port in 10000-14999: below the Redis harness's range and the
// kernel's ephemeral range.
func freePort() (int, error) { return testport.Free(10000, 15000) }
