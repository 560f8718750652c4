// Package geofence owns meshcast's zones: it loads the GeoJSON FeatureCollection
// of service areas and no-dispatch zones, validates it with errors that name the
// offending feature, and classifies positions against it on the hot path.
//
// # File format
//
// A FeatureCollection whose features carry properties.kind ("service_area" or
// "no_dispatch") and a non-empty properties.name, with a Polygon or MultiPolygon
// geometry (holes allowed). Parse rejects, with the feature index, name and a
// reason (see LoadError):
//   - a top-level value that is not a FeatureCollection, or one with no features;
//   - a file without any service_area feature (nothing would ever be dispatchable,
//     which is always a mistake);
//   - a missing or unknown kind, a missing, non-string or blank name;
//   - two features of the same kind with the same name (names label logs and
//     metrics, so they must identify a zone; the same name may be used once per
//     kind, e.g. a service area and a no-dispatch zone both called "Haneda");
//   - a geometry that is missing or not a Polygon/MultiPolygon;
//   - a ring that is unclosed, has fewer than 4 positions or has zero area;
//   - a position that is not [lon, lat, ...] numbers, is not finite (JSON cannot
//     spell NaN, but 1e999 overflows to +Inf), or is out of range
//     (lon [-180,180], lat [-90,90]);
//   - a ring crossing the antimeridian: any two consecutive positions whose
//     longitudes differ by more than 180 degrees. RFC 7946 draws edges the short
//     way round, so such an edge wraps across ±180°, which the geometry library
//     does not handle (it would draw the long way). Split such zones at ±180°.
//
// Winding order is not enforced, holes are not checked to lie inside their
// exterior, and self-intersection is not detected. Positions keep their exact
// float64 values; altitude and further elements are dropped.
//
// The validated zones are written as a normalised FeatureCollection (see
// Set.GeoJSON) and that text is parsed with github.com/tidwall/geojson, whose
// polygons answer the point-in-polygon queries.
//
// # Classification
//
// Set.Classify reports the first service area and the first no-dispatch zone,
// in file order, containing the point: put the zone that should win an overlap
// first. Points exactly on an edge follow tidwall/geojson: a point on an outer
// edge or a vertex is inside the zone, and a point on a hole's edge is inside the
// zone too (only the hole's interior is excluded). This holds for both kinds, so
// a taxi on the boundary of a no-dispatch zone is not dispatchable and a taxi on
// the boundary of the service area is. Edges that are not axis-aligned are
// subject to float rounding: a point computed to lie on one may land on either
// side. Out-of-range and NaN inputs are outside every zone.
//
// Candidates come from a uniform grid over the bounding box of all zones: each
// cell lists, per kind and in file order, the zones whose bounding box overlaps
// it, so the cost of Classify depends on how many zones overlap a point's cell,
// not on how many zones the file holds (BenchmarkClassifyManyZones; a
// tidwall/rtree over the same boxes measured about 1.7x slower, as it must visit
// every candidate to find the first in file order). Classify does not allocate,
// and a Set is immutable, so it is safe for concurrent use.
package geofence

import (
	"fmt"
	"strconv"

	"github.com/tidwall/geojson/geometry"
)

// Kind is what a zone means for dispatch.
type Kind uint8

const (
	// ServiceArea is where vehicles may be dispatched.
	ServiceArea Kind = 1
	// NoDispatch is where vehicles must not be offered to riders (taxi pools,
	// airports, venues), even inside a service area.
	NoDispatch Kind = 2
)

// String returns the kind as spelled in properties.kind.
func (k Kind) String() string {
	switch k {
	case ServiceArea:
		return "service_area"
	case NoDispatch:
		return "no_dispatch"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

func parseKind(s string) (Kind, bool) {
	switch s {
	case "service_area":
		return ServiceArea, true
	case "no_dispatch":
		return NoDispatch, true
	}
	return 0, false
}

// Zone is one feature of the zones file.
type Zone struct {
	Index int    // feature index in the file, from 0
	Name  string // properties.name
	Kind  Kind   // properties.kind
	// Bounding box of the zone's exterior rings, in degrees.
	MinLat, MinLon, MaxLat, MaxLon float64

	polys []*geometry.Poly // one per polygon (one for a Polygon feature)
}

// Contains reports whether the point lies in the zone, edges included (see the
// package documentation). It does not allocate.
func (z *Zone) Contains(lat, lon float64) bool {
	if !(lat >= z.MinLat && lat <= z.MaxLat && lon >= z.MinLon && lon <= z.MaxLon) {
		return false // also rejects NaN
	}
	p := geometry.Point{X: lon, Y: lat}
	for _, poly := range z.polys {
		if poly.ContainsPoint(p) {
			return true
		}
	}
	return false
}

// String returns the zone as `no_dispatch "Shibuya pool" (feature 3)`.
func (z *Zone) String() string {
	return fmt.Sprintf("%s %q (feature %d)", z.Kind, z.Name, z.Index)
}

// Result is the classification of one point. A nil field means no zone of that
// kind contains the point.
type Result struct {
	ServiceArea *Zone
	NoDispatch  *Zone
}

// Dispatchable reports whether a vehicle at the point may be offered to riders:
// inside a service area and inside no no-dispatch zone.
func (r Result) Dispatchable() bool {
	return r.ServiceArea != nil && r.NoDispatch == nil
}

// Set is a validated, indexed zones file. It is immutable and safe for
// concurrent use.
type Set struct {
	zones   []*Zone // file order; zones[i].Index == i
	boxes   []box   // zones[i]'s bounding box, contiguous for the candidate scan
	grid    grid
	geojson []byte // normalised FeatureCollection
}

// Zones returns the zones in file order. The slice is a copy; the zones are
// shared and must not be modified.
func (s *Set) Zones() []*Zone {
	return append([]*Zone(nil), s.zones...)
}

// GeoJSON returns the normalised FeatureCollection: one feature per zone in file
// order, each with properties {"index", "name", "kind"} and its geometry with
// [lon, lat] positions exactly as parsed. The slice is a copy.
func (s *Set) GeoJSON() []byte {
	return append([]byte(nil), s.geojson...)
}

// Classify returns the first service area and the first no-dispatch zone (in
// file order) containing the point. It does not allocate and is safe for
// concurrent use.
func (s *Set) Classify(lat, lon float64) Result {
	var r Result
	sa, nd, ok := s.grid.candidates(lat, lon)
	if !ok {
		return r
	}
	for _, i := range sa {
		if s.boxes[i].contains(lat, lon) && s.zones[i].Contains(lat, lon) {
			r.ServiceArea = s.zones[i]
			break
		}
	}
	for _, i := range nd {
		if s.boxes[i].contains(lat, lon) && s.zones[i].Contains(lat, lon) {
			r.NoDispatch = s.zones[i]
			break
		}
	}
	return r
}

type box struct{ minLat, minLon, maxLat, maxLon float64 }

func (b *box) contains(lat, lon float64) bool {
	return lat >= b.minLat && lat <= b.maxLat && lon >= b.minLon && lon <= b.maxLon
}

// classifyScan is Classify without the index: a linear scan of all zones. It is
// the reference for tests and the baseline for benchmarks.
func (s *Set) classifyScan(lat, lon float64) Result {
	var r Result
	for _, z := range s.zones {
		switch {
		case z.Kind == ServiceArea && r.ServiceArea == nil:
			if z.Contains(lat, lon) {
				r.ServiceArea = z
			}
		case z.Kind == NoDispatch && r.NoDispatch == nil:
			if z.Contains(lat, lon) {
				r.NoDispatch = z
			}
		}
	}
	return r
}
