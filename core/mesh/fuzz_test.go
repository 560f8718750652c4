package mesh

import (
	"errors"
	"math"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"5339", "533946", "53394611", "533946113", "5339461132", "10000000", "99797799",
		"", "0539", "533986", "533946110", "5339461130", "53394611322", "5339a611", "-5339", "５３３９",
		"99999999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if c != 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, %v; want 0 and an error wrapping ErrInvalid", s, c, err)
			}
			return
		}
		if c.String() != s || !c.Valid() || c.Level().Digits() != len(s) {
			t.Fatalf("Parse(%q) = %v (level %v) does not round-trip", s, c, c.Level())
		}
		if back, err := Parse(string(c.AppendTo(nil))); err != nil || back != c {
			t.Fatalf("Parse(AppendTo(%v)) = %v, %v", c, back, err)
		}
		lat, lon := c.Center()
		if back, err := FromLatLon(lat, lon, c.Level()); err != nil || back != c {
			t.Fatalf("%v centre (%v, %v) maps to %v, %v", c, lat, lon, back, err)
		}
		b := c.Bounds()
		if back, err := FromLatLon(b.MinLat, b.MinLon, c.Level()); err != nil || back != c {
			t.Fatalf("%v SW corner (%v, %v) maps to %v, %v", c, b.MinLat, b.MinLon, back, err)
		}
	})
}

func FuzzFromLatLon(f *testing.F) {
	f.Add(35.681236, 139.767125, uint8(3))
	f.Add(35.675, 139.7625, uint8(5))
	f.Add(35+2.0/3, 139.75, uint8(2))
	f.Add(20.0/3, 100.0, uint8(1))
	f.Add(200.0/3, 180.0, uint8(4))
	f.Add(math.NaN(), 139.0, uint8(3))
	f.Add(35.0, math.Inf(1), uint8(3))
	f.Add(35.0, 139.0, uint8(0))
	f.Add(35.0, 139.0, uint8(200))
	f.Fuzz(func(t *testing.T, lat, lon float64, level uint8) {
		c, err := FromLatLon(lat, lon, Level(level))
		if err != nil {
			if c != 0 || !(errors.Is(err, ErrOutOfDomain) || errors.Is(err, ErrInvalid)) {
				t.Fatalf("FromLatLon(%v, %v, %d) = %v, %v", lat, lon, level, c, err)
			}
			return
		}
		if c.Level() != Level(level) || !c.Contains(lat, lon) {
			t.Fatalf("FromLatLon(%v, %v, %d) = %v (level %v) does not contain the point", lat, lon, level, c, c.Level())
		}
		// Bounds contain the point, up to the documented snap tolerance (1e-6 unit < 4e-11°) below an edge.
		const tol = 4e-11
		b := c.Bounds()
		if !(b.MinLat-tol <= lat && lat < b.MaxLat && b.MinLon-tol <= lon && lon < b.MaxLon) {
			t.Fatalf("%v bounds %+v do not contain (%v, %v)", c, b, lat, lon)
		}
		if Level(level) == ThirdLevel {
			if c3, err := Third(lat, lon); err != nil || c3 != c {
				t.Fatalf("Third(%v, %v) = %v, %v; FromLatLon = %v", lat, lon, c3, err, c)
			}
		}
	})
}

// FuzzCover: Cover takes a rider's query (centre and radius) as input. It never panics, and on
// success it holds the centre's own cell and only distinct third-order codes.
func FuzzCover(f *testing.F) {
	f.Add(35.681236, 139.767125, 1000.0)
	f.Add(35.675, 139.7625, 0.0)
	f.Add(66.66, 179.99, 100000.0)
	f.Add(35.0, 139.0, -1.0)
	f.Add(35.0, 139.0, math.NaN())
	f.Fuzz(func(t *testing.T, lat, lon, r float64) {
		got, err := Cover(lat, lon, r)
		if err != nil {
			return
		}
		own, err := Third(lat, lon)
		if err != nil {
			t.Fatalf("Cover(%v, %v, %v) succeeded, Third failed: %v", lat, lon, r, err)
		}
		seen := make(map[Code]bool, len(got))
		for _, c := range got {
			if seen[c] || c.Level() != ThirdLevel {
				t.Fatalf("Cover(%v, %v, %v): %v duplicate or not third-order", lat, lon, r, c)
			}
			seen[c] = true
		}
		if !seen[own] {
			t.Fatalf("Cover(%v, %v, %v) lacks the centre's cell %v", lat, lon, r, own)
		}
	})
}
