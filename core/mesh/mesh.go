package mesh

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Code is a JIS X 0410 mesh code held as its decimal value: 4 digits = 1st order (40' lat × 1° lon),
// 6 = 2nd (5' × 7'30"), 8 = 3rd (30" × 45", ~1 km), 9 = half (15" × 22.5"), 10 = quarter
// (7.5" × 11.25"). The zero Code is invalid.
type Code uint64

// Level is the order of a mesh code. The zero Level is invalid.
type Level uint8

// The levels. The third-order constant is called ThirdLevel because the name Third is taken by the
// hot-path function [Third] (Go does not allow a constant and a function of the same name).
const (
	First      Level = 1 // 4 digits, 40' × 1°
	Second     Level = 2 // 6 digits, 5' × 7'30"
	ThirdLevel Level = 3 // 8 digits, 30" × 45" (~1 km)
	Half       Level = 4 // 9 digits, 15" × 22.5"
	Quarter    Level = 5 // 10 digits, 7.5" × 11.25"
)

var levelNames = [...]string{"invalid", "first", "second", "third", "half", "quarter"}

// String returns the level's name ("first" … "quarter"), or "invalid".
func (l Level) String() string {
	if l > Quarter {
		return "invalid"
	}
	return levelNames[l]
}

// Valid reports whether l is one of First … Quarter.
func (l Level) Valid() bool { return l >= First && l <= Quarter }

// Digits returns the number of decimal digits of a code at level l (0 if l is invalid).
func (l Level) Digits() int {
	if !l.Valid() {
		return 0
	}
	return levelDigits[l]
}

var levelDigits = [...]int{0, 4, 6, 8, 9, 10}

// ErrOutOfDomain is wrapped by the errors for points outside the domain (see the package doc) and
// for NaN or infinite coordinates.
var ErrOutOfDomain = errors.New("outside the JIS X 0410 mesh domain (lat [20/3, 200/3), lon [100, 180))")

// ErrInvalid is wrapped by the errors for malformed mesh codes and invalid levels.
var ErrInvalid = errors.New("invalid mesh code")

// Bounds is a cell's rectangle in degrees. The cell holds its south and west edges
// (MinLat, MinLon) but not its north and east ones (MaxLat, MaxLon).
type Bounds struct{ MinLat, MinLon, MaxLat, MaxLon float64 }

// Integer units: 1 unit = 1/28800 degree.
const (
	unitsPerDeg = 28800
	snapEps     = 1e-6 // in units: a coordinate this close to an integer unit is on it

	minLatU = 10 * 19200  // lat 20/3°
	maxLatU = 100 * 19200 // lat 200/3° (excluded)
	minLonU = 100 * unitsPerDeg
	maxLonU = 180 * unitsPerDeg // excluded
)

// Cell sizes in units, indexed by Level.
var (
	latSize = [...]int64{0, 19200, 2400, 240, 120, 60}
	lonSize = [...]int64{0, 28800, 3600, 360, 180, 90}
)

// toUnits converts degrees to units with the edge rule of the package doc. deg must be finite and
// small enough for int64 (the callers check the range first).
func toUnits(deg float64) int64 {
	x := deg * unitsPerDeg
	r := math.Round(x)
	if math.Abs(x-r) <= snapEps {
		return int64(r)
	}
	return int64(math.Floor(x))
}

// pointUnits converts a point to units and reports whether it is inside the domain.
func pointUnits(lat, lon float64) (latU, lonU int64, ok bool) {
	// Coarse check first: rejects NaN and ±Inf and keeps the conversion in int64 range.
	if !(lat > 6 && lat < 67 && lon > 99 && lon < 181) {
		return 0, 0, false
	}
	latU, lonU = toUnits(lat), toUnits(lon)
	if latU < minLatU || latU >= maxLatU || lonU < minLonU || lonU >= maxLonU {
		return 0, 0, false
	}
	return latU, lonU, true
}

func domainError(lat, lon float64) error {
	return fmt.Errorf("mesh: point (lat %v, lon %v): %w", lat, lon, ErrOutOfDomain)
}

// fromUnits returns the code at level lvl of the cell holding the point (latU, lonU), which must be
// inside the domain, lvl valid.
func fromUnits(latU, lonU int64, lvl Level) Code {
	p, a := latU/19200, latU%19200
	q, a := a/2400, a%2400
	r, a := a/240, a%240
	u, b := lonU/unitsPerDeg-100, lonU%unitsPerDeg
	v, b := b/3600, b%3600
	w, b := b/360, b%360
	c := p*100 + u
	if lvl == First {
		return Code(c)
	}
	c = c*100 + q*10 + v
	if lvl == Second {
		return Code(c)
	}
	c = c*100 + r*10 + w
	if lvl == ThirdLevel {
		return Code(c)
	}
	c = c*10 + (a/120)*2 + b/180 + 1
	if lvl == Half {
		return Code(c)
	}
	a, b = a%120, b%180
	return Code(c*10 + (a/60)*2 + b/90 + 1)
}

// thirdFromCell returns the third-order code of the cell in row (latitude units / 240) and column
// (longitude units / 360).
func thirdFromCell(row, col int64) Code {
	p, r := row/80, row%80
	u, s := col/80-100, col%80
	return Code(p*1000000 + u*10000 + (r/10)*1000 + (s/10)*100 + (r%10)*10 + s%10)
}

// FromLatLon returns the code at level of the cell holding (lat, lon) in degrees. Points outside
// the domain get an error wrapping ErrOutOfDomain; an invalid level, one wrapping ErrInvalid.
func FromLatLon(lat, lon float64, level Level) (Code, error) {
	if !level.Valid() {
		return 0, fmt.Errorf("mesh: level %d: must be 1 (first) to 5 (quarter): %w", level, ErrInvalid)
	}
	latU, lonU, ok := pointUnits(lat, lon)
	if !ok {
		return 0, domainError(lat, lon)
	}
	return fromUnits(latU, lonU, level), nil
}

// Third returns the third-order (8-digit, ~1 km) code of the cell holding (lat, lon). It is the hot
// path of classification: it does not allocate unless it returns an error.
func Third(lat, lon float64) (Code, error) {
	latU, lonU, ok := pointUnits(lat, lon)
	if !ok {
		return 0, domainError(lat, lon)
	}
	return thirdFromCell(latU/240, lonU/360), nil
}

// decode returns the south-west corner of c in units and its level, or ok false with the reason
// when c is not a valid code. The reason is a constant string (no allocation).
func decode(c Code) (latU, lonU int64, lvl Level, reason string) {
	switch {
	case c < 1000:
		return 0, 0, 0, "fewer than 4 digits"
	case c < 10000:
		p, u := int64(c/100), int64(c%100)
		if u >= 80 {
			return 0, 0, 0, "longitude code (3rd and 4th digits) must be 00-79 (lon < 180°)"
		}
		return p * 19200, (u + 100) * unitsPerDeg, First, ""
	case c < 100000:
		return 0, 0, 0, "5 digits: want 4, 6, 8, 9 or 10"
	case c < 1000000:
		latU, lonU, _, reason = decode(c / 100)
		if reason != "" {
			return 0, 0, 0, reason
		}
		q, v := int64(c/10%10), int64(c%10)
		if q > 7 || v > 7 {
			return 0, 0, 0, "second-order digits (5th and 6th) must be 0-7"
		}
		return latU + q*2400, lonU + v*3600, Second, ""
	case c < 10000000:
		return 0, 0, 0, "7 digits: want 4, 6, 8, 9 or 10"
	case c < 100000000:
		latU, lonU, _, reason = decode(c / 100)
		if reason != "" {
			return 0, 0, 0, reason
		}
		r, w := int64(c/10%10), int64(c%10)
		return latU + r*240, lonU + w*360, ThirdLevel, ""
	case c < 10000000000:
		latU, lonU, lvl, reason = decode(c / 10)
		if reason != "" {
			return 0, 0, 0, reason
		}
		d := int64(c % 10)
		if d < 1 || d > 4 {
			if lvl == ThirdLevel {
				return 0, 0, 0, "half-mesh digit (9th) must be 1-4"
			}
			return 0, 0, 0, "quarter-mesh digit (10th) must be 1-4"
		}
		lvl++
		d--
		return latU + (d/2)*latSize[lvl], lonU + (d%2)*lonSize[lvl], lvl, ""
	default:
		return 0, 0, 0, "more than 10 digits"
	}
}

// Level returns the level of c, or 0 if c is not a valid code.
func (c Code) Level() Level {
	_, _, lvl, reason := decode(c)
	if reason != "" {
		return 0
	}
	return lvl
}

// Valid reports whether c is a valid code at some level.
func (c Code) Valid() bool { return c.Level() != 0 }

// String returns the code's decimal digits.
func (c Code) String() string { return strconv.FormatUint(uint64(c), 10) }

// AppendTo appends the code's decimal digits to b. It does not allocate when b has room.
func (c Code) AppendTo(b []byte) []byte { return strconv.AppendUint(b, uint64(c), 10) }

// Bounds returns the cell's rectangle (zero Bounds if c is invalid). Each edge is the double
// nearest to the exact edge value, so FromLatLon(MinLat, MinLon, c.Level()) == c.
func (c Code) Bounds() Bounds {
	latU, lonU, lvl, reason := decode(c)
	if reason != "" {
		return Bounds{}
	}
	return Bounds{
		MinLat: float64(latU) / unitsPerDeg,
		MinLon: float64(lonU) / unitsPerDeg,
		MaxLat: float64(latU+latSize[lvl]) / unitsPerDeg,
		MaxLon: float64(lonU+lonSize[lvl]) / unitsPerDeg,
	}
}

// Center returns the centre of the cell (NaN, NaN if c is invalid).
func (c Code) Center() (lat, lon float64) {
	latU, lonU, lvl, reason := decode(c)
	if reason != "" {
		return math.NaN(), math.NaN()
	}
	return float64(2*latU+latSize[lvl]) / (2 * unitsPerDeg), float64(2*lonU+lonSize[lvl]) / (2 * unitsPerDeg)
}

// Contains reports whether the point (lat, lon) is in the cell c, with the same edge rule as
// FromLatLon (false if c is invalid or the point is outside the domain).
func (c Code) Contains(lat, lon float64) bool {
	latU, lonU, lvl, reason := decode(c)
	if reason != "" {
		return false
	}
	pLat, pLon, ok := pointUnits(lat, lon)
	return ok && pLat >= latU && pLat < latU+latSize[lvl] && pLon >= lonU && pLon < lonU+lonSize[lvl]
}

// Parent returns the code one level up (the second-order mesh of a third-order one, the third-order
// mesh of a half mesh, …), or 0 for a first-order or invalid code.
func (c Code) Parent() Code {
	switch c.Level() {
	case Second, ThirdLevel:
		return c / 100
	case Half, Quarter:
		return c / 10
	default:
		return 0
	}
}

// Neighbours returns the up to 8 cells of the same level around c, across second- and first-order
// borders, in the order SW, S, SE, W, E, NW, N, NE, omitting those outside the domain. It returns
// nil for an invalid code.
func (c Code) Neighbours() []Code {
	if !c.Valid() {
		return nil
	}
	return c.AppendNeighbours(make([]Code, 0, 8))
}

// AppendNeighbours appends the neighbours of c (see Neighbours) to dst. It does not allocate when
// dst has room for 8 more codes.
func (c Code) AppendNeighbours(dst []Code) []Code {
	latU, lonU, lvl, reason := decode(c)
	if reason != "" {
		return dst
	}
	dLat, dLon := latSize[lvl], lonSize[lvl]
	for i := int64(-1); i <= 1; i++ {
		la := latU + i*dLat
		if la < minLatU || la >= maxLatU {
			continue
		}
		for j := int64(-1); j <= 1; j++ {
			lo := lonU + j*dLon
			if (i == 0 && j == 0) || lo < minLonU || lo >= maxLonU {
				continue
			}
			dst = append(dst, fromUnits(la, lo, lvl))
		}
	}
	return dst
}

// Parse parses and validates a mesh code: 4, 6, 8, 9 or 10 ASCII digits, no leading zero, a
// longitude code (3rd and 4th digits) of 00-79, second-order digits 0-7, half and quarter digits 1-4. Errors wrap ErrInvalid and say what is wrong.
// Parse does not allocate on success.
func Parse(s string) (Code, error) {
	switch len(s) {
	case 4, 6, 8, 9, 10:
	default:
		return 0, parseError(s, "length "+strconv.Itoa(len(s))+": want 4, 6, 8, 9 or 10 digits")
	}
	if s[0] == '0' {
		return 0, parseError(s, "leading zero: the latitude code (first two digits) must be 10-99")
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, parseError(s, "non-digit at byte "+strconv.Itoa(i))
		}
		v = v*10 + uint64(d)
	}
	c := Code(v)
	if _, _, _, reason := decode(c); reason != "" {
		return 0, parseError(s, reason)
	}
	return c, nil
}

func parseError(s, reason string) error {
	const max = 32
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Errorf("mesh: parse %q: %s: %w", s, reason, ErrInvalid)
}
