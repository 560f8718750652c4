package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/web/webtest"
)

// chromiumPath is Debian's chromium, installed by .ci/deps.
const chromiumPath = "/usr/bin/chromium"

// TestBrowserDemo is the end-to-end test of `meshcast demo` in a real browser: it runs the demo
// in-process (embedded broker, bridge, memory bus, edge, simulator, map page) and
// web/e2e/demo.spec.mjs against it in headless Debian Chromium (playwright-core). On each browser
// transport (WebSocket, SSE, gRPC-Web) the page connects and shows taxis that move; a taxi the
// test switches to occupied, over real MQTT to the demo's broker, disappears from the page within
// 2 s of publishing; moving the rider to Shinjuku replaces the set. The script writes a
// screenshot to $MESHCAST_SCREENSHOT_DIR (else a temporary directory), copied to /work/notes
// when that directory exists.
func TestBrowserDemo(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Debian chromium at %s: run `bash .ci/deps` as root (or go tool task deps): %v", chromiumPath, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("the browser test needs node (>= 20) and npm: %v", err)
	}
	if err := webtest.EnsureNodeModules(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	shotDir := os.Getenv("MESHCAST_SCREENSHOT_DIR")
	if shotDir == "" {
		shotDir = t.TempDir()
	}
	shot, err := filepath.Abs(filepath.Join(shotDir, "demo-e2e.png"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	demo := startDemo(t, ctx, "-taxis", "1000", "-seed", "42")

	mqtt := dialMQTT(t, ctx, demo.mqtt)

	cmd := exec.CommandContext(ctx, "node", "e2e/demo.spec.mjs", "--url", demo.page, "--out", shot,
		"--chromium", chromiumPath, "--profile", t.TempDir())
	cmd.Dir = "web"
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "FORCE_COLOR=0")
	// On timeout, SIGTERM first: playwright then closes the browser it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("node e2e/demo.spec.mjs: %v", err)
	}
	occupyRE := regexp.MustCompile(`^occupy (\S+)/(\S+) (\S+) (\S+)$`)
	goneRE := regexp.MustCompile(`gone from the set and the map (\d+) ms after publishing`)
	var gone []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Logf("e2e: %s", line)
		if m := goneRE.FindStringSubmatch(line); m != nil {
			gone = append(gone, m[1]+" ms")
		}
		m := occupyRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lat, err1 := strconv.ParseFloat(m[3], 64)
		lon, err2 := strconv.ParseFloat(m[4], 64)
		if err1 != nil || err2 != nil {
			t.Errorf("bad occupy request %q", line)
			break
		}
		// The simulator keeps reporting this taxi (every 3 s, ts = its schedule): a ts one second
		// ahead of now (within the bridge's default 2 s skew) outranks its next fix, so the
		// occupied status is applied and the taxi leaves the riders' sets until the simulator's
		// fixes catch up. The test asserts the disappearance, not its permanence.
		sent := time.Now()
		payload := fmt.Sprintf(`{"lat":%v,"lon":%v,"ts":%d,"status":"occupied"}`, lat, lon, sent.Add(time.Second).UnixMilli())
		if err := mqtt.publish(ctx, "taxi/"+m[1]+"/"+m[2]+"/state", []byte(payload)); err != nil {
			t.Errorf("publish occupied %s/%s: %v", m[1], m[2], err)
			break
		}
		if _, err := fmt.Fprintf(stdin, "published %d\n", sent.UnixMilli()); err != nil {
			t.Errorf("answer the script: %v", err)
			break
		}
	}
	stdin.Close()
	go io.Copy(io.Discard, stdout) // after a break above, let the script finish
	err = cmd.Wait()
	t.Logf("e2e script took %v; occupied → gone: %s", time.Since(start).Round(time.Millisecond), strings.Join(gone, ", "))
	if err != nil {
		t.Fatalf("browser end-to-end test failed (%v); see the e2e lines above\n%s", err, stderr.String())
	}
	if len(gone) != 3 {
		t.Errorf("occupied taxis seen gone on %d transports, want 3", len(gone))
	}

	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s is not a page's PNG (%d bytes)", shot, len(png))
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if fi, err := os.Stat("/work/notes"); err == nil && fi.IsDir() {
		if err := os.WriteFile("/work/notes/demo-e2e.png", png, 0o644); err != nil {
			t.Errorf("copy the screenshot: %v", err)
		}
	}

	if err := demo.stop(); err != nil {
		t.Fatalf("demo did not stop cleanly: %v", err)
	}
}

// runningDemo is `meshcast demo` run in-process by startDemo.
type runningDemo struct {
	page string // the map page's URL, ending in /
	mqtt string // the embedded broker's host:port
	stop func() error
}

// startDemo runs runDemo on free loopback ports with the admin listener off, plus args, and
// returns once it printed its URLs. The demo is stopped at the end of the test if not before.
func startDemo(t *testing.T, ctx context.Context, args ...string) *runningDemo {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, append([]string{"-listen", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-admin", ""}, args...), pw)
		pw.Close()
	}()
	var once sync.Once
	var stopErr error
	d := &runningDemo{stop: func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}}
	t.Cleanup(func() { d.stop() })

	pageRE := regexp.MustCompile(`map page\s+(http://\S+/)`)
	mqttRE := regexp.MustCompile(`MQTT broker\s+(mqtt://\S+)`)
	sc := bufio.NewScanner(pr)
	for (d.page == "" || d.mqtt == "") && sc.Scan() {
		if m := pageRE.FindStringSubmatch(sc.Text()); m != nil {
			d.page = m[1]
		}
		if m := mqttRE.FindStringSubmatch(sc.Text()); m != nil {
			u, err := url.Parse(m[1])
			if err != nil {
				t.Fatalf("demo printed a bad broker URL %q: %v", m[1], err)
			}
			d.mqtt = u.Host
		}
	}
	if d.page == "" || d.mqtt == "" {
		t.Fatalf("demo did not print its map page and broker URLs: %v", d.stop())
	}
	go io.Copy(io.Discard, pr) // the rest of the banner and the final line
	return d
}

// mqttPublisher is one MQTT v5 connection publishing with QoS 1.
type mqttPublisher struct{ c *paho.Client }

func dialMQTT(t *testing.T, ctx context.Context, addr string) *mqttPublisher {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial the demo's broker: %v", err)
	}
	const id = "meshcast-e2e-test"
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("connect to the demo's broker: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("connect to the demo's broker: reason code %d", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &mqttPublisher{c: c}
}

// publish sends payload (JSON) with QoS 1 and returns once the broker acknowledged it.
func (p *mqttPublisher) publish(ctx context.Context, topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := p.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if err != nil {
		return err
	}
	if res != nil && res.ReasonCode >= 0x80 {
		return fmt.Errorf("PUBACK reason code %#x", res.ReasonCode)
	}
	return nil
}
