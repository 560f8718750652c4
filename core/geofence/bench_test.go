package geofence

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// The 23-ward bounding box, roughly.
const (
	wardsMinLat, wardsMaxLat = 35.50, 35.83
	wardsMinLon, wardsMaxLon = 139.55, 139.93
)

func randomPoints(n int, minLat, minLon, maxLat, maxLon float64) [][2]float64 {
	rng := rand.New(rand.NewPCG(7, 8))
	pts := make([][2]float64, n)
	for i := range pts {
		pts[i] = [2]float64{minLat + rng.Float64()*(maxLat-minLat), minLon + rng.Float64()*(maxLon-minLon)}
	}
	return pts
}

var sink Result

func benchClassify(b *testing.B, classify func(lat, lon float64) Result, pts [][2]float64) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := pts[i%len(pts)]
		sink = classify(p[0], p[1])
		i++
	}
}

// BenchmarkClassifyTokyo: the shipped zones, random points over the 23-ward
// bounding box.
func BenchmarkClassifyTokyo(b *testing.B) {
	s := mustLoad(b, tokyoPath)
	benchClassify(b, s.Classify, randomPoints(4096, wardsMinLat, wardsMinLon, wardsMaxLat, wardsMaxLon))
}

// BenchmarkClassifyManyZones measures how Classify scales with the number of
// zones. Zones are generated in tiles the size of the 23-ward box, each a large
// service area plus small zones (50-500 m; mostly no-dispatch, some service
// areas, holes and MultiPolygons), 100 zones a tile, tiles side by side:
//
//   - tiled: n zones in n/100 tiles (zone density constant, as when adding
//     cities), points over all tiles. "grid" is Classify, "scan" the linear scan
//     of all zones it replaces.
//   - dense: n zones in one tile (density grows with n), points over it. The
//     cost grows with the zones a point actually falls in, not with n.
func BenchmarkClassifyManyZones(b *testing.B) {
	const perTile = 100
	width := wardsMaxLon - wardsMinLon
	for _, n := range []int{10, 100, 300, 1000} {
		tiles := max(n/perTile, 1)
		rng := rand.New(rand.NewPCG(9, uint64(n)))
		var features []string
		for t := range tiles {
			minLon := wardsMinLon + float64(t)*width
			features = append(features, randomFeatures(rng, min(n, perTile), wardsMinLat, minLon, wardsMaxLat, minLon+width,
				false, fmt.Sprintf("tile %d zone", t))...)
		}
		tiled, err := Parse([]byte(collection(features...)))
		if err != nil {
			b.Fatal(err)
		}
		pts := randomPoints(4096, wardsMinLat, wardsMinLon, wardsMaxLat, wardsMinLon+float64(tiles)*width)
		b.Run(fmt.Sprintf("tiled/zones=%d/grid", n), func(b *testing.B) { benchClassify(b, tiled.Classify, pts) })
		b.Run(fmt.Sprintf("tiled/zones=%d/scan", n), func(b *testing.B) { benchClassify(b, tiled.classifyScan, pts) })

		dense, err := Parse([]byte(randomSet(rng, n, wardsMinLat, wardsMinLon, wardsMaxLat, wardsMaxLon, false)))
		if err != nil {
			b.Fatal(err)
		}
		pts = randomPoints(4096, wardsMinLat, wardsMinLon, wardsMaxLat, wardsMaxLon)
		b.Run(fmt.Sprintf("dense/zones=%d/grid", n), func(b *testing.B) { benchClassify(b, dense.Classify, pts) })
	}
}

func BenchmarkParseTokyo(b *testing.B) {
	data, err := os.ReadFile(tokyoPath)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
