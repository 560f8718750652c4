package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cleanEnv returns the environment without MESHCAST_* variables, so that a test of the
// defaults is not steered by the caller's configuration.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MESHCAST_") })
}

// TestBuiltBinaryRunsAnywhere builds the meshcast binary and runs it from an empty temporary
// folder, as a user who copied it somewhere would: `zones` classifies against the built-in zones,
// `-zones` with a file of that folder replaces them, and `demo` starts and serves the map page and
// the zones it was built with, then stops cleanly on SIGINT.
func TestBuiltBinaryRunsAnywhere(t *testing.T) {
	bin := buildMeshcast(t)
	dir := t.TempDir()

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, cleanEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("meshcast %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("zones", "35.681236,139.767125")
	for _, want := range []string{
		"the built-in Tokyo zones: ok, 1 service areas, 12 no-dispatch zones",
		`35.681236,139.767125: mesh 53394611, service area "Tokyo 23 wards", no-dispatch -, dispatchable true`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("zones output lacks %q:\n%s", want, out)
		}
	}
	square := `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"kind":"service_area","name":"Square"},
"geometry":{"type":"Polygon","coordinates":[[[139.7,35.6],[139.8,35.6],[139.8,35.7],[139.7,35.7],[139.7,35.6]]]}}]}`
	if err := os.WriteFile(filepath.Join(dir, "square.geojson"), []byte(square), 0o644); err != nil {
		t.Fatal(err)
	}
	out = run("zones", "-zones", "square.geojson", "35.65,139.75")
	for _, want := range []string{
		"square.geojson: ok, 1 service areas, 0 no-dispatch zones",
		`35.65,139.75: mesh 53393680, service area "Square", no-dispatch -, dispatchable true`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("zones -zones output lacks %q:\n%s", want, out)
		}
	}

	cmd := exec.Command(bin, "demo", "-listen", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-admin", "", "-taxis", "50")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	lines := bufio.NewScanner(stdout)
	pageRE := regexp.MustCompile(`map page\s+(http://\S+)/`)
	var base string
	for base == "" && lines.Scan() {
		if m := pageRE.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		cmd.Process.Kill()
		t.Fatalf("demo run outside the repository did not print its map page (exit: %v):\n%s", <-exited, stderr.String())
	}
	go io.Copy(io.Discard, stdout)

	for path, want := range map[string]string{"/": "<title>meshcast", "/zones.geojson": `"Tokyo 23 wards"`} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET %s: %s, body lacks %q", path, res.Status, want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo did not exit cleanly on SIGINT: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("demo still running 30 s after SIGINT:\n%s", stderr.String())
	}
}
