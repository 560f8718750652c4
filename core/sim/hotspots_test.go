package sim_test

import (
	"math"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/sim"
	"github.com/meshcast/meshcast/core/telemetry"
)

// nearCount steps s to each of the given times and returns, at each, how many taxis a rider
// at (lat, lon) would see within radiusM: the last fix of every taxi, vacant and dispatchable.
func nearCount(t *testing.T, s *sim.Sim, lat, lon, radiusM float64, at []time.Duration) []int {
	t.Helper()
	last := map[string]telemetry.Fix{}
	c := telemetry.Classifier{Zones: zones(t), TTL: time.Hour}
	var out []int
	for _, d := range at {
		now := start.Add(d)
		s.Step(now, func(topic string, payload []byte) {
			var f telemetry.Fix
			if err := telemetry.Decode(topic, "", payload, &f); err != nil {
				t.Fatal(err)
			}
			last[topic] = f
		})
		n := 0
		for _, f := range last {
			r, err := c.Classify(&f, now.UnixMilli())
			if err != nil {
				t.Fatal(err)
			}
			if r.Dispatchable && distM(lat, lon, f.Lat, f.Lon) <= radiusM {
				n++
			}
		}
		out = append(out, n)
	}
	return out
}

func distM(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.8
	dy := (lat2 - lat1) * math.Pi / 180 * r
	dx := (lon2 - lon1) * math.Pi / 180 * r * math.Cos(lat1*math.Pi/180)
	return math.Hypot(dx, dy)
}

// TestHotspotsPutTaxisWhereRidersAre runs the demo's fleet (1,000 taxis, seed 1, time scale 20,
// the Tokyo hotspots) for a quarter of a simulated hour: every 3 minutes a rider at Tokyo
// Station (the map page's default place) sees at least 20 taxis within 2 km, where the same
// fleet without hotspots, spread over the 23 wards, shows a handful; and the taxis keep moving.
func TestHotspotsPutTaxisWhereRidersAre(t *testing.T) {
	const lat, lon, radius = 35.681236, 139.767125, 2000.0
	var at []time.Duration
	for m := 3; m <= 15; m += 3 {
		at = append(at, time.Duration(m)*time.Minute)
	}
	cfg := sim.Config{Taxis: 1000, Seed: 1, TimeScale: 20}
	uniform := nearCount(t, newSim(t, cfg), lat, lon, radius, at)
	cfg.Hotspots = sim.TokyoHotspots
	s := newSim(t, cfg)
	hot := nearCount(t, s, lat, lon, radius, at)
	t.Logf("taxis within 2 km of Tokyo Station every 3 min, without hotspots: %v", uniform)
	t.Logf("with the Tokyo hotspots: %v", hot)
	var sumU, sumH int
	for i := range at {
		if hot[i] < 20 {
			t.Errorf("at %v the rider sees %d taxis within 2 km, want at least 20", at[i], hot[i])
		}
		sumU += uniform[i]
		sumH += hot[i]
	}
	if sumH < 5*sumU {
		t.Errorf("hotspots put %d taxi-samples near the station, without them %d: want at least 5 times as many", sumH, sumU)
	}

	// Moving: over the next minute most taxis change place.
	pos := map[string][2]float64{}
	moved := map[string]bool{}
	end := start.Add(at[len(at)-1])
	for k := 1; k <= 20; k++ {
		s.Step(end.Add(time.Duration(k)*3*time.Second), func(topic string, payload []byte) {
			var f telemetry.Fix
			if err := telemetry.Decode(topic, "", payload, &f); err != nil {
				t.Fatal(err)
			}
			if p, ok := pos[topic]; ok && distM(p[0], p[1], f.Lat, f.Lon) > 50 {
				moved[topic] = true
			}
			if _, ok := pos[topic]; !ok {
				pos[topic] = [2]float64{f.Lat, f.Lon}
			}
		})
	}
	if len(pos) != cfg.Taxis || len(moved) < cfg.Taxis*3/4 {
		t.Errorf("%d of %d taxis moved more than 50 m in a minute, want at least three quarters", len(moved), len(pos))
	}
}

func TestHotspotConfig(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		err  bool
	}{{"tokyo", len(sim.TokyoHotspots), false}, {"none", 0, false}, {"", 0, false}, {"Osaka", 0, true}} {
		hs, err := sim.ParseHotspots(tt.in)
		if (err != nil) != tt.err || len(hs) != tt.want {
			t.Errorf("ParseHotspots(%q) = %d hotspots, %v", tt.in, len(hs), err)
		}
	}
	for _, cfg := range []sim.Config{
		{Taxis: 1, Hotspots: sim.TokyoHotspots, HotspotShare: 1.5},
		{Taxis: 1, Hotspots: sim.TokyoHotspots, HotspotShare: -0.1},
		{Taxis: 1, Hotspots: []sim.Hotspot{{Name: "x", Lat: 35.68, Lon: 139.76, RadiusM: 0, Weight: 1}}},
		{Taxis: 1, Hotspots: []sim.Hotspot{{Name: "x", Lat: 35.68, Lon: 139.76, RadiusM: 500, Weight: math.NaN()}}},
	} {
		cfg.Zones = zones(t)
		if _, err := sim.New(cfg, start); err == nil {
			t.Errorf("sim.New accepted hotspots %+v, share %v", cfg.Hotspots, cfg.HotspotShare)
		}
	}
	// A hotspot outside the service area (Osaka) is ignored: every taxi starts inside.
	s := newSim(t, sim.Config{Taxis: 50, Seed: 3, HotspotShare: 1,
		Hotspots: []sim.Hotspot{{Name: "Osaka", Lat: 34.70, Lon: 135.50, RadiusM: 500, Weight: 100}}})
	n := nearCount(t, s, 34.70, 135.50, 50_000, []time.Duration{3 * time.Second})
	if n[0] != 0 {
		t.Errorf("%d taxis near a hotspot outside the service area", n[0])
	}
}
