package mesh

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Well-known places, codes derived by hand (seconds of arc are rounded in the comments; the
// nearest remainder to a cell edge is ≥ 0.05" away, far from any rounding question).
//
// Tokyo Station 35.681236, 139.767125:
//
//	lat×1.5 = 53.52 → p = 53; lat − 53/1.5 = 0.347903° = 1252.45" → q = ⌊1252.45/300⌋ = 4,
//	  rem 52.45" → r = ⌊52.45/30⌋ = 1, rem 22.45" (≥ 15: north half; 22.45−15 = 7.45 < 7.5: south quarter)
//	lon − 139 → u = 39; 0.767125° = 2761.65" → v = ⌊2761.65/450⌋ = 6, rem 61.65" → w = ⌊61.65/45⌋ = 1,
//	  rem 16.65" (< 22.5: west half; ≥ 11.25: east quarter)
//	third 53 39 4 6 1 1 = 53394611, half NW = 3 → 533946113, quarter SE = 2 → 5339461132.
//
// Osaka Station 34.702485, 135.495951:
//
//	p = ⌊52.054⌋ = 52; lat − 34.6667 = 0.0358183° = 128.95" → q = 0, r = 4, rem 8.95" (south; ≥ 7.5: north)
//	u = 35; 0.495951° = 1785.42" → v = 3 (1350"), rem 435.42" → w = 9 (405"), rem 30.42" (east; 7.92 < 11.25: west)
//	third 52350349, half SE = 2, quarter NW = 3.
//
// Sapporo Clock Tower 43.062562, 141.353650:
//
//	p = ⌊64.594⌋ = 64; lat − 42.6667 = 0.395895° = 1425.22" → q = 4, rem 225.22" → r = 7, rem 15.22" (north; 0.22: south)
//	u = 41; 0.35365° = 1273.14" → v = 2, rem 373.14" → w = 8, rem 13.14" (west; ≥ 11.25: east)
//	third 64414278, half NW = 3, quarter SE = 2.
//
// Okinawa Prefectural Office, Naha 26.212401, 127.680932:
//
//	p = ⌊39.319⌋ = 39; lat − 26 = 0.212401° = 764.64" → q = 2, rem 164.64" → r = 5, rem 14.64" (south; ≥ 7.5: north)
//	u = 27; 0.680932° = 2451.36" → v = 5, rem 201.36" → w = 4, rem 21.36" (west; ≥ 11.25: east)
//	third 39272554, half SW = 1, quarter NE = 4.
var places = []struct {
	name     string
	lat, lon float64
	codes    [6]Code // by level
}{
	{"Tokyo Station", 35.681236, 139.767125, [6]Code{0, 5339, 533946, 53394611, 533946113, 5339461132}},
	{"Osaka Station", 34.702485, 135.495951, [6]Code{0, 5235, 523503, 52350349, 523503492, 5235034923}},
	{"Sapporo Clock Tower", 43.062562, 141.353650, [6]Code{0, 6441, 644142, 64414278, 644142783, 6441427832}},
	{"Naha prefectural office", 26.212401, 127.680932, [6]Code{0, 3927, 392725, 39272554, 392725541, 3927255414}},
}

func TestPlaces(t *testing.T) {
	for _, tc := range places {
		for lvl := First; lvl <= Quarter; lvl++ {
			got, err := FromLatLon(tc.lat, tc.lon, lvl)
			if err != nil || got != tc.codes[lvl] {
				t.Errorf("%s: FromLatLon(%v, %v, %v) = %v, %v; want %v", tc.name, tc.lat, tc.lon, lvl, got, err, tc.codes[lvl])
			}
			if got.Level() != lvl {
				t.Errorf("%s: %v.Level() = %v, want %v", tc.name, got, got.Level(), lvl)
			}
			if lvl > First && got.Parent() != tc.codes[lvl-1] {
				t.Errorf("%s: %v.Parent() = %v, want %v", tc.name, got, got.Parent(), tc.codes[lvl-1])
			}
		}
		if got, err := Third(tc.lat, tc.lon); err != nil || got != tc.codes[ThirdLevel] {
			t.Errorf("%s: Third = %v, %v; want %v", tc.name, got, err, tc.codes[ThirdLevel])
		}
	}
}

// Edge points derived by hand. 53394611 (Tokyo Station): p = 53 → lat 53/1.5 = 35°20'; q = 4 → +20'
// = 35°40' = 35+2/3; r = 1 → +30" = 35.675. u = 39, v = 6 → 139°45' = 139.75; w = 1 → +45" = 139.7625.
func TestEdges(t *testing.T) {
	const below = 1e-9 // degrees; far more than the 3.5e-11° snap tolerance
	tests := []struct {
		name     string
		lat, lon float64
		want     Code
	}{
		{"SW corner belongs to the cell", 35.675, 139.7625, 53394611},
		{"SW corner computed as 35+2/3+30/3600", 35 + 2.0/3 + 30.0/3600, 139 + 45.0/60 + 45.0/3600, 53394611},
		{"just south of the SW corner: the south cell", 35.675 - below, 139.7625, 53394601},
		{"just west of the SW corner: the west cell", 35.675, 139.7625 - below, 53394610},
		{"just south-west: the SW cell", 35.675 - below, 139.7625 - below, 53394600},
		{"NE corner is the SW corner of the NE cell", 35.675 + 30.0/3600, 139.7625 + 45.0/3600, 53394622},
		{"35+2/3 (second-order edge), 139.75", 35 + 2.0/3, 139.75, 53394600},
		{"35+2/3 computed as 53/1.5+20/60", 53/1.5 + 20.0/60, 139.75, 53394600},
		{"just below 35+2/3", 35 + 2.0/3 - below, 139.75, 53393690},
		// First-order borders: lat 53/1.5 = 35+1/3, lon 139.
		{"first-order SW corner", 53 / 1.5, 139, 53390000},
		{"just south of a first-order border", 53/1.5 - below, 139, 52397090},
		{"just west of a first-order border", 53 / 1.5, 139 - below, 53380709},
		{"just south-west of a first-order corner", 53/1.5 - below, 139 - below, 52387799},
		{"just below the north border of 5339", 54/1.5 - below, 140 - below, 53397799},
		// Domain corners.
		{"south-west corner of the domain", 10 / 1.5, 100, 10000000},
		{"north-east corner of the domain (p 99, u 79)", 100/1.5 - below, 180 - below, 99797799},
	}
	for _, tc := range tests {
		got, err := Third(tc.lat, tc.lon)
		if err != nil || got != tc.want {
			t.Errorf("%s: Third(%.12f, %.12f) = %v, %v; want %v", tc.name, tc.lat, tc.lon, got, err, tc.want)
		}
	}
}

// Every third-order row and column edge of the domain, as the nearest double and as computed the
// naive float way, lands on its edge: the cell is the one north/east of it.
func TestEveryEdgeSnaps(t *testing.T) {
	for row := int64(minLatU / 240); row < maxLatU/240; row++ {
		p, q, r := row/80, row%80/10, row%10
		for _, lat := range []float64{
			float64(row*240) / unitsPerDeg,
			float64(p)/1.5 + float64(q)*5/60 + float64(r)*30/3600,
			float64(p)*40/60 + float64(q)/12 + float64(r)/120,
		} {
			latU, _, ok := pointUnits(lat, 139.5)
			if !ok || latU != row*240 {
				t.Fatalf("row %d: lat %.17g → units %d (ok %v), want %d", row, lat, latU, ok, row*240)
			}
		}
	}
	for col := int64(minLonU / 360); col < maxLonU/360; col++ {
		u, v, w := col/80, col%80/10, col%10
		for _, lon := range []float64{
			float64(col*360) / unitsPerDeg,
			float64(u) + float64(v)*7.5/60 + float64(w)*45/3600,
			float64(u) + float64(v)/8 + float64(w)/80,
		} {
			_, lonU, ok := pointUnits(35.5, lon)
			if !ok || lonU != col*360 {
				t.Fatalf("col %d: lon %.17g → units %d (ok %v), want %d", col, lon, lonU, ok, col*360)
			}
		}
	}
}

func TestOutOfDomain(t *testing.T) {
	tests := []struct {
		name     string
		lat, lon float64
	}{
		{"lat 200/3 (p = 100)", 200.0 / 3, 139},
		{"lat just below 20/3 (p = 9)", 20.0/3 - 1e-9, 139},
		{"lat 0", 0, 139},
		{"lon 180", 35, 180},
		{"lon just below 100", 35, 100 - 1e-9},
		{"lon -139", 35, -139},
		{"NaN lat", math.NaN(), 139},
		{"NaN lon", 35, math.NaN()},
		{"+Inf", math.Inf(1), 139},
		{"-Inf lon", 35, math.Inf(-1)},
		{"huge", 1e300, 1e300},
	}
	for _, tc := range tests {
		for lvl := First; lvl <= Quarter; lvl++ {
			c, err := FromLatLon(tc.lat, tc.lon, lvl)
			if !errors.Is(err, ErrOutOfDomain) || c != 0 {
				t.Errorf("%s: FromLatLon(%v, %v, %v) = %v, %v; want 0, ErrOutOfDomain", tc.name, tc.lat, tc.lon, lvl, c, err)
			}
		}
		if c, err := Third(tc.lat, tc.lon); !errors.Is(err, ErrOutOfDomain) || c != 0 {
			t.Errorf("%s: Third = %v, %v; want 0, ErrOutOfDomain", tc.name, c, err)
		}
	}
	for _, lvl := range []Level{0, 6, 255} {
		if _, err := FromLatLon(35, 139, lvl); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromLatLon level %d: err = %v, want ErrInvalid", lvl, err)
		}
	}
}

func TestParse(t *testing.T) {
	good := []struct {
		s   string
		lvl Level
	}{
		{"5339", First}, {"1000", First}, {"9979", First},
		{"533946", Second}, {"533977", Second},
		{"53394611", ThirdLevel}, {"53397799", ThirdLevel},
		{"533946113", Half}, {"533946114", Half},
		{"5339461132", Quarter}, {"5339461141", Quarter},
	}
	for _, tc := range good {
		c, err := Parse(tc.s)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.s, err)
			continue
		}
		if c.String() != tc.s || c.Level() != tc.lvl || !c.Valid() {
			t.Errorf("Parse(%q) = %v (level %v, valid %v); want it back at level %v", tc.s, c, c.Level(), c.Valid(), tc.lvl)
		}
	}
	bad := []struct{ s, why string }{
		{"", "length 0"},
		{"533", "length 3"},
		{"53394", "length 5"},
		{"5339461", "length 7"},
		{"53394611322", "length 11"},
		{"0539", "leading zero"},
		{"1080", "longitude code (3rd and 4th digits) must be 00-79"},
		{"53994611", "longitude code (3rd and 4th digits) must be 00-79"},
		{"5380461132", "longitude code (3rd and 4th digits) must be 00-79"},
		{"05394611", "leading zero"},
		{"5339a611", "non-digit at byte 4"},
		{"+5339461", "non-digit at byte 0"},
		{"5339 611", "non-digit at byte 4"},
		{"533986", "second-order digits (5th and 6th) must be 0-7"},
		{"533948", "second-order digits (5th and 6th) must be 0-7"},
		{"53398611", "second-order digits (5th and 6th) must be 0-7"},
		{"533946110", "half-mesh digit (9th) must be 1-4"},
		{"533946115", "half-mesh digit (9th) must be 1-4"},
		{"5339461105", "half-mesh digit (9th) must be 1-4"},
		{"5339461130", "quarter-mesh digit (10th) must be 1-4"},
		{"5339461139", "quarter-mesh digit (10th) must be 1-4"},
		{"５３３９", "length 12"},
	}
	for _, tc := range bad {
		c, err := Parse(tc.s)
		if !errors.Is(err, ErrInvalid) || c != 0 {
			t.Errorf("Parse(%q) = %v, %v; want 0, ErrInvalid", tc.s, c, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), tc.s) {
			t.Errorf("Parse(%q) error %q does not name the input and %q", tc.s, err, tc.why)
		}
	}
}

func TestInvalidCode(t *testing.T) {
	for _, c := range []Code{0, 999, 1080, 5399, 53394, 5339461, 533986, 53398611, 533946110, 5339461130, 53394611322, math.MaxUint64} {
		if c.Valid() || c.Level() != 0 || c.Parent() != 0 || c.Neighbours() != nil || c.Bounds() != (Bounds{}) || c.Contains(35.68, 139.76) {
			t.Errorf("invalid code %d treated as valid", c)
		}
		if lat, lon := c.Center(); !math.IsNaN(lat) || !math.IsNaN(lon) {
			t.Errorf("%d.Center() = %v, %v; want NaN", c, lat, lon)
		}
	}
	if p := Code(5339).Parent(); p != 0 {
		t.Errorf("first-order Parent = %v, want 0", p)
	}
}

func TestBoundsAndCenter(t *testing.T) {
	// 53394611 by hand: lat [35.675, 35.675+30"), lon [139.7625, 139.7625+45").
	b := Code(53394611).Bounds()
	want := Bounds{MinLat: 35.675, MinLon: 139.7625, MaxLat: 35.675 + 1.0/120, MaxLon: 139.775}
	if !near(b.MinLat, want.MinLat) || !near(b.MinLon, want.MinLon) || !near(b.MaxLat, want.MaxLat) || !near(b.MaxLon, want.MaxLon) {
		t.Errorf("Bounds = %+v, want %+v", b, want)
	}
	lat, lon := Code(53394611).Center()
	if !near(lat, 35.675+1.0/240) || !near(lon, 139.76875) {
		t.Errorf("Center = %v, %v; want 35.6791667, 139.76875", lat, lon)
	}
	// First-order 5339: lat [35+1/3, 36), lon [139, 140).
	if b := Code(5339).Bounds(); !near(b.MinLat, 53/1.5) || b.MaxLat != 36 || b.MinLon != 139 || b.MaxLon != 140 {
		t.Errorf("5339 Bounds = %+v", b)
	}
	// Quarter 5339461132: SE quarter of the NW half of 53394611:
	// lat 35.675 + 15" + [0, 7.5"), lon 139.7625 + [11.25", 22.5").
	b = Code(5339461132).Bounds()
	if !near(b.MinLat, 35.675+15.0/3600) || !near(b.MaxLat, 35.675+22.5/3600) || !near(b.MinLon, 139.7625+11.25/3600) || !near(b.MaxLon, 139.7625+22.5/3600) {
		t.Errorf("5339461132 Bounds = %+v", b)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestNeighboursAcrossBorders(t *testing.T) {
	tests := []struct {
		c    Code
		want []Code // SW, S, SE, W, E, NW, N, NE
	}{
		// Inside one second-order mesh.
		{53394611, []Code{53394600, 53394601, 53394602, 53394610, 53394612, 53394620, 53394621, 53394622}},
		// SW corner of first-order 5339: neighbours in 5238, 5239, 5338.
		{53390000, []Code{52387799, 52397090, 52397091, 53380709, 53390001, 53380719, 53390010, 53390011}},
		// NE corner of 5339 (second 77, third 99): neighbours in 5340, 5439, 5440.
		{53397799, []Code{53397788, 53397789, 53407080, 53397798, 53407090, 54390708, 54390709, 54400000}},
		// Domain corner: only 3 neighbours.
		{10000000, []Code{10000001, 10000010, 10000011}},
		// Second-order and first-order levels step by their own size.
		{533946, []Code{533935, 533936, 533937, 533945, 533947, 533955, 533956, 533957}},
		{5339, []Code{5238, 5239, 5240, 5338, 5340, 5438, 5439, 5440}},
		// Quarter 5339461132 (SE quarter of the NW half) is quarter row 2, column 1 of 53394611:
		// its neighbours cross half borders.
		{5339461132, []Code{5339461113, 5339461114, 5339461123, 5339461131, 5339461141, 5339461133, 5339461134, 5339461143}},
		// Quarter 5339461144 (NE corner of 53394611): neighbours in 53394612, 53394621, 53394622.
		{5339461144, []Code{5339461141, 5339461142, 5339461231, 5339461143, 5339461233, 5339462121, 5339462122, 5339462211}},
	}
	for _, tc := range tests {
		got := tc.c.Neighbours()
		if !slicesEqual(got, tc.want) {
			t.Errorf("%v.Neighbours() = %v, want %v", tc.c, got, tc.want)
		}
	}
}

func slicesEqual(a, b []Code) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// randomPoint returns a point uniformly distributed over the domain, with a share of points placed
// exactly on quarter-mesh edges.
func randomPoint(rng *rand.Rand) (lat, lon float64) {
	lat = 20.0/3 + rng.Float64()*60
	lon = 100 + rng.Float64()*80
	switch rng.IntN(4) {
	case 0:
		lat = float64(minLatU+rng.Int64N(maxLatU-minLatU)/60*60) / unitsPerDeg
	case 1:
		lon = float64(minLonU+rng.Int64N(maxLonU-minLonU)/90*90) / unitsPerDeg
	}
	return lat, lon
}

func TestPropertyPoints(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		lat, lon := randomPoint(rng)
		var prev Code
		for lvl := First; lvl <= Quarter; lvl++ {
			c, err := FromLatLon(lat, lon, lvl)
			if err != nil {
				t.Fatalf("FromLatLon(%v, %v, %v): %v", lat, lon, lvl, err)
			}
			if c.Level() != lvl || len(c.String()) != lvl.Digits() {
				t.Fatalf("FromLatLon(%v, %v, %v) = %v at level %v", lat, lon, lvl, c, c.Level())
			}
			b := c.Bounds()
			if !(b.MinLat <= lat && lat < b.MaxLat && b.MinLon <= lon && lon < b.MaxLon) || !c.Contains(lat, lon) {
				t.Fatalf("%v bounds %+v do not contain (%v, %v)", c, b, lat, lon)
			}
			if clat, clon := c.Center(); !c.Contains(clat, clon) {
				t.Fatalf("%v centre (%v, %v) outside it", c, clat, clon)
			} else if back, err := FromLatLon(clat, clon, lvl); err != nil || back != c {
				t.Fatalf("%v centre (%v, %v) maps to %v, %v", c, clat, clon, back, err)
			}
			if back, err := FromLatLon(b.MinLat, b.MinLon, lvl); err != nil || back != c {
				t.Fatalf("%v SW corner (%v, %v) maps to %v, %v", c, b.MinLat, b.MinLon, back, err)
			}
			if lvl > First && c.Parent() != prev {
				t.Fatalf("%v.Parent() = %v, want %v", c, c.Parent(), prev)
			}
			if p, err := Parse(c.String()); err != nil || p != c {
				t.Fatalf("Parse(%q) = %v, %v", c.String(), p, err)
			}
			checkNeighbours(t, c)
			prev = c
		}
		if c, err := Third(lat, lon); err != nil || c != prev.Parent().Parent() {
			t.Fatalf("Third(%v, %v) = %v, %v; want %v", lat, lon, c, err, prev.Parent().Parent())
		}
	}
}

// checkNeighbours: distinct, not c, same level, bounds touching c's bounds, and 8 of them unless c
// is on the domain's border (then exactly those whose centres are inside the domain).
func checkNeighbours(t *testing.T, c Code) {
	t.Helper()
	ns := c.Neighbours()
	b := c.Bounds()
	h, w := b.MaxLat-b.MinLat, b.MaxLon-b.MinLon
	want := 0
	for _, dy := range []float64{-1, 0, 1} {
		for _, dx := range []float64{-1, 0, 1} {
			lat, lon := (b.MinLat+b.MaxLat)/2+dy*h, (b.MinLon+b.MaxLon)/2+dx*w
			if (dx != 0 || dy != 0) && lat > 20.0/3 && lat < 200.0/3 && lon > 100 && lon < 180 {
				want++
			}
		}
	}
	if len(ns) != want {
		t.Fatalf("%v has %d neighbours %v, want %d", c, len(ns), ns, want)
	}
	seen := map[Code]bool{c: true}
	for _, n := range ns {
		if seen[n] || n.Level() != c.Level() {
			t.Fatalf("%v neighbours %v: duplicate, self or wrong level %v", c, ns, n)
		}
		seen[n] = true
		nb := n.Bounds()
		touchLat := near(nb.MaxLat, b.MinLat) || near(nb.MinLat, b.MaxLat) || near(nb.MinLat, b.MinLat)
		touchLon := near(nb.MaxLon, b.MinLon) || near(nb.MinLon, b.MaxLon) || near(nb.MinLon, b.MinLon)
		if !touchLat || !touchLon || !near(nb.MaxLat-nb.MinLat, h) || !near(nb.MaxLon-nb.MinLon, w) {
			t.Fatalf("%v %+v: neighbour %v %+v does not touch it", c, b, n, nb)
		}
	}
}

func TestAppendNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 16)
	ns := make([]Code, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		c, err := Third(35.681236, 139.767125)
		if err != nil {
			t.Fatal(err)
		}
		buf = c.AppendTo(buf[:0])
		ns = c.AppendNeighbours(ns[:0])
		if _, err := Parse("5339461132"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Third + AppendTo + AppendNeighbours + Parse: %v allocs, want 0", allocs)
	}
	if string(buf) != "53394611" || len(ns) != 8 {
		t.Errorf("AppendTo = %q, AppendNeighbours = %v", buf, ns)
	}
}

func TestLevel(t *testing.T) {
	for lvl, want := range map[Level]string{0: "invalid", First: "first", Second: "second", ThirdLevel: "third", Half: "half", Quarter: "quarter", 9: "invalid"} {
		if lvl.String() != want {
			t.Errorf("Level(%d).String() = %q, want %q", lvl, lvl.String(), want)
		}
	}
}
