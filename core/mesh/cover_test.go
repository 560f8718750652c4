package mesh

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCoverRadiusZero(t *testing.T) {
	tests := []struct {
		name     string
		lat, lon float64
		want     Code
	}{
		{"Tokyo Station", 35.681236, 139.767125, 53394611},
		{"on the SW corner of 53394611: only that cell", 35.675, 139.7625, 53394611},
		{"first-order corner", 53 / 1.5, 139, 53390000},
	}
	for _, tc := range tests {
		got, err := Cover(tc.lat, tc.lon, 0)
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: Cover(%v, %v, 0) = %v, %v; want [%v]", tc.name, tc.lat, tc.lon, got, err, tc.want)
		}
	}
}

func TestCoverCorner(t *testing.T) {
	// The SW corner of 53394611 (35.675, 139.7625, derived in TestEdges) is shared by 53394600 (SW),
	// 53394601 (SE), 53394610 (NW) and 53394611 (NE). Any circle around it smaller than a cell
	// covers exactly those four, south to north, west to east.
	for _, r := range []float64{0.001, 1, 10, 300} {
		got, err := Cover(35.675, 139.7625, r)
		want := []Code{53394600, 53394601, 53394610, 53394611}
		if err != nil || !slicesEqual(got, want) {
			t.Errorf("Cover(corner, %v m) = %v, %v; want %v", r, got, err, want)
		}
	}
	// The same around a first-order corner (53/1.5, 139), where all four cells are in different
	// first-order meshes (see TestNeighboursAcrossBorders).
	got, err := Cover(53/1.5, 139, 10)
	want := []Code{52387799, 52397090, 53380709, 53390000}
	if err != nil || !slicesEqual(got, want) {
		t.Errorf("Cover(first-order corner, 10 m) = %v, %v; want %v", got, err, want)
	}
}

func TestCoverByHand(t *testing.T) {
	// Tokyo Station (35.681236, 139.767125) is 22.45" = 693 m north of its cell's south edge,
	// 7.55" = 233 m south of its north edge, 61.65" − 45" = 16.65" = 418 m east of its west edge
	// and 28.35" = 712 m west of its east edge (1" lat = 30.87 m; 1" lon = 30.87 × cos 35.68° = 25.08 m).
	// A 200 m circle touches only its own cell; a 300 m circle also the north cell 53394621.
	tests := []struct {
		r    float64
		want []Code
	}{
		{200, []Code{53394611}},
		{300, []Code{53394611, 53394621}},
		{500, []Code{53394610, 53394611, 53394620, 53394621}},
	}
	for _, tc := range tests {
		got, err := Cover(35.681236, 139.767125, tc.r)
		if err != nil || !slicesEqual(got, tc.want) {
			t.Errorf("Cover(Tokyo Station, %v m) = %v, %v; want %v", tc.r, got, err, tc.want)
		}
	}
}

func TestCoverErrors(t *testing.T) {
	tests := []struct {
		name          string
		lat, lon, r   float64
		domain        bool
		msgSubstrings string
	}{
		{"negative radius", 35, 139, -1, false, "radius -1 m"},
		{"NaN radius", 35, 139, math.NaN(), false, "radius NaN m"},
		{"infinite radius", 35, 139, math.Inf(1), false, "radius +Inf m"},
		{"radius over the maximum", 35, 139, MaxCoverRadiusM + 1, false, "must be in [0, 100000]"},
		{"centre outside the domain", 5, 139, 1000, true, "cover centre"},
		{"NaN centre", math.NaN(), 139, 1000, true, "cover centre"},
	}
	for _, tc := range tests {
		got, err := Cover(tc.lat, tc.lon, tc.r)
		if err == nil || got != nil || errors.Is(err, ErrOutOfDomain) != tc.domain || !strings.Contains(err.Error(), tc.msgSubstrings) {
			t.Errorf("%s: Cover = %v, %v; want an error saying %q (out of domain %v)", tc.name, got, err, tc.msgSubstrings, tc.domain)
		}
		dst := []Code{1234}
		if got, err := AppendCover(dst, tc.lat, tc.lon, tc.r); err == nil || !slicesEqual(got, dst) {
			t.Errorf("%s: AppendCover = %v, %v; want dst unchanged and an error", tc.name, got, err)
		}
	}
}

// minDistM is the exact great-circle distance from a point to the closest point of a cell, computed
// independently of Cover: inside the cell's longitude range the closest point is on the same
// meridian; outside it, on the nearer meridian edge, at the foot of the perpendicular great circle
// (tan φF = tan φ / cos Δλ) clamped to the edge.
func minDistM(lat, lon float64, b Bounds) float64 {
	if lon >= b.MinLon && lon <= b.MaxLon {
		switch {
		case lat < b.MinLat:
			return (b.MinLat - lat) * degToRad * EarthRadiusM
		case lat > b.MaxLat:
			return (lat - b.MaxLat) * degToRad * EarthRadiusM
		}
		return 0
	}
	edge := b.MinLon
	if lon > b.MaxLon {
		edge = b.MaxLon
	}
	dl := math.Abs(lon-edge) * degToRad
	foot := math.Atan(math.Tan(lat*degToRad)/math.Cos(dl)) * radToDeg
	return DistanceM(lat, lon, min(max(foot, b.MinLat), b.MaxLat), edge)
}

// destination returns the point at distance d (metres) and bearing θ (radians) from (lat, lon).
func destination(lat, lon, d, theta float64) (float64, float64) {
	p1, l1, a := lat*degToRad, lon*degToRad, d/EarthRadiusM
	p2 := math.Asin(math.Sin(p1)*math.Cos(a) + math.Cos(p1)*math.Sin(a)*math.Cos(theta))
	l2 := l1 + math.Atan2(math.Sin(theta)*math.Sin(a)*math.Cos(p1), math.Cos(a)-math.Sin(p1)*math.Sin(p2))
	return p2 * radToDeg, l2 * radToDeg
}

// checkCover compares Cover with a brute force over every cell around the circle: a cell whose
// exact distance is ≤ r must be in the cover; a cell in the cover must be within r + 2 mm (the
// documented ~0.6 mm widening plus the test's own rounding). It also checks the order and that
// random points inside the circle are in covered cells.
func checkCover(t *testing.T, rng *rand.Rand, lat, lon, r float64) {
	t.Helper()
	got, err := Cover(lat, lon, r)
	if err != nil {
		t.Fatalf("Cover(%v, %v, %v): %v", lat, lon, r, err)
	}
	in := make(map[Code]bool, len(got))
	for i, c := range got {
		if c.Level() != ThirdLevel || in[c] {
			t.Fatalf("Cover(%v, %v, %v): %v is not a distinct third-order code", lat, lon, r, c)
		}
		in[c] = true
		if i > 0 {
			a, b := got[i-1].Bounds(), c.Bounds()
			if !(a.MinLat < b.MinLat || (a.MinLat == b.MinLat && a.MinLon < b.MinLon)) {
				t.Fatalf("Cover(%v, %v, %v): %v before %v is not south-to-north, west-to-east", lat, lon, r, got[i-1], c)
			}
		}
		if d := minDistM(lat, lon, c.Bounds()); d > r+0.002 {
			t.Fatalf("Cover(%v, %v, %v) includes %v at %v m", lat, lon, r, c, d)
		}
	}
	// Every cell whose centre is within the circle's bounding box widened by two cells.
	dLat := (r/EarthRadiusM)*radToDeg + 1.0/60
	dLon := dLat/math.Cos((math.Abs(lat)+dLat)*degToRad) + 1.0/40
	for row := math.Floor((lat - dLat) * 120); row <= (lat+dLat)*120; row++ {
		for col := math.Floor((lon - dLon) * 80); col <= (lon+dLon)*80; col++ {
			c, err := Third((row+0.5)/120, (col+0.5)/80) // 120 rows and 80 columns per degree
			if err != nil {
				continue // outside the domain
			}
			if d := minDistM(lat, lon, c.Bounds()); d <= r && !in[c] {
				t.Fatalf("Cover(%v, %v, %v) misses %v at %v m", lat, lon, r, c, d)
			}
		}
	}
	for range 200 {
		d := r * math.Sqrt(rng.Float64())
		plat, plon := destination(lat, lon, d, rng.Float64()*2*math.Pi)
		if DistanceM(lat, lon, plat, plon) > r {
			continue
		}
		if c, err := Third(plat, plon); err == nil && !in[c] {
			t.Fatalf("Cover(%v, %v, %v) misses %v holding (%v, %v) at %v m", lat, lon, r, c, plat, plon, DistanceM(lat, lon, plat, plon))
		}
	}
}

func TestCoverProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	radii := []float64{0.5, 1, 10, 100, 463, 1000, 3000, 10000, 50000}
	n := 300
	if testing.Short() {
		n = 30
	}
	for i := range n {
		lat, lon := randomPoint(rng)
		r := radii[i%len(radii)] * (0.5 + rng.Float64())
		if i%len(radii) == len(radii)-1 && i > 2*len(radii) {
			r = rng.Float64() * 3000 // a few more small ones instead of many 50 km ones
		}
		checkCover(t, rng, lat, lon, r)
	}
	// Hand-picked: circles crossing first-order borders and the domain's edges, far north (where
	// longitude cells are narrow) and the largest radius.
	for _, tc := range []struct{ lat, lon, r float64 }{
		{53 / 1.5, 139, 5000},
		{53/1.5 + 1e-9, 139 - 1e-9, 1200},
		{35.681236, 139.767125, 1000},
		{35.681236, 139.767125, 3000},
		{20.0 / 3, 100, 20000},
		{66.66, 179.99, 20000},
		{66.6, 140, 50000},
		{7, 150, MaxCoverRadiusM},
	} {
		checkCover(t, rng, tc.lat, tc.lon, tc.r)
	}
}

func TestAppendCoverNoAlloc(t *testing.T) {
	dst := make([]Code, 0, 64)
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		dst, err = AppendCover(dst[:0], 35.681236, 139.767125, 1000)
	})
	if err != nil || allocs != 0 {
		t.Errorf("AppendCover with room: %v allocs, err %v; want 0, nil", allocs, err)
	}
	got, _ := Cover(35.681236, 139.767125, 1000)
	if !slicesEqual(dst, got) || cap(got) != len(got) {
		t.Errorf("AppendCover = %v, Cover = %v (cap %d)", dst, got, cap(got))
	}
	// Appends after what is there.
	dst, err = AppendCover([]Code{42}, 35.681236, 139.767125, 0)
	if err != nil || !slicesEqual(dst, []Code{42, 53394611}) {
		t.Errorf("AppendCover([42], r 0) = %v, %v", dst, err)
	}
}

func TestDistanceM(t *testing.T) {
	// One degree of latitude is R·π/180 = 111195.08 m; Tokyo Station to Osaka Station is about
	// 403 km in a straight line.
	if d := DistanceM(35, 139, 36, 139); math.Abs(d-111195.08) > 0.01 {
		t.Errorf("1° of latitude = %v m", d)
	}
	if d := DistanceM(35.681236, 139.767125, 34.702485, 135.495951); math.Abs(d-403e3) > 2e3 {
		t.Errorf("Tokyo-Osaka = %v m", d)
	}
	if d := DistanceM(35, 139, 35, 139); d != 0 {
		t.Errorf("distance to itself = %v", d)
	}
}

// TestCoverTangent checks exactness in both directions: a circle whose radius is exactly the
// distance to a cell touches that cell, so the cover holds it; 1 cm less and it does not.
func TestCoverTangent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		lat, lon := randomPoint(rng)
		lat = min(max(lat, 7.5), 65.5) // keep the target cell inside the domain
		lon = min(max(lon, 101), 179)
		d := math.Exp(rng.Float64() * math.Log(50000)) // 1 m to 50 km, log-uniform
		tlat, tlon := destination(lat, lon, d, rng.Float64()*2*math.Pi)
		c, err := Third(tlat, tlon)
		if err != nil {
			t.Fatalf("Third(%v, %v): %v", tlat, tlon, err)
		}
		r := minDistM(lat, lon, c.Bounds())
		if r == 0 {
			continue // the centre is on c's edge; radius 0 means "the cell holding the centre"
		}
		if cs, _ := Cover(lat, lon, r); !contains(cs, c) {
			t.Fatalf("Cover(%v, %v, %v) lacks %v, which it touches", lat, lon, r, c)
		}
		if r > 0.01 {
			if cs, _ := Cover(lat, lon, r-0.01); contains(cs, c) {
				t.Fatalf("Cover(%v, %v, %v) holds %v, 1 cm beyond the circle", lat, lon, r-0.01, c)
			}
		}
	}
}

func contains(cs []Code, c Code) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}
