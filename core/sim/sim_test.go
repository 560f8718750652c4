package sim_test

import (
	"bytes"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/sim"
	"github.com/meshcast/meshcast/core/telemetry"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

var zonesOnce = sync.OnceValues(func() (*geofence.Set, error) {
	return geofence.LoadFile("../../deploy/zones/tokyo.geojson")
})

func zones(t testing.TB) *geofence.Set {
	t.Helper()
	z, err := zonesOnce()
	if err != nil {
		t.Fatal(err)
	}
	return z
}

var start = time.UnixMilli(1732260000000)

type report struct {
	topic   string
	payload []byte
}

// run steps s until end in steps of pace and returns every report.
func run(s *sim.Sim, end time.Time, pace time.Duration) []report {
	var out []report
	emit := func(topic string, payload []byte) { out = append(out, report{topic, bytes.Clone(payload)}) }
	for now := start; now.Before(end); now = now.Add(pace) {
		s.Step(now, emit)
	}
	s.Step(end, emit)
	return out
}

func newSim(t testing.TB, cfg sim.Config) *sim.Sim {
	t.Helper()
	if cfg.Zones == nil {
		cfg.Zones = zones(t)
	}
	s, err := sim.New(cfg, start)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeterministicForASeed(t *testing.T) {
	end := start.Add(5 * time.Minute)
	a := run(newSim(t, sim.Config{Taxis: 50, Seed: 7}), end, 5*time.Minute)
	b := run(newSim(t, sim.Config{Taxis: 50, Seed: 7}), end, 37*time.Millisecond)
	c := run(newSim(t, sim.Config{Taxis: 50, Seed: 8}), end, 5*time.Minute)
	if len(a) != 50*100+1 { // 100 intervals of 3 s, plus taxi 0's report at exactly end
		t.Fatalf("%d reports in 5 minutes, want %d", len(a), 50*100+1)
	}
	if len(a) != len(b) {
		t.Fatalf("%d reports at one pace, %d at another", len(a), len(b))
	}
	for i := range a {
		if a[i].topic != b[i].topic || !bytes.Equal(a[i].payload, b[i].payload) {
			t.Fatalf("report %d differs with the pace:\n%s %s\n%s %s", i, a[i].topic, a[i].payload, b[i].topic, b[i].payload)
		}
	}
	same := 0
	for i := range a {
		if bytes.Equal(a[i].payload, c[i].payload) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d reports identical with another seed", same)
	}
}

// decodeAll decodes every report, checking it is valid telemetry.
func decodeAll(t *testing.T, rs []report, contentType string) map[string][]telemetry.Fix {
	t.Helper()
	byTaxi := map[string][]telemetry.Fix{}
	for _, r := range rs {
		var f telemetry.Fix
		if err := telemetry.Decode(r.topic, contentType, r.payload, &f); err != nil {
			t.Fatalf("%s %q: %v", r.topic, r.payload, err)
		}
		byTaxi[f.ID()] = append(byTaxi[f.ID()], f)
	}
	return byTaxi
}

func TestReportsAreValidAndSpreadEvenly(t *testing.T) {
	for _, format := range []sim.Format{sim.JSON, sim.Protobuf} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			const taxis = 30
			s := newSim(t, sim.Config{Taxis: taxis, Seed: 1, Format: format, Fleets: []string{"a", "b"}})
			rs := run(s, start.Add(time.Minute-time.Millisecond), time.Second)
			byTaxi := decodeAll(t, rs, s.ContentType())
			if len(byTaxi) != taxis {
				t.Fatalf("%d taxis reported, want %d", len(byTaxi), taxis)
			}
			for id, fs := range byTaxi {
				if len(fs) != 20 {
					t.Errorf("%s: %d reports in a minute, want 20", id, len(fs))
				}
				for i := 1; i < len(fs); i++ {
					if d := fs[i].TS - fs[i-1].TS; d != 3000 {
						t.Fatalf("%s: reports %d ms apart, want 3000", id, d)
					}
				}
			}
			// Report g is due at start + g·(3 s / taxis): the fleet's reports are evenly spread.
			var f telemetry.Fix
			for g, r := range rs {
				if err := telemetry.Decode(r.topic, s.ContentType(), r.payload, &f); err != nil {
					t.Fatal(err)
				}
				if want := start.UnixMilli() + int64(g)*3000/taxis; f.TS != want {
					t.Fatalf("report %d at %d, want %d", g, f.TS, want)
				}
			}
			if s.Reports() != int64(len(rs)) {
				t.Errorf("Reports() = %d, want %d", s.Reports(), len(rs))
			}
		})
	}
}

func TestNextDue(t *testing.T) {
	s := newSim(t, sim.Config{Taxis: 4, Seed: 1, Interval: 4 * time.Second})
	for g := range 12 {
		if got, want := s.NextDue(), start.Add(time.Duration(g)*time.Second); !got.Equal(want) {
			t.Fatalf("report %d due at %v, want %v", g, got, want)
		}
		n := 0
		s.Step(s.NextDue(), func(string, []byte) { n++ })
		if n != 1 {
			t.Fatalf("Step at NextDue emitted %d reports, want 1", n)
		}
	}
}

// An hour of 200 taxis: they drive at plausible speeds, stay mostly inside the service area
// but sometimes leave it, sometimes stop in no-dispatch zones, and their statuses cycle.
func TestPlausibleDriving(t *testing.T) {
	const taxis, maxKmh = 100, 50.0
	s := newSim(t, sim.Config{Taxis: taxis, Seed: 42, TimeScale: 1})
	byTaxi := decodeAll(t, run(s, start.Add(time.Hour), time.Minute), "")
	z := zones(t)
	var total, inside, noDispatch, dispatchable int
	statuses := map[meshcastv1.VehicleStatus]int{}
	next := map[meshcastv1.VehicleStatus][]meshcastv1.VehicleStatus{
		meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT:         {meshcastv1.VehicleStatus_VEHICLE_STATUS_DISPATCHED, meshcastv1.VehicleStatus_VEHICLE_STATUS_OUT_OF_SERVICE},
		meshcastv1.VehicleStatus_VEHICLE_STATUS_DISPATCHED:     {meshcastv1.VehicleStatus_VEHICLE_STATUS_OCCUPIED},
		meshcastv1.VehicleStatus_VEHICLE_STATUS_OCCUPIED:       {meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT},
		meshcastv1.VehicleStatus_VEHICLE_STATUS_OUT_OF_SERVICE: {meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT},
	}
	fullCycles := 0
	for id, fs := range byTaxi {
		sawDispatched := false
		for i, f := range fs {
			total++
			statuses[f.Status]++
			r := z.Classify(f.Lat, f.Lon)
			if r.ServiceArea != nil {
				inside++
			}
			if r.NoDispatch != nil {
				noDispatch++
			}
			if r.Dispatchable() && f.Status == meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT {
				dispatchable++
			}
			if i == 0 {
				continue
			}
			p := fs[i-1]
			dist := haversineM(p.Lat, p.Lon, f.Lat, f.Lon)
			if kmh := dist / 3 * 3.6; kmh > maxKmh*1.01 {
				t.Fatalf("%s moved %.0f m in 3 s (%.0f km/h)", id, dist, kmh)
			}
			if f.Speed < 0 || f.Speed > maxKmh || f.Heading < 0 || f.Heading >= 360 {
				t.Fatalf("%s: speed %v heading %v", id, f.Speed, f.Heading)
			}
			if f.Status != p.Status {
				ok := false
				for _, n := range next[p.Status] {
					ok = ok || n == f.Status
				}
				if !ok {
					t.Fatalf("%s: status %v after %v", id, f.Status, p.Status)
				}
				if p.Status == meshcastv1.VehicleStatus_VEHICLE_STATUS_DISPATCHED {
					sawDispatched = true
				}
				if sawDispatched && f.Status == meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT {
					fullCycles++
					sawDispatched = false
				}
			}
		}
	}
	frac := func(n int) float64 { return float64(n) / float64(total) }
	t.Logf("%d fixes: %.1f%% inside the service area, %.2f%% in no-dispatch zones, %.1f%% dispatchable; statuses %v; %d full cycles",
		total, 100*frac(inside), 100*frac(noDispatch), 100*frac(dispatchable), statuses, fullCycles)
	if frac(inside) < 0.9 || inside == total {
		t.Errorf("%.1f%% of fixes inside the service area: want most, not all", 100*frac(inside))
	}
	if noDispatch == 0 {
		t.Error("no taxi ever entered a no-dispatch zone")
	}
	for _, st := range []meshcastv1.VehicleStatus{1, 2, 3} {
		if frac(statuses[st]) < 0.05 {
			t.Errorf("status %v in only %.1f%% of fixes", st, 100*frac(statuses[st]))
		}
	}
	if fullCycles < taxis/4 {
		t.Errorf("only %d vacant → dispatched → occupied → vacant cycles in an hour of %d taxis", fullCycles, taxis)
	}
}

func TestTimeScaleSpeedsUpTheCycle(t *testing.T) {
	count := func(scale float64) int {
		s := newSim(t, sim.Config{Taxis: 20, Seed: 3, TimeScale: scale})
		changes := 0
		last := map[string]meshcastv1.VehicleStatus{}
		for id, fs := range decodeAll(t, run(s, start.Add(10*time.Minute), time.Minute), "") {
			for _, f := range fs {
				if st, ok := last[id]; ok && st != f.Status {
					changes++
				}
				last[id] = f.Status
			}
		}
		return changes
	}
	slow, fast := count(1), count(30)
	if fast < 5*slow || fast == 0 {
		t.Errorf("status changes in 10 minutes: %d at scale 1, %d at scale 30", slow, fast)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []sim.Config{
		{Taxis: 1},
		{Taxis: -1, Zones: zones(t)},
		{Taxis: 1, Zones: zones(t), Fleets: []string{"bad/fleet"}},
		{Taxis: 1, Zones: zones(t), Interval: time.Microsecond},
		{Taxis: 1, Zones: zones(t), TimeScale: -2},
		{Taxis: 1, Zones: zones(t), SpeedMin: 50, SpeedMax: 10},
		{Taxis: 1, Zones: zones(t), LeaveProb: 2},
	} {
		if _, err := sim.New(cfg, start); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := sim.ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) succeeded")
	}
}

func haversineM(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.8
	p1, p2 := lat1*math.Pi/180, lat2*math.Pi/180
	dp, dl := p2-p1, (lon2-lon1)*math.Pi/180
	a := math.Sin(dp/2)*math.Sin(dp/2) + math.Cos(p1)*math.Cos(p2)*math.Sin(dl/2)*math.Sin(dl/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

func BenchmarkStep(b *testing.B) {
	s := newSim(b, sim.Config{Taxis: 10000, Seed: 1})
	now := start
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(300 * time.Microsecond) // one report per step at 10,000 taxis / 3 s
		s.Step(now, func(string, []byte) { n++ })
	}
	b.ReportMetric(float64(n)/float64(b.N), "reports/op")
}
