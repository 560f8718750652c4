package hub

import (
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"unicode/utf8"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Entry is one dispatchable vehicle as the hub holds it, with its wire encodings. An Entry is
// built once per upsert event received from the bus and shared, read-only, by every rider that
// sees the vehicle: riders only add their own seq and distance around these bytes.
type Entry struct {
	// V is the decoded vehicle (DistanceM 0). Read-only.
	V *meshcastv1.Vehicle
	// ID is V.Id; Mesh the vehicle's third-order mesh; Lat, Lon, Class and ObservedAtMs copies of
	// V's fields for the hot path.
	ID           string
	Mesh         mesh.Code
	Lat, Lon     float64
	Class        meshcastv1.VehicleClass
	ObservedAtMs int64
	// LatRad and CosLat are Lat in radians and its cosine, for riders' distance computations.
	LatRad, CosLat float64
	// lx, ly: the position in metres east and north of its mesh's centre, for the fan-out's
	// circle pre-filter (see circle.go); local is set by NewEntry (an Entry built otherwise is
	// never filtered out).
	lx, ly float32
	local  bool
	// Proto is the deterministic protobuf encoding of V without distance_m (fields 1-9 in order,
	// so a rider appends field 10 to complete it).
	Proto []byte
	// JSON is the protojson encoding of V without distanceM (AppendVehicleJSON): compact, one
	// line, starting with '{' and ending with '}' (a rider splices ,"distanceM":N before the last
	// byte).
	JSON []byte

	left atomic.Pointer[Removal] // LeftArea, built on first use
}

// Removal is a removal with its wire encodings, shared by the riders it goes to.
type Removal struct {
	ID     string
	Reason meshcastv1.RemovalReason
	// Proto is the protobuf encoding of the meshcast.v1.Removal message (not of a RiderEvent).
	Proto []byte
	// JSON is the protojson encoding of the Removal message, e.g. {"id":"f/v","reason":"REMOVAL_REASON_STALE"}.
	JSON []byte
}

// encodes counts vehicle and removal encodings (Stats.Encodings): the proof that an event is
// encoded once per process, not once per rider.
var encodes atomic.Uint64

// NewEntry builds the shared entry of a vehicle: it encodes v once in each wire format. v must
// have an id and a valid third-order mesh; it is not modified (a copy with DistanceM 0 is used if
// v carries a distance). The entry keeps v: the caller must not modify it afterwards.
func NewEntry(v *meshcastv1.Vehicle) (*Entry, error) {
	if v.GetId() == "" {
		return nil, fmt.Errorf("hub: vehicle without id")
	}
	m, err := mesh.Parse(v.Mesh)
	if err != nil {
		return nil, fmt.Errorf("hub: vehicle %s: %w", v.Id, err)
	}
	if m.Level() != mesh.ThirdLevel {
		return nil, fmt.Errorf("hub: vehicle %s: mesh %s is not a third-order mesh", v.Id, v.Mesh)
	}
	if v.DistanceM != 0 {
		v = proto.CloneOf(v)
		v.DistanceM = 0
	}
	pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("hub: marshal vehicle %s: %w", v.Id, err)
	}
	js := AppendVehicleJSON(make([]byte, 0, 160+len(v.Id)+len(v.Fleet)), v)
	encodes.Add(1)
	lat0, lon0, kx, ky := meshPlane(m)
	lx, ly := (v.Lon-lon0)*kx, (v.Lat-lat0)*ky
	return &Entry{
		V: v, ID: v.Id, Mesh: m, Lat: v.Lat, Lon: v.Lon, Class: v.Class, ObservedAtMs: v.ObservedAtMs,
		LatRad: v.Lat * (math.Pi / 180), CosLat: math.Cos(v.Lat * (math.Pi / 180)),
		lx: float32(lx), ly: float32(ly), local: !math.IsNaN(lx+ly) && math.Abs(lx)+math.Abs(ly) < circleMaxM,
		Proto: pb, JSON: js,
	}, nil
}

// LeftArea returns the LEFT_AREA removal of the entry's vehicle (for riders whose circle or
// nearest-N cap the vehicle left), encoded on first use and then shared.
func (e *Entry) LeftArea() *Removal {
	if r := e.left.Load(); r != nil {
		return r
	}
	r := NewRemoval(e.ID, meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA)
	e.left.Store(r) // a racing builder stores an equal value
	return r
}

// NewRemoval encodes the removal of vehicle id for reason in both wire formats.
func NewRemoval(id string, reason meshcastv1.RemovalReason) *Removal {
	encodes.Add(1)
	var pb []byte
	pb = protowire.AppendTag(pb, 1, protowire.BytesType)
	pb = protowire.AppendString(pb, id)
	if reason != 0 {
		pb = protowire.AppendTag(pb, 2, protowire.VarintType)
		pb = protowire.AppendVarint(pb, uint64(reason))
	}
	js := make([]byte, 0, len(id)+48)
	js = append(js, `{"id":`...)
	js = AppendJSONString(js, id)
	if reason != 0 {
		js = append(js, `,"reason":`...)
		js = AppendEnum(js, int32(reason), meshcastv1.RemovalReason_name)
	}
	js = append(js, '}')
	return &Removal{ID: id, Reason: reason, Proto: pb, JSON: js}
}

// AppendEnum appends the protojson form of an enum value: its quoted name, or the number when the
// value has no name.
func AppendEnum(b []byte, v int32, names map[int32]string) []byte {
	if n, ok := names[v]; ok {
		b = append(b, '"')
		b = append(b, n...)
		return append(b, '"')
	}
	return strconv.AppendInt(b, int64(v), 10)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string (quoted and escaped). Invalid UTF-8 becomes U+FFFD.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendVehicleJSON appends the protojson encoding of v to b, compact (no spaces) and in field
// order, as protojson.Marshal would write it with its default options apart from spacing: zero
// fields omitted, int64 as a string, enums by name, NaN and infinities as strings. protojson.Unmarshal
// of the result equals v.
func AppendVehicleJSON(b []byte, v *meshcastv1.Vehicle) []byte {
	b = append(b, '{')
	n := len(b)
	sep := func(b []byte, name string) []byte {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		return append(b, '"', ':')
	}
	if v.Id != "" {
		b = AppendJSONString(sep(b, "id"), v.Id)
	}
	if v.Fleet != "" {
		b = AppendJSONString(sep(b, "fleet"), v.Fleet)
	}
	if v.Lat != 0 || math.Signbit(v.Lat) {
		b = appendJSONFloat(sep(b, "lat"), v.Lat, 64)
	}
	if v.Lon != 0 || math.Signbit(v.Lon) {
		b = appendJSONFloat(sep(b, "lon"), v.Lon, 64)
	}
	if v.HeadingDeg != 0 || math.Signbit(float64(v.HeadingDeg)) {
		b = appendJSONFloat(sep(b, "headingDeg"), float64(v.HeadingDeg), 32)
	}
	if v.SpeedKmh != 0 || math.Signbit(float64(v.SpeedKmh)) {
		b = appendJSONFloat(sep(b, "speedKmh"), float64(v.SpeedKmh), 32)
	}
	if v.Class != 0 {
		b = AppendEnum(sep(b, "class"), int32(v.Class), meshcastv1.VehicleClass_name)
	}
	if v.Mesh != "" {
		b = AppendJSONString(sep(b, "mesh"), v.Mesh)
	}
	if v.ObservedAtMs != 0 {
		b = append(sep(b, "observedAtMs"), '"')
		b = strconv.AppendInt(b, v.ObservedAtMs, 10)
		b = append(b, '"')
	}
	if v.DistanceM != 0 {
		b = strconv.AppendUint(sep(b, "distanceM"), uint64(v.DistanceM), 10)
	}
	return append(b, '}')
}

// appendJSONFloat formats a float like protojson (which follows encoding/json).
func appendJSONFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' { // clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
