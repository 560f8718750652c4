package geofence

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: Parse never panics, fails only with a *LoadError, and a set it
// accepts classifies any point without panicking, agrees with the linear scan,
// and survives a round trip through its normalised GeoJSON.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.geojson"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range append(seeds, tokyoPath) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "{}", "[]", "null", `{"type":"FeatureCollection","features":[]}`,
		collection(area, pool(polygon(squareRing, `[[4,4],[4,6],[6,6],[6,4],[4,4]]`))),
		collection(area, pool(`{"type":"MultiPolygon","coordinates":[[`+squareRing+`]]}`)),
		collection(area, pool(polygon(`[[179,0],[-179,0],[-179,1],[179,1],[179,0]]`))),
		collection(area, pool(polygon(`[[0,0],[1e999,0],[1,1],[0,0]]`))),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || le.Reason == "" {
				t.Fatalf("Parse error %T %q is not a *LoadError with a reason", err, err)
			}
			return
		}
		zones := s.Zones()
		if len(zones) == 0 {
			t.Fatal("Parse accepted a set without zones")
		}
		h := fnv.New64a()
		h.Write(data)
		rng := rand.New(rand.NewPCG(h.Sum64(), 1))
		for _, p := range probePoints(rng, s, 64) {
			got, want := s.Classify(p[0], p[1]), s.classifyScan(p[0], p[1])
			if got != want {
				t.Fatalf("Classify(%v, %v) = %+v, scan says %+v", p[0], p[1], got, want)
			}
			if got.ServiceArea != nil && got.ServiceArea.Kind != ServiceArea ||
				got.NoDispatch != nil && got.NoDispatch.Kind != NoDispatch {
				t.Fatalf("Classify(%v, %v) returned a zone of the wrong kind: %+v", p[0], p[1], got)
			}
		}
		again, err := Parse(s.GeoJSON())
		if err != nil {
			t.Fatalf("Parse(GeoJSON()) = %v\n%s", err, s.GeoJSON())
		}
		if len(again.Zones()) != len(zones) {
			t.Fatalf("round trip has %d zones, want %d", len(again.Zones()), len(zones))
		}
	})
}
