package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoStreamsSimulatedTaxis runs the whole demo in-process (embedded broker, bridge,
// memory bus, edge, simulator) and reads the SSE stream until a simulated taxi arrives: the
// fixes went over real MQTT through the bridge and the hub to a rider.
func TestDemoStreamsSimulatedTaxis(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, []string{"-listen", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-admin", "",
			"-taxis", "2000", "-seed", "7"}, pw)
		pw.Close()
	}()

	sc := bufio.NewScanner(pr)
	pageRE := regexp.MustCompile(`map page\s+(http://\S+)/`)
	var base string
	for sc.Scan() {
		if m := pageRE.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatalf("demo did not print its URL: %v", <-done)
	}
	go io.Copy(io.Discard, pr) // the rest of the banner and the final line

	for _, path := range []string{"/", "/zones.geojson"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, res.Status)
		}
	}

	// A 3 km circle over central Tokyo: with 2000 taxis over the 23 wards some are vacant in it
	// within a report interval or two.
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", base+"/v1/sse?lat=35.681236&lon=139.767125&radius_m=3000", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := bufio.NewScanner(res.Body)
	seen := false
	for lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "data: ") && strings.Contains(l, `"id":"sim/`) {
			seen = true
			break
		}
	}
	if !seen {
		t.Fatalf("no simulated taxi reached the rider: %v", lines.Err())
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo did not stop cleanly: %v", err)
	}
}
