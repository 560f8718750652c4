package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

// TestDemoRiderSeesTaxisNearby runs the demo on its defaults (1,000 simulated taxis around the
// Tokyo hotspots) and watches, over SSE, 2 km around the map page's default place (Tokyo
// Station, web/app/params.ts DEFAULT_CENTRE): the rider must come to see at least 20 taxis at
// once, every one within the radius.
func TestDemoRiderSeesTaxisNearby(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, []string{"-listen", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-admin", ""}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	pageRE := regexp.MustCompile(`map page\s+(http://\S+)/`)
	var base string
	for base == "" && sc.Scan() {
		if m := pageRE.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("demo did not print its URL: %v", <-done)
	}
	go io.Copy(io.Discard, pr)

	const want, radius = 20, 2000
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", fmt.Sprintf("%s/v1/sse?lat=35.681236&lon=139.767125&radius_m=%d", base, radius), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	type vehicle struct {
		ID        string `json:"id"`
		DistanceM uint32 `json:"distanceM"`
	}
	var ev struct {
		Snapshot *struct {
			Vehicles []vehicle `json:"vehicles"`
		} `json:"snapshot"`
		Upsert *vehicle `json:"upsert"`
		Remove *struct {
			ID string `json:"id"`
		} `json:"remove"`
	}
	seen := map[string]bool{}
	lines := bufio.NewScanner(res.Body)
	lines.Buffer(make([]byte, 64<<10), 4<<20)
	for len(seen) < want && lines.Scan() {
		data, ok := strings.CutPrefix(lines.Text(), "data: ")
		if !ok {
			continue
		}
		ev.Snapshot, ev.Upsert, ev.Remove = nil, nil, nil
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %s: %v", data, err)
		}
		var vs []vehicle
		switch {
		case ev.Snapshot != nil:
			clear(seen)
			vs = ev.Snapshot.Vehicles
		case ev.Upsert != nil:
			vs = []vehicle{*ev.Upsert}
		case ev.Remove != nil:
			delete(seen, ev.Remove.ID)
		}
		for _, v := range vs {
			if v.DistanceM > radius {
				t.Fatalf("vehicle %s at %d m in a %d m area", v.ID, v.DistanceM, radius)
			}
			seen[v.ID] = true
		}
	}
	if len(seen) < want {
		t.Fatalf("the rider at Tokyo Station sees %d taxis within %d m at the end of the stream, want at least %d (%v)", len(seen), radius, want, lines.Err())
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo did not stop cleanly: %v", err)
	}
}
