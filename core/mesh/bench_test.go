package mesh

import "testing"

var sinkCode Code

func BenchmarkThird(b *testing.B) {
	b.ReportAllocs()
	lat, lon := 35.681236, 139.767125
	for i := 0; b.Loop(); i++ {
		c, err := Third(lat+float64(i&1023)*1e-4, lon)
		if err != nil {
			b.Fatal(err)
		}
		sinkCode = c
	}
}

func BenchmarkFromLatLonQuarter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		c, err := FromLatLon(35.681236, 139.767125, Quarter)
		if err != nil {
			b.Fatal(err)
		}
		sinkCode = c
	}
}

func benchCover(b *testing.B, r float64) {
	b.ReportAllocs()
	var n int
	for b.Loop() {
		cs, err := Cover(35.681236, 139.767125, r)
		if err != nil {
			b.Fatal(err)
		}
		n = len(cs)
	}
	b.ReportMetric(float64(n), "meshes")
}

func BenchmarkCover1km(b *testing.B)  { benchCover(b, 1000) }
func BenchmarkCover3km(b *testing.B)  { benchCover(b, 3000) }
func BenchmarkCover50km(b *testing.B) { benchCover(b, 50000) }

// BenchmarkAppendCover1km reuses its buffer: the steady state of a rider moving its area.
func BenchmarkAppendCover1km(b *testing.B) {
	b.ReportAllocs()
	dst := make([]Code, 0, 64)
	var err error
	for b.Loop() {
		if dst, err = AppendCover(dst[:0], 35.681236, 139.767125, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse("53394611")
		if err != nil {
			b.Fatal(err)
		}
		sinkCode = c
	}
}

func BenchmarkAppendTo(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 16)
	for b.Loop() {
		buf = Code(53394611).AppendTo(buf[:0])
	}
}
