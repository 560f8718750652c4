package geofence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/tidwall/geojson"
	"github.com/tidwall/geojson/geometry"
)

// LoadError says why a zones file was rejected. Index is the feature index
// (from 0) and Name its properties.name when known; Index is -1 for problems
// of the file as a whole (invalid JSON, not a FeatureCollection, no features,
// no service area).
type LoadError struct {
	Index  int
	Name   string
	Reason string
	Err    error // underlying error, if any (e.g. a *json.SyntaxError)
}

// Error returns `feature 3 ("Shibuya pool"): unclosed ring 0 of polygon`, or
// just the reason for file-level errors.
func (e *LoadError) Error() string {
	switch {
	case e.Index < 0:
		return e.Reason
	case e.Name == "":
		return "feature " + strconv.Itoa(e.Index) + ": " + e.Reason
	default:
		return "feature " + strconv.Itoa(e.Index) + " (" + strconv.Quote(e.Name) + "): " + e.Reason
	}
}

func (e *LoadError) Unwrap() error { return e.Err }

// LoadFile reads and parses a zones file.
func LoadFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geofence: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("geofence: load %s: %w", path, err)
	}
	return s, nil
}

// Parse validates and indexes a zones FeatureCollection (see the package
// documentation for the rules). Errors are *LoadError.
func Parse(data []byte) (*Set, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // tolerate a UTF-8 BOM
	top, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	rawFeatures, err := featureList(top)
	if err != nil {
		return nil, err
	}
	specs := make([]zoneSpec, len(rawFeatures))
	firstByName := [3]map[string]int{nil, {}, {}}
	hasServiceArea := false
	for i, raw := range rawFeatures {
		spec := &specs[i]
		if err := spec.decode(raw); err != nil {
			return nil, &LoadError{Index: i, Name: spec.name, Reason: err.Error()}
		}
		if j, dup := firstByName[spec.kind][spec.name]; dup {
			return nil, &LoadError{Index: i, Name: spec.name,
				Reason: fmt.Sprintf("duplicate %s name, also used by feature %d", spec.kind, j)}
		}
		firstByName[spec.kind][spec.name] = i
		hasServiceArea = hasServiceArea || spec.kind == ServiceArea
	}
	if !hasServiceArea {
		return nil, &LoadError{Index: -1, Reason: "no service_area feature: nothing would be dispatchable"}
	}
	norm := appendCollection(nil, specs)
	zones, err := buildZones(norm, specs)
	if err != nil {
		return nil, err
	}
	boxes := make([]box, len(zones))
	for i, z := range zones {
		boxes[i] = box{z.MinLat, z.MinLon, z.MaxLat, z.MaxLon}
	}
	return &Set{zones: zones, boxes: boxes, grid: newGrid(zones), geojson: norm}, nil
}

// decodeJSON decodes data into generic values, numbers kept as json.Number.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		end := dec.InputOffset()
		if rest := bytes.TrimLeft(data[end:], " \t\r\n"); len(rest) > 0 {
			off := int64(len(data) - len(rest))
			return nil, jsonError(data, off, "data after the top-level value", nil)
		}
		return v, nil
	}
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		// Offset counts the offending byte; point at it.
		return nil, jsonError(data, syn.Offset-1, syn.Error(), err)
	case errors.Is(err, io.EOF):
		return nil, &LoadError{Index: -1, Reason: "invalid JSON: empty input", Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, jsonError(data, int64(len(data)), "unexpected end of input", err)
	default:
		return nil, &LoadError{Index: -1, Reason: "invalid JSON: " + err.Error(), Err: err}
	}
}

// jsonError reports a JSON problem at a byte offset with its line, column and
// the surrounding text.
func jsonError(data []byte, off int64, msg string, err error) *LoadError {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	from, to := max(int(off)-16, 0), min(int(off)+16, len(data))
	return &LoadError{Index: -1, Err: err, Reason: fmt.Sprintf(
		"invalid JSON at line %d, column %d (near %q): %s", line, col, data[from:to], msg)}
}

func featureList(top any) ([]any, error) {
	obj, ok := top.(map[string]any)
	if !ok {
		return nil, &LoadError{Index: -1, Reason: "not a FeatureCollection: top-level value is " + jsonKind(top)}
	}
	if t, _ := obj["type"].(string); t != "FeatureCollection" {
		return nil, &LoadError{Index: -1, Reason: "not a FeatureCollection: type is " + describe(obj["type"])}
	}
	features, ok := obj["features"].([]any)
	switch {
	case !ok:
		return nil, &LoadError{Index: -1, Reason: "not a FeatureCollection: features is " + describe(obj["features"]) + ", want an array"}
	case len(features) == 0:
		return nil, &LoadError{Index: -1, Reason: "empty FeatureCollection: no features"}
	}
	return features, nil
}

// zoneSpec is one validated feature before it becomes a Zone.
type zoneSpec struct {
	name  string
	kind  Kind
	multi bool                 // MultiPolygon (else Polygon)
	polys [][][]geometry.Point // polygon -> ring (0 exterior) -> positions [lon, lat]
}

// decode validates one feature. The name is set as early as possible so that
// errors about the kind or geometry can still name the feature.
func (z *zoneSpec) decode(raw any) error {
	f, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf("feature is %s, want an object", jsonKind(raw))
	}
	props, _ := f["properties"].(map[string]any)
	name, nameOK := props["name"].(string)
	if nameOK {
		z.name = name
	}
	if t, _ := f["type"].(string); t != "Feature" {
		return fmt.Errorf("type is %s, want \"Feature\"", describe(f["type"]))
	}
	switch kind, ok := props["kind"].(string); {
	case props["kind"] == nil:
		return errors.New(`missing properties.kind ("service_area" or "no_dispatch")`)
	case !ok:
		return fmt.Errorf("properties.kind is %s, want \"service_area\" or \"no_dispatch\"", jsonKind(props["kind"]))
	default:
		if z.kind, ok = parseKind(kind); !ok {
			return fmt.Errorf("properties.kind is %q, want \"service_area\" or \"no_dispatch\"", kind)
		}
	}
	switch {
	case props["name"] == nil:
		return errors.New("missing properties.name")
	case !nameOK:
		return fmt.Errorf("properties.name is %s, want a string", jsonKind(props["name"]))
	case strings.TrimSpace(name) == "":
		return errors.New("properties.name is blank")
	}
	geom, ok := f["geometry"].(map[string]any)
	if !ok {
		if f["geometry"] == nil {
			return errors.New("missing geometry")
		}
		return fmt.Errorf("geometry is %s, want an object", jsonKind(f["geometry"]))
	}
	coords := geom["coordinates"]
	switch t, _ := geom["type"].(string); t {
	case "Polygon":
		poly, err := decodePolygon(coords, "polygon")
		if err != nil {
			return err
		}
		z.polys = [][][]geometry.Point{poly}
	case "MultiPolygon":
		z.multi = true
		arr, ok := coords.([]any)
		if !ok {
			return fmt.Errorf("MultiPolygon coordinates are %s, want an array of polygons", describe(coords))
		}
		if len(arr) == 0 {
			return errors.New("MultiPolygon has no polygons")
		}
		for p, c := range arr {
			poly, err := decodePolygon(c, "polygon "+strconv.Itoa(p))
			if err != nil {
				return err
			}
			z.polys = append(z.polys, poly)
		}
	default:
		return fmt.Errorf("unsupported geometry type %s, want \"Polygon\" or \"MultiPolygon\"", describe(geom["type"]))
	}
	return nil
}

// decodePolygon validates the rings of one polygon; where names it in errors
// ("polygon" or "polygon 2").
func decodePolygon(v any, where string) ([][]geometry.Point, error) {
	rings, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s coordinates are %s, want an array of rings", where, describe(v))
	}
	if len(rings) == 0 {
		return nil, fmt.Errorf("%s has no rings", where)
	}
	out := make([][]geometry.Point, len(rings))
	for r, rv := range rings {
		ring, err := decodeRing(rv, fmt.Sprintf("ring %d of %s", r, where))
		if err != nil {
			return nil, err
		}
		out[r] = ring
	}
	return out, nil
}

func decodeRing(v any, where string) ([]geometry.Point, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %s, want an array of positions", where, describe(v))
	}
	pts := make([]geometry.Point, len(arr))
	for i, pv := range arr {
		p, err := decodePosition(pv)
		if err != nil {
			return nil, fmt.Errorf("position %d of %s: %w", i, where, err)
		}
		pts[i] = p
	}
	if err := checkRing(pts, where); err != nil {
		return nil, err
	}
	return pts, nil
}

func decodePosition(v any) (geometry.Point, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return geometry.Point{}, fmt.Errorf("position is %s, want [lon, lat]", describe(v))
	}
	var xy [2]float64
	for i, e := range arr {
		n, ok := e.(json.Number)
		if !ok {
			return geometry.Point{}, fmt.Errorf("element %d is %s, want a number", i, jsonKind(e))
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return geometry.Point{}, fmt.Errorf("element %d: %w", i, err)
		}
		if i < 2 {
			xy[i] = f // ±Inf on overflow, caught by checkRing
		}
	}
	return geometry.Point{X: xy[0], Y: xy[1]}, nil
}

// checkRing applies the per-ring rules to positions given as X=lon, Y=lat.
func checkRing(pts []geometry.Point, where string) error {
	for i, p := range pts {
		switch {
		case math.IsNaN(p.X) || math.IsInf(p.X, 0) || math.IsNaN(p.Y) || math.IsInf(p.Y, 0):
			return fmt.Errorf("position %d of %s: coordinate is not a finite number", i, where)
		case p.X < -180 || p.X > 180:
			return fmt.Errorf("position %d of %s: longitude %v out of range [-180, 180]", i, where, p.X)
		case p.Y < -90 || p.Y > 90:
			return fmt.Errorf("position %d of %s: latitude %v out of range [-90, 90]", i, where, p.Y)
		}
	}
	if len(pts) < 4 {
		return fmt.Errorf("%s has %d positions, want at least 4", where, len(pts))
	}
	if pts[0] != pts[len(pts)-1] {
		return fmt.Errorf("unclosed %s: first position %v differs from last %v",
			where, lonLat(pts[0]), lonLat(pts[len(pts)-1]))
	}
	var area2 float64 // twice the signed area (shoelace)
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		if d := math.Abs(b.X - a.X); d > 180 {
			return fmt.Errorf("%s crosses the antimeridian: positions %d and %d are %v degrees of longitude apart (split the zone at ±180°)",
				where, i-1, i, d)
		}
		area2 += (a.X - b.X) * (a.Y + b.Y)
	}
	if area2 == 0 {
		return fmt.Errorf("%s has zero area", where)
	}
	return nil
}

func lonLat(p geometry.Point) string {
	return "[" + strconv.FormatFloat(p.X, 'f', -1, 64) + ", " + strconv.FormatFloat(p.Y, 'f', -1, 64) + "]"
}

// jsonKind names the JSON type of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// describe is jsonKind, with the value for strings and "missing" for absent
// members.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "missing"
	case string:
		return strconv.Quote(v)
	}
	return jsonKind(v)
}

// appendCollection writes the normalised FeatureCollection.
func appendCollection(dst []byte, specs []zoneSpec) []byte {
	dst = append(dst, `{"type":"FeatureCollection","features":[`...)
	for i := range specs {
		z := &specs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, "\n"+`{"type":"Feature","properties":{"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"name":`...)
		name, _ := json.Marshal(z.name) // a string always marshals
		dst = append(dst, name...)
		dst = append(dst, `,"kind":"`...)
		dst = append(dst, z.kind.String()...)
		dst = append(dst, `"},"geometry":{"type":`...)
		if z.multi {
			dst = append(dst, `"MultiPolygon","coordinates":[`...)
		} else {
			dst = append(dst, `"Polygon","coordinates":`...)
		}
		for p, poly := range z.polys {
			if p > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			for r, ring := range poly {
				if r > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, '[')
				for k, pt := range ring {
					if k > 0 {
						dst = append(dst, ',')
					}
					dst = append(dst, '[')
					dst = strconv.AppendFloat(dst, pt.X, 'f', -1, 64)
					dst = append(dst, ',')
					dst = strconv.AppendFloat(dst, pt.Y, 'f', -1, 64)
					dst = append(dst, ']')
				}
				dst = append(dst, ']')
			}
			dst = append(dst, ']')
		}
		if z.multi {
			dst = append(dst, ']')
		}
		dst = append(dst, "}}"...)
	}
	return append(dst, "\n]}\n"...)
}

// parseOptions for tidwall/geojson: rings of 64 or more positions get a segment
// R-tree (measured about 1.7x faster than the quadtree on the Tokyo outline); no
// child index (the Set has its own); no rectangle shortcut.
var parseOptions = &geojson.ParseOptions{
	IndexChildren:     0,
	IndexGeometry:     64,
	IndexGeometryKind: geometry.RTree,
	RequireValid:      true,
	DisableCircleType: true,
}

// buildZones parses the normalised collection with tidwall/geojson and pairs its
// polygons with the specs.
func buildZones(norm []byte, specs []zoneSpec) ([]*Zone, error) {
	obj, err := geojson.Parse(string(norm), parseOptions)
	if err != nil {
		return nil, &LoadError{Index: -1, Reason: "geojson rejected the normalised collection: " + err.Error(), Err: err}
	}
	fc, ok := obj.(*geojson.FeatureCollection)
	if !ok || len(fc.Children()) != len(specs) {
		return nil, &LoadError{Index: -1, Reason: fmt.Sprintf("geojson parsed the normalised collection as %T", obj)}
	}
	zones := make([]*Zone, len(specs))
	for i, child := range fc.Children() {
		spec := &specs[i]
		polys, err := polygonsOf(child)
		if err != nil || len(polys) != len(spec.polys) {
			return nil, &LoadError{Index: i, Name: spec.name, Reason: fmt.Sprintf("geojson parsed the geometry as %T", child)}
		}
		z := &Zone{Index: i, Name: spec.name, Kind: spec.kind, polys: polys}
		for p, poly := range polys {
			r := poly.Rect()
			if p == 0 {
				z.MinLat, z.MinLon, z.MaxLat, z.MaxLon = r.Min.Y, r.Min.X, r.Max.Y, r.Max.X
				continue
			}
			z.MinLat, z.MinLon = math.Min(z.MinLat, r.Min.Y), math.Min(z.MinLon, r.Min.X)
			z.MaxLat, z.MaxLon = math.Max(z.MaxLat, r.Max.Y), math.Max(z.MaxLon, r.Max.X)
		}
		zones[i] = z
	}
	return zones, nil
}

func polygonsOf(o geojson.Object) ([]*geometry.Poly, error) {
	f, ok := o.(*geojson.Feature)
	if !ok {
		return nil, errors.New("not a feature")
	}
	switch g := f.Base().(type) {
	case *geojson.Polygon:
		return []*geometry.Poly{g.Base()}, nil
	case *geojson.MultiPolygon:
		var polys []*geometry.Poly
		for _, c := range g.Children() {
			p, ok := c.(*geojson.Polygon)
			if !ok {
				return nil, errors.New("multipolygon member is not a polygon")
			}
			polys = append(polys, p.Base())
		}
		return polys, nil
	}
	return nil, errors.New("not a polygon")
}
