package telemetry

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

const tokyoZones = "../../deploy/zones/tokyo.geojson"

func loadTokyo(tb testing.TB) *geofence.Set {
	tb.Helper()
	zones, err := geofence.LoadFile(tokyoZones)
	if err != nil {
		tb.Fatalf("load zones: %v", err)
	}
	return zones
}

const (
	notVacant    = meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
	outsideArea  = meshcastv1.RemovalReason_REMOVAL_REASON_OUTSIDE_SERVICE_AREA
	inNoDispatch = meshcastv1.RemovalReason_REMOVAL_REASON_IN_NO_DISPATCH_ZONE
	wards        = "Tokyo 23 wards"
)

const now = int64(1732260000123)

// Named places; their mesh codes in the tests were computed by hand with
// exact rationals (lat*1.5, lon-100, then x8 and x10 per level). The zones in deploy/zones/tokyo.geojson: the service area
// "Tokyo 23 wards" and no-dispatch zones for station taxi pools, Haneda
// Airport and venues (Tokyo Big Sight has a hole).
var (
	tokyoStation   = [2]float64{35.681236, 139.767125} // between the Marunouchi and Yaesu pools
	marunouchiPool = [2]float64{35.6812, 139.7648}
	hanedaAirport  = [2]float64{35.5500, 139.7800}
	bigSightRing   = [2]float64{35.6280, 139.7910}
	bigSightHole   = [2]float64{35.6293, 139.7933} // inside the venue's hole
	shibuyaCrossng = [2]float64{35.659500, 139.700500}
	yokohama       = [2]float64{35.443708, 139.638026} // Kanagawa: outside the service area
	seoul          = [2]float64{37.566535, 126.977969} // in the mesh domain, far from any zone
	nullIsland     = [2]float64{0, 0}                  // outside the mesh domain
	honolulu       = [2]float64{21.306944, -157.858333}
)

func fixAt(p [2]float64, status meshcastv1.VehicleStatus, ts int64) *Fix {
	return &Fix{Fleet: "acme", Vehicle: "car-7", Lat: p[0], Lon: p[1], TS: ts, Status: status, Class: standard}
}

func TestClassifyTokyo(t *testing.T) {
	zones := loadTokyo(t)
	c := &Classifier{Zones: zones}
	tests := []struct {
		name             string
		fix              *Fix
		dispatchable     bool
		reason           meshcastv1.RemovalReason
		mesh             mesh.Code
		serviceArea, nd  string // zone names, "" for none
		zonesNotLookedUp bool
	}{
		{"vacant taxi at Tokyo Station", fixAt(tokyoStation, vacant, now), true, 0, 53394611, wards, "", false},
		{"reported 10 s ago is still fresh", fixAt(tokyoStation, vacant, now-10_000), true, 0, 53394611, wards, "", false},
		{"2 s in the future is within the skew", fixAt(tokyoStation, vacant, now+2_000), true, 0, 53394611, wards, "", false},
		{"in the Marunouchi taxi pool", fixAt(marunouchiPool, vacant, now), false, inNoDispatch, 53394611, wards, "Tokyo Station Marunouchi taxi pool", false},
		{"at Haneda Airport", fixAt(hanedaAirport, vacant, now), false, inNoDispatch, 53392662, wards, "Haneda Airport", false},
		{"at Tokyo Big Sight", fixAt(bigSightRing, vacant, now), false, inNoDispatch, 53393653, wards, "Tokyo Big Sight", false},
		{"in the hole of Tokyo Big Sight", fixAt(bigSightHole, vacant, now), true, 0, 53393653, wards, "", false},
		{"at Shibuya crossing", fixAt(shibuyaCrossng, vacant, now), true, 0, 53393596, wards, "", false},
		{"in Yokohama", fixAt(yokohama, vacant, now), false, outsideArea, 53391531, "", "", false},
		{"in Seoul: in the mesh domain, in no zone", fixAt(seoul, vacant, now), false, outsideArea, 56262778, "", "", false},
		{"on Null Island: outside the mesh domain", fixAt(nullIsland, vacant, now), false, outsideArea, 0, "", "", true},
		{"in Honolulu: outside the mesh domain", fixAt(honolulu, vacant, now), false, outsideArea, 0, "", "", true},
		{"occupied", fixAt(tokyoStation, occupied, now), false, notVacant, 53394611, "", "", true},
		{"dispatched", fixAt(tokyoStation, dispatched, now), false, notVacant, 53394611, "", "", true},
		{"out of service", fixAt(tokyoStation, outOfSvc, now), false, notVacant, 53394611, "", "", true},
		{"not vacant wins over outside", fixAt(yokohama, occupied, now), false, notVacant, 53391531, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := c.Classify(tt.fix, now)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			if r.Dispatchable != tt.dispatchable || r.Reason != tt.reason {
				t.Errorf("dispatchable %v reason %v, want %v %v", r.Dispatchable, r.Reason, tt.dispatchable, tt.reason)
			}
			if r.Mesh != tt.mesh {
				t.Errorf("mesh %v, want %v", r.Mesh, tt.mesh)
			}
			if m, err := mesh.Third(tt.fix.Lat, tt.fix.Lon); err == nil && m != r.Mesh || err != nil && r.Mesh != 0 {
				t.Errorf("mesh %v, mesh.Third says %v, %v", r.Mesh, m, err)
			}
			if got := zoneName(r.ServiceArea); got != tt.serviceArea {
				t.Errorf("service area %q, want %q", got, tt.serviceArea)
			}
			if got := zoneName(r.NoDispatch); got != tt.nd {
				t.Errorf("no-dispatch zone %q, want %q", got, tt.nd)
			}
			if !tt.zonesNotLookedUp && tt.fix.Status == vacant {
				// The result must agree with the zones themselves.
				z := zones.Classify(tt.fix.Lat, tt.fix.Lon)
				if z.ServiceArea != r.ServiceArea || z.NoDispatch != r.NoDispatch || z.Dispatchable() != r.Dispatchable {
					t.Errorf("result %+v disagrees with geofence %+v", r, z)
				}
			}
		})
	}
}

func zoneName(z *geofence.Zone) string {
	if z == nil {
		return ""
	}
	return z.Name
}

func TestClassifyFuture(t *testing.T) {
	c := &Classifier{Zones: loadTokyo(t)}
	for _, status := range []meshcastv1.VehicleStatus{vacant, occupied} { // future is checked first
		f := fixAt(tokyoStation, status, now+2_001)
		r, err := c.Classify(f, now)
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonFutureTimestamp || e.Field != "ts" {
			t.Fatalf("Classify(%v, 2001 ms ahead) = %+v, %v; want a future_timestamp error", status, r, err)
		}
		want := `field "ts": 1732260002124 is 2001 ms ahead of now (1732260000123), more than the allowed skew of 2000 ms`
		if err.Error() != want {
			t.Errorf("error %q\nwant  %q", err, want)
		}
		if r.Dispatchable || r.Mesh != 53394611 {
			t.Errorf("result with the error %+v: want not dispatchable, mesh 53394611", r)
		}
	}
}

// TestClassifyStale: a fix older than the TTL would never be shown: it is rejected
// (stale_timestamp, whatever its status and place) instead of applied, and a ts in seconds
// is named as such.
func TestClassifyStale(t *testing.T) {
	c := &Classifier{Zones: loadTokyo(t)}
	tests := []struct {
		name string
		f    *Fix
		want string
	}{
		{"stale by 1 ms", fixAt(tokyoStation, vacant, now-10_001),
			`field "ts": 1732259990122 is 10001 ms before now (1732260000123), older than the TTL of 10000 ms`},
		{"occupied, a minute old", fixAt(yokohama, occupied, now-60_000),
			`field "ts": 1732259940123 is 60000 ms before now (1732260000123), older than the TTL of 10000 ms`},
		{"outside the mesh domain", fixAt(nullIsland, vacant, now-60_000), "older than the TTL"},
		{"ts in seconds", fixAt(tokyoStation, vacant, now/1000),
			`field "ts": 1732260000 is 1730527740123 ms before now (1732260000123), older than the TTL of 10000 ms: ts looks like seconds, want Unix milliseconds (1732260000000)`},
		{"ts in seconds, a month ago", fixAt(tokyoStation, vacant, now/1000-30*24*3600), "ts looks like seconds"},
		{"ts 1 (not seconds of now)", fixAt(tokyoStation, vacant, 1), "older than the TTL of 10000 ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := c.Classify(tt.f, now)
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonStaleTimestamp || e.Field != "ts" || r.Dispatchable {
				t.Fatalf("Classify = %+v, %v; want a stale_timestamp error", r, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "seconds") != strings.Contains(tt.want, "seconds") {
				t.Fatalf("error %q: says seconds when it should not, or not when it should", err)
			}
		})
	}
}

func TestClassifierSettings(t *testing.T) {
	zones := loadTokyo(t)
	tests := []struct {
		name   string
		c      Classifier
		ts     int64
		reason meshcastv1.RemovalReason
		reject Reason
	}{
		{"TTL 3 s: 3 s old is fresh", Classifier{Zones: zones, TTL: 3 * time.Second}, now - 3_000, 0, ""},
		{"TTL 3 s: 3.001 s old is stale", Classifier{Zones: zones, TTL: 3 * time.Second}, now - 3_001, 0, ReasonStaleTimestamp},
		{"TTL 1 min", Classifier{Zones: zones, TTL: time.Minute}, now - 59_000, 0, ""},
		{"skew 10 s", Classifier{Zones: zones, MaxSkew: 10 * time.Second}, now + 10_000, 0, ""},
		{"skew 10 s exceeded", Classifier{Zones: zones, MaxSkew: 10 * time.Second}, now + 10_001, 0, ReasonFutureTimestamp},
		{"skew 1 ms", Classifier{Zones: zones, MaxSkew: time.Millisecond}, now + 2, 0, ReasonFutureTimestamp},
		{"no zones: nothing is in a service area", Classifier{}, now, outsideArea, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.c.Classify(fixAt(tokyoStation, vacant, tt.ts), now)
			if tt.reject != "" {
				if ReasonOf(err) != tt.reject {
					t.Fatalf("Classify = %+v, %v; want %s", r, err, tt.reject)
				}
				return
			}
			if err != nil || r.Reason != tt.reason || r.Dispatchable != (tt.reason == 0) {
				t.Fatalf("Classify = %+v, %v; want reason %v", r, err, tt.reason)
			}
		})
	}
}

func TestClassifyAllocs(t *testing.T) {
	c := &Classifier{Zones: loadTokyo(t)}
	for _, f := range []*Fix{fixAt(tokyoStation, vacant, now), fixAt(marunouchiPool, vacant, now),
		fixAt(yokohama, vacant, now), fixAt(nullIsland, vacant, now), fixAt(honolulu, vacant, now),
		fixAt(tokyoStation, occupied, now),
		{Lat: math.NaN(), Lon: math.NaN(), TS: now, Status: vacant}} {
		if n := testing.AllocsPerRun(100, func() {
			if _, err := c.Classify(f, now); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Classify(%+v) allocates %v times, want 0", f, n)
		}
	}
}

func TestToVehicle(t *testing.T) {
	f := &Fix{Fleet: "acme", Vehicle: "car-7", Lat: 35.681236, Lon: 139.767125, TS: now,
		Status: vacant, Heading: 90, Speed: 12.5, Accuracy: 8, Class: premium}
	if f.ID() != "acme/car-7" {
		t.Errorf("ID() = %q", f.ID())
	}
	want := &meshcastv1.Vehicle{Id: "acme/car-7", Fleet: "acme", Lat: 35.681236, Lon: 139.767125,
		HeadingDeg: 90, SpeedKmh: 12.5, Class: premium, Mesh: "53394611", ObservedAtMs: now}
	if got := f.ToVehicle(53394611); !proto.Equal(got, want) {
		t.Errorf("ToVehicle = %v\nwant %v", got, want)
	}
	if got := f.ToVehicle(0); got.Mesh != "" {
		t.Errorf("ToVehicle(0).Mesh = %q, want empty", got.Mesh)
	}
}

// TestDecodeThenClassify runs the ingest path end to end on a JSON and a
// protobuf message.
func TestDecodeThenClassify(t *testing.T) {
	c := &Classifier{Zones: loadTokyo(t)}
	pb := marshalTelemetry(t, &meshcastv1.Telemetry{Lat: marunouchiPool[0], Lon: marunouchiPool[1], Ts: now, Status: vacant})
	msgs := []struct {
		ct      string
		payload []byte
		reason  meshcastv1.RemovalReason
	}{
		{"", []byte(goodJSON), 0},
		{ContentTypeProtobuf, pb, inNoDispatch},
	}
	for _, m := range msgs {
		var f Fix
		if err := Decode("taxi/acme/car-7/state", m.ct, m.payload, &f); err != nil {
			t.Fatal(err)
		}
		r, err := c.Classify(&f, now)
		if err != nil || r.Reason != m.reason || r.Mesh != 53394611 {
			t.Fatalf("Classify(%+v) = %+v, %v; want reason %v in mesh 53394611", f, r, err, m.reason)
		}
		if v := f.ToVehicle(r.Mesh); v.Id != "acme/car-7" || !strings.HasPrefix(v.Mesh, "5339") {
			t.Errorf("vehicle %v", v)
		}
	}
}

// tokyoFixes are n vacant, fresh fixes spread uniformly over the bounding
// box of the 23 wards (so some fall outside the service area and some in
// no-dispatch zones).
func tokyoFixes(n int) []Fix {
	rng := rand.New(rand.NewPCG(23, 11))
	fixes := make([]Fix, n)
	for i := range fixes {
		fixes[i] = Fix{Fleet: "acme", Vehicle: "car", TS: now - int64(rng.IntN(3000)), Status: vacant, Class: standard,
			Lat: 35.514563 + rng.Float64()*(35.816625-35.514563),
			Lon: 139.562375 + rng.Float64()*(139.906-139.562375)}
	}
	return fixes
}

// BenchmarkClassifyTokyo is the full classification (mesh and zones) of
// random fixes over the 23 wards.
func BenchmarkClassifyTokyo(b *testing.B) {
	c := &Classifier{Zones: loadTokyo(b)}
	fixes := tokyoFixes(4096)
	var dispatchable int
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, err := c.Classify(&fixes[i&4095], now)
		if err != nil {
			b.Fatal(err)
		}
		if r.Dispatchable {
			dispatchable++
		}
		i++
	}
	b.ReportMetric(float64(dispatchable)/float64(i), "dispatchable/op")
}
