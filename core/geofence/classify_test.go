package geofence

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/geojson/geometry"
)

// ringOf builds positions from lon, lat pairs.
func ringOf(lonLat ...float64) []geometry.Point {
	pts := make([]geometry.Point, 0, len(lonLat)/2)
	for i := 0; i+1 < len(lonLat); i += 2 {
		pts = append(pts, geometry.Point{X: lonLat[i], Y: lonLat[i+1]})
	}
	return pts
}

func mustLoad(t testing.TB, path string) *Set {
	t.Helper()
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func zoneName(z *Zone) string {
	if z == nil {
		return "-"
	}
	return z.Name
}

// TestClassifyEdges pins the edge rule: tidwall's, for both kinds. The file has
// a service area and a no-dispatch zone with the same geometry (a 10x10 square
// with a 2x2 hole), so both kinds must answer alike for every point.
func TestClassifyEdges(t *testing.T) {
	s := mustLoad(t, filepath.Join("testdata", "square_hole.geojson"))
	tests := []struct {
		name     string
		lat, lon float64
		inside   bool
	}{
		{"interior", 2, 2, true},
		{"on the outer edge (bottom)", 0, 5, true},
		{"on the outer edge (left)", 5, 0, true},
		{"on the outer edge (top)", 10, 3, true},
		{"on a vertex", 0, 0, true},
		{"on the opposite vertex", 10, 10, true},
		{"inside the hole", 5, 5, false},
		{"on the hole's edge", 5, 4, true},
		{"on the hole's top edge", 6, 5, true},
		{"on the hole's vertex", 4, 4, true},
		{"just inside the hole", 5, math.Nextafter(4, 5), false},
		{"just outside the outer edge", 5, math.Nextafter(0, -1), false},
		{"outside", 5, 11, false},
		{"NaN", math.NaN(), 5, false},
		{"infinite", 5, math.Inf(1), false},
		{"out of range", 95, 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Classify(tt.lat, tt.lon)
			if (r.ServiceArea != nil) != tt.inside || (r.NoDispatch != nil) != tt.inside {
				t.Errorf("Classify(%v, %v) = service area %s, no-dispatch %s; want inside=%v for both",
					tt.lat, tt.lon, zoneName(r.ServiceArea), zoneName(r.NoDispatch), tt.inside)
			}
		})
	}
}

// TestClassifyOrder pins "first in file order wins" for overlapping zones of a
// kind, and MultiPolygon members with a hole.
func TestClassifyOrder(t *testing.T) {
	s := mustLoad(t, filepath.Join("testdata", "multi_overlap.geojson"))
	tests := []struct {
		name         string
		lat, lon     float64
		sa, nd       string
		dispatchable bool
	}{
		{"west only", 5, 1, "west", "-", true},
		{"overlap of west and east: first wins", 5, 5, "west", "-", true},
		{"east only", 5, 8, "east", "-", true},
		{"first pool polygon", 1.2, 1.2, "west", "pools", false},
		{"pools and venue overlap: first wins", 1.8, 1.8, "west", "pools", false},
		{"venue only", 2.5, 2.5, "west", "venue", false},
		{"second pool polygon", 7.2, 7.2, "east", "pools", false},
		{"hole of the second pool polygon", 8, 8, "east", "-", true},
		{"outside everything", 11, 11, "-", "-", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Classify(tt.lat, tt.lon)
			if zoneName(r.ServiceArea) != tt.sa || zoneName(r.NoDispatch) != tt.nd || r.Dispatchable() != tt.dispatchable {
				t.Errorf("Classify(%v, %v) = %s / %s dispatchable=%v, want %s / %s dispatchable=%v",
					tt.lat, tt.lon, zoneName(r.ServiceArea), zoneName(r.NoDispatch), r.Dispatchable(),
					tt.sa, tt.nd, tt.dispatchable)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{ServiceArea: "service_area", NoDispatch: "no_dispatch", 0: "Kind(0)", 7: "Kind(7)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestZoneFields(t *testing.T) {
	s := mustLoad(t, filepath.Join("testdata", "multi_overlap.geojson"))
	z := s.Zones()[1]
	if z.Index != 1 || z.Name != "pools" || z.Kind != NoDispatch ||
		z.MinLat != 1 || z.MinLon != 1 || z.MaxLat != 9 || z.MaxLon != 9 {
		t.Errorf("zone 1 = %+v", z)
	}
	if got, want := z.String(), `no_dispatch "pools" (feature 1)`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestClassifyAllocs(t *testing.T) {
	s := mustLoad(t, tokyoPath)
	points := [][2]float64{
		{35.681236, 139.767125}, // service area, polygon with a segment index
		{35.6969, 139.7934},     // no-dispatch zone
		{35.6293, 139.79335},    // in a hole
		{35.4437, 139.6380},     // outside the bounds
		{35.52, 139.60},         // inside the bounds, outside the zones
	}
	for _, p := range points {
		if n := testing.AllocsPerRun(200, func() { s.Classify(p[0], p[1]) }); n != 0 {
			t.Errorf("Classify(%v, %v) allocates %v times per call", p[0], p[1], n)
		}
	}
}

// randomSet generates a zones file with n zones over the given bounds: zone 0
// is a service area covering most of them, the others random shapes (stars
// with 3 to 40 points, some with a hole, some MultiPolygons), mostly
// no-dispatch, of radius 50 to 500 m, or, when large is set, one in ten up to a
// quarter of the bounds.
func randomSet(rng *rand.Rand, n int, minLat, minLon, maxLat, maxLon float64, large bool) string {
	return collection(randomFeatures(rng, n, minLat, minLon, maxLat, maxLon, large, "zone")...)
}

func randomFeatures(rng *rand.Rand, n int, minLat, minLon, maxLat, maxLon float64, large bool, prefix string) []string {
	var features []string
	for i := range n {
		kind := "no_dispatch"
		if i == 0 || rng.IntN(8) == 0 {
			kind = "service_area"
		}
		var radius float64 // degrees
		switch {
		case i == 0:
			radius = (maxLat - minLat) / 2
		case large && rng.IntN(10) == 0:
			radius = rng.Float64() * (maxLat - minLat) / 4
		default:
			radius = 0.0005 + rng.Float64()*0.004
		}
		lat := minLat + rng.Float64()*(maxLat-minLat)
		lon := minLon + rng.Float64()*(maxLon-minLon)
		if i == 0 {
			lat, lon = (minLat+maxLat)/2, (minLon+maxLon)/2
		}
		var polys []string
		parts := 1
		if i > 0 && radius < 0.01 {
			parts += rng.IntN(2) // sometimes a MultiPolygon
		}
		for p := range parts {
			clat, clon := lat+float64(p)*radius*2.5, lon
			vertices := 3 + rng.IntN(38)
			if i == 0 {
				vertices = 32 // the same cost in every tile of the benchmarks
			}
			rings := []string{star(rng, clat, clon, radius, vertices, false)}
			if rng.IntN(4) == 0 {
				rings = append(rings, star(rng, clat, clon, radius/4, 3+rng.IntN(6), true))
			}
			polys = append(polys, "["+strings.Join(rings, ",")+"]")
		}
		geom := `{"type":"Polygon","coordinates":` + polys[0] + `}`
		if len(polys) > 1 {
			geom = `{"type":"MultiPolygon","coordinates":[` + strings.Join(polys, ",") + `]}`
		}
		features = append(features, feature(fmt.Sprintf(`{"name":"%s %d","kind":%q}`, prefix, i, kind), geom))
	}
	return features
}

// star returns a closed ring of n points at random radii around a centre,
// counter-clockwise, or clockwise when cw. Inner radius at least half the outer,
// so a hole of radius r/4 stays inside.
func star(rng *rand.Rand, lat, lon, radius float64, n int, cw bool) string {
	var b strings.Builder
	b.WriteByte('[')
	var first string
	for k := range n {
		a := 2 * math.Pi * float64(k) / float64(n)
		if cw {
			a = -a
		}
		r := radius * (0.5 + rng.Float64()/2)
		pos := fmt.Sprintf("[%.6f,%.6f]",
			math.Max(-180, math.Min(180, lon+r*math.Cos(a))), math.Max(-90, math.Min(90, lat+r*math.Sin(a))))
		if k == 0 {
			first = pos
		} else {
			b.WriteByte(',')
		}
		b.WriteString(pos)
	}
	b.WriteString("," + first + "]")
	return b.String()
}

// probePoints returns random points over (and a little beyond) the set's
// bounds plus the points most likely to expose an index bug: every zone's
// vertices and bounding-box corners.
func probePoints(rng *rand.Rand, s *Set, random int) [][2]float64 {
	g := s.grid
	padLat, padLon := (g.maxLat-g.minLat)/10, (g.maxLon-g.minLon)/10
	var pts [][2]float64
	for range random {
		pts = append(pts, [2]float64{
			g.minLat - padLat + rng.Float64()*(g.maxLat-g.minLat+2*padLat),
			g.minLon - padLon + rng.Float64()*(g.maxLon-g.minLon+2*padLon),
		})
	}
	for _, z := range s.zones {
		pts = append(pts, [2]float64{z.MinLat, z.MinLon}, [2]float64{z.MaxLat, z.MaxLon},
			[2]float64{z.MinLat, z.MaxLon}, [2]float64{z.MaxLat, z.MinLon})
		for _, poly := range z.polys {
			rings := append([]geometry.Ring{poly.Exterior}, poly.Holes...)
			for _, ring := range rings {
				for i := range ring.NumPoints() {
					p := ring.PointAt(i)
					pts = append(pts, [2]float64{p.Y, p.X})
				}
			}
		}
	}
	// Cell boundaries.
	for r := range g.rows + 1 {
		for c := 0; c <= g.cols; c += max(g.cols/8, 1) {
			pts = append(pts, [2]float64{g.minLat + float64(r)*g.cellH, g.minLon + float64(c)*g.cellW})
		}
	}
	return pts
}

// TestClassifyMatchesScan is the property test: the grid-indexed Classify
// returns exactly the zones a linear scan of all zones returns.
func TestClassifyMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sets := map[string]*Set{"tokyo": mustLoad(t, tokyoPath)}
	for _, n := range []int{1, 2, 10, 100, 500} {
		s, err := Parse([]byte(randomSet(rng, n, 35.50, 139.55, 35.83, 139.93, true)))
		if err != nil {
			t.Fatalf("random set of %d: %v", n, err)
		}
		sets[fmt.Sprintf("random %d", n)] = s
	}
	s, err := Parse([]byte(randomSet(rng, 50, -60, -170, 70, 170, true))) // world-sized, very uneven
	if err != nil {
		t.Fatal(err)
	}
	sets["world 50"] = s
	for name, s := range sets {
		t.Run(name, func(t *testing.T) {
			mismatches := 0
			for _, p := range probePoints(rng, s, 20000) {
				got, want := s.Classify(p[0], p[1]), s.classifyScan(p[0], p[1])
				if got != want {
					mismatches++
					if mismatches <= 5 {
						t.Errorf("Classify(%v, %v) = %s / %s, scan says %s / %s", p[0], p[1],
							zoneName(got.ServiceArea), zoneName(got.NoDispatch), zoneName(want.ServiceArea), zoneName(want.NoDispatch))
					}
				}
			}
			if mismatches > 0 {
				t.Errorf("%d mismatches", mismatches)
			}
		})
	}
}

func TestGridSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 10, 100, 1000} {
		s, err := Parse([]byte(randomSet(rng, n, 35.50, 139.55, 35.83, 139.93, true)))
		if err != nil {
			t.Fatal(err)
		}
		g := s.grid
		cells := g.rows * g.cols
		if cells < 1 || cells > maxCells || len(g.sa.items)+len(g.nd.items) > maxItems {
			t.Errorf("%d zones: grid %dx%d with %d items", n, g.rows, g.cols, len(g.sa.items)+len(g.nd.items))
		}
		if n >= 10 && cells < cellsPerZone*n/2 {
			t.Errorf("%d zones: only %d cells", n, cells)
		}
	}
}

func TestClassifyConcurrent(t *testing.T) {
	s := mustLoad(t, tokyoPath)
	rng := rand.New(rand.NewPCG(5, 6))
	pts := probePoints(rng, s, 5000)
	want := make([]Result, len(pts))
	for i, p := range pts {
		want[i] = s.Classify(p[0], p[1])
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range pts {
				i := (k + g*len(pts)/8) % len(pts)
				if got := s.Classify(pts[i][0], pts[i][1]); got != want[i] {
					t.Errorf("goroutine %d: Classify(%v) = %+v, want %+v", g, pts[i], got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
