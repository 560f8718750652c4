package geofence

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const squareRing = `[[0,0],[10,0],[10,10],[0,10],[0,0]]`

// feature returns a Feature with the given properties and geometry JSON.
func feature(props, geom string) string {
	return `{"type":"Feature","properties":` + props + `,"geometry":` + geom + `}`
}

func polygon(rings ...string) string {
	return `{"type":"Polygon","coordinates":[` + strings.Join(rings, ",") + `]}`
}

func collection(features ...string) string {
	return `{"type":"FeatureCollection","features":[` + strings.Join(features, ",\n") + `]}`
}

// area is a valid service area, so that error cases can sit at index 1.
var area = feature(`{"name":"area","kind":"service_area"}`, polygon(squareRing))

func pool(geom string) string {
	return feature(`{"name":"Shibuya pool","kind":"no_dispatch"}`, geom)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		input  string
		index  int
		zone   string // LoadError.Name
		reason string // LoadError.Reason starts with this
	}{
		// File level.
		{"syntax", "{\"type\":\"FeatureCollection\",\n\"features\":[}", -1, "",
			`invalid JSON at line 2, column 13 (near "n\",\n\"features\":[}"): invalid character '}' looking for beginning of value`},
		{"truncated", `{"type":"FeatureCollection","features":[`, -1, "", "invalid JSON at line 1, column 41"},
		{"empty input", "  \n", -1, "", "invalid JSON: empty input"},
		{"trailing data", `{"type":"FeatureCollection","features":[]} x`, -1, "",
			`invalid JSON at line 1, column 44 (near ",\"features\":[]} x"): data after the top-level value`},
		{"top-level array", `[1,2]`, -1, "", "not a FeatureCollection: top-level value is an array"},
		{"wrong type", `{"type":"Feature","features":[]}`, -1, "", `not a FeatureCollection: type is "Feature"`},
		{"missing type", `{"features":[]}`, -1, "", `not a FeatureCollection: type is missing`},
		{"missing features", `{"type":"FeatureCollection"}`, -1, "", "not a FeatureCollection: features is missing, want an array"},
		{"features not array", `{"type":"FeatureCollection","features":{}}`, -1, "", "not a FeatureCollection: features is an object, want an array"},
		{"empty collection", collection(), -1, "", "empty FeatureCollection: no features"},
		{"no service area", collection(pool(polygon(squareRing))), -1, "", "no service_area feature"},

		// Feature and properties.
		{"feature not object", collection(area, `42`), 1, "", "feature is a number, want an object"},
		{"feature wrong type", collection(area, `{"type":"Polygon","properties":{"name":"x","kind":"no_dispatch"}}`), 1, "x",
			`type is "Polygon", want "Feature"`},
		{"missing kind", collection(area, feature(`{"name":"Shibuya pool"}`, polygon(squareRing))), 1, "Shibuya pool",
			"missing properties.kind"},
		{"missing properties", collection(area, feature(`null`, polygon(squareRing))), 1, "", "missing properties.kind"},
		{"kind not string", collection(area, feature(`{"name":"Shibuya pool","kind":2}`, polygon(squareRing))), 1, "Shibuya pool",
			`properties.kind is a number, want "service_area" or "no_dispatch"`},
		{"bad kind", collection(area, feature(`{"name":"Shibuya pool","kind":"taxi_rank"}`, polygon(squareRing))), 1, "Shibuya pool",
			`properties.kind is "taxi_rank", want "service_area" or "no_dispatch"`},
		{"missing name", collection(area, feature(`{"kind":"no_dispatch"}`, polygon(squareRing))), 1, "", "missing properties.name"},
		{"name not string", collection(area, feature(`{"kind":"no_dispatch","name":["a"]}`, polygon(squareRing))), 1, "",
			"properties.name is an array, want a string"},
		{"blank name", collection(area, feature(`{"kind":"no_dispatch","name":"  "}`, polygon(squareRing))), 1, "  ",
			"properties.name is blank"},
		{"duplicate name", collection(area, pool(polygon(squareRing)), pool(polygon(squareRing))), 2, "Shibuya pool",
			"duplicate no_dispatch name, also used by feature 1"},

		// Geometry.
		{"missing geometry", collection(area, `{"type":"Feature","properties":{"name":"Shibuya pool","kind":"no_dispatch"}}`), 1, "Shibuya pool",
			"missing geometry"},
		{"null geometry", collection(area, pool(`null`)), 1, "Shibuya pool", "missing geometry"},
		{"geometry not object", collection(area, pool(`"square"`)), 1, "Shibuya pool", "geometry is a string, want an object"},
		{"unsupported geometry", collection(area, pool(`{"type":"Point","coordinates":[1,2]}`)), 1, "Shibuya pool",
			`unsupported geometry type "Point", want "Polygon" or "MultiPolygon"`},
		{"geometry without type", collection(area, pool(`{"coordinates":[]}`)), 1, "Shibuya pool",
			`unsupported geometry type missing`},
		{"coordinates missing", collection(area, pool(`{"type":"Polygon"}`)), 1, "Shibuya pool",
			"polygon coordinates are missing, want an array of rings"},
		{"polygon without rings", collection(area, pool(`{"type":"Polygon","coordinates":[]}`)), 1, "Shibuya pool",
			"polygon has no rings"},
		{"multipolygon without polygons", collection(area, pool(`{"type":"MultiPolygon","coordinates":[]}`)), 1, "Shibuya pool",
			"MultiPolygon has no polygons"},
		{"ring not array", collection(area, pool(polygon(`{}`))), 1, "Shibuya pool",
			"ring 0 of polygon is an object, want an array of positions"},
		{"short position", collection(area, pool(polygon(`[[0,0],[1],[1,1],[0,0]]`))), 1, "Shibuya pool",
			"position 1 of ring 0 of polygon: position is an array, want [lon, lat]"},
		{"string coordinate", collection(area, pool(polygon(`[[0,0],[1,"0"],[1,1],[0,0]]`))), 1, "Shibuya pool",
			"position 1 of ring 0 of polygon: element 1 is a string, want a number"},
		{"unclosed ring", collection(area, pool(polygon(`[[1,1],[2,1],[2,2],[1,2]]`))), 1, "Shibuya pool",
			"unclosed ring 0 of polygon: first position [1, 1] differs from last [1, 2]"},
		{"unclosed hole", collection(area, pool(polygon(squareRing, `[[4,4],[4,6],[6,6],[6,4]]`))), 1, "Shibuya pool",
			"unclosed ring 1 of polygon"},
		{"unclosed ring in multipolygon", collection(area, pool(`{"type":"MultiPolygon","coordinates":[[`+squareRing+`],[[[1,1],[2,1],[2,2],[1,2]]]]}`)),
			1, "Shibuya pool", "unclosed ring 0 of polygon 1"},
		{"too few positions", collection(area, pool(polygon(`[[1,1],[2,1],[1,1]]`))), 1, "Shibuya pool",
			"ring 0 of polygon has 3 positions, want at least 4"},
		{"longitude out of range", collection(area, pool(polygon(`[[0,0],[180.5,0],[10,10],[0,0]]`))), 1, "Shibuya pool",
			"position 1 of ring 0 of polygon: longitude 180.5 out of range [-180, 180]"},
		{"latitude out of range", collection(area, pool(polygon(`[[0,0],[1,0],[1,-91],[0,0]]`))), 1, "Shibuya pool",
			"position 2 of ring 0 of polygon: latitude -91 out of range [-90, 90]"},
		{"not finite", collection(area, pool(polygon(`[[0,0],[1e999,0],[1,1],[0,0]]`))), 1, "Shibuya pool",
			"position 1 of ring 0 of polygon: coordinate is not a finite number"},
		{"antimeridian", collection(area, pool(polygon(`[[179,0],[-179,0],[-179,1],[179,1],[179,0]]`))), 1, "Shibuya pool",
			"ring 0 of polygon crosses the antimeridian: positions 0 and 1 are 358 degrees of longitude apart"},
		{"zero area", collection(area, pool(polygon(`[[0,0],[1,1],[2,2],[0,0]]`))), 1, "Shibuya pool",
			"ring 0 of polygon has zero area"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.input))
			if err == nil {
				t.Fatalf("Parse succeeded with %d zones, want an error", len(s.Zones()))
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T %v is not a *LoadError", err, err)
			}
			if le.Index != tt.index || le.Name != tt.zone || !strings.HasPrefix(le.Reason, tt.reason) {
				t.Errorf("got index %d name %q reason %q\nwant index %d name %q reason starting %q",
					le.Index, le.Name, le.Reason, tt.index, tt.zone, tt.reason)
			}
		})
	}
}

func TestLoadErrorMessage(t *testing.T) {
	tests := []struct {
		err  LoadError
		want string
	}{
		{LoadError{Index: 3, Name: "Shibuya pool", Reason: "unclosed ring 0 of polygon"},
			`feature 3 ("Shibuya pool"): unclosed ring 0 of polygon`},
		{LoadError{Index: 0, Reason: "missing properties.name"}, `feature 0: missing properties.name`},
		{LoadError{Index: -1, Reason: "empty FeatureCollection: no features"}, `empty FeatureCollection: no features`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestParseJSONErrorUnwraps(t *testing.T) {
	_, err := Parse([]byte(`{"type":`))
	if !errors.Is(err, err.(*LoadError).Err) || err.(*LoadError).Err == nil {
		t.Fatalf("LoadError %v does not carry the JSON error", err)
	}
	_, err = Parse([]byte(`{"type": x}`))
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Fatalf("error %v does not unwrap to *json.SyntaxError", err)
	}
}

// TestCheckRingNaN covers NaN, which JSON cannot spell but checkRing must still
// reject.
func TestCheckRingNaN(t *testing.T) {
	nan := func() float64 { var z float64; return z / z }()
	pts := ringOf(0, 0, nan, 0, 1, 1, 0, 0)
	err := checkRing(pts, "ring 0 of polygon")
	if err == nil || err.Error() != "position 1 of ring 0 of polygon: coordinate is not a finite number" {
		t.Fatalf("checkRing(NaN) = %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	s, err := LoadFile(filepath.Join("testdata", "square_hole.geojson"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Zones()); n != 2 {
		t.Fatalf("got %d zones, want 2", n)
	}

	_, err = LoadFile(filepath.Join("testdata", "bad_unclosed.geojson"))
	var le *LoadError
	if !errors.As(err, &le) || le.Index != 1 || le.Name != "Shibuya pool" {
		t.Fatalf("LoadFile(bad_unclosed) = %v, want a LoadError for feature 1", err)
	}
	want := `geofence: load testdata/bad_unclosed.geojson: feature 1 ("Shibuya pool"): unclosed ring 0 of polygon: `
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}

	_, err = LoadFile(filepath.Join("testdata", "missing.geojson"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		input string
		zones int
	}{
		{"same name in both kinds", collection(area, feature(`{"name":"area","kind":"no_dispatch"}`, polygon(squareRing))), 2},
		{"altitude and extra properties", collection(feature(`{"name":"a","kind":"service_area","colour":"red"}`,
			polygon(`[[0,0,5],[1,0,5],[1,1,5],[0,0,5]]`))), 1},
		{"byte order mark", "\xef\xbb\xbf" + collection(area), 1},
		{"underflowing coordinate", collection(feature(`{"name":"a","kind":"service_area"}`,
			polygon(`[[0,0],[1,1e-999],[1,1],[0,0]]`))), 1},
		{"edge of the world", collection(feature(`{"name":"a","kind":"service_area"}`,
			polygon(`[[-180,-90],[0,-90],[180,-90],[180,90],[0,90],[-180,90],[-180,-90]]`))), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(s.Zones()); n != tt.zones {
				t.Fatalf("got %d zones, want %d", n, tt.zones)
			}
		})
	}
}

func TestGeoJSONNormalised(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "multi_overlap.geojson"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	norm := s.GeoJSON()
	var fc struct {
		Type     string
		Features []struct {
			Properties map[string]any
			Geometry   struct {
				Type        string
				Coordinates json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(norm, &fc); err != nil {
		t.Fatalf("GeoJSON() is not JSON: %v\n%s", err, norm)
	}
	if fc.Type != "FeatureCollection" || len(fc.Features) != 4 {
		t.Fatalf("GeoJSON() = %s", norm)
	}
	venue := fc.Features[3]
	wantProps := map[string]any{"index": 3.0, "name": "venue", "kind": "no_dispatch"}
	if len(venue.Properties) != 3 || venue.Properties["index"] != 3.0 ||
		venue.Properties["name"] != "venue" || venue.Properties["kind"] != "no_dispatch" {
		t.Errorf("properties = %v, want %v", venue.Properties, wantProps)
	}
	if got, want := string(venue.Geometry.Coordinates), `[[[1.5,1.5],[3,1.5],[3,3],[1.5,3],[1.5,1.5]]]`; got != want {
		t.Errorf("venue coordinates = %s, want %s (altitude dropped)", got, want)
	}
	if fc.Features[1].Geometry.Type != "MultiPolygon" {
		t.Errorf("pools geometry type = %s, want MultiPolygon", fc.Features[1].Geometry.Type)
	}

	// The normalised text parses to the same zones.
	again, err := Parse(norm)
	if err != nil {
		t.Fatalf("Parse(GeoJSON()) = %v", err)
	}
	if !bytes.Equal(again.GeoJSON(), norm) {
		t.Errorf("normalising twice changed the text")
	}
	for i, z := range again.Zones() {
		o := s.Zones()[i]
		if z.Name != o.Name || z.Kind != o.Kind || z.Index != o.Index ||
			z.MinLat != o.MinLat || z.MinLon != o.MinLon || z.MaxLat != o.MaxLat || z.MaxLon != o.MaxLon {
			t.Errorf("zone %d = %+v after a round trip, want %+v", i, z, o)
		}
	}

	// Callers get copies.
	norm[0] = 'X'
	s.Zones()[0] = nil
	if s.GeoJSON()[0] != '{' || s.Zones()[0] == nil {
		t.Error("GeoJSON() or Zones() exposes the Set's own storage")
	}
}
