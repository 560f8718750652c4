package mesh

import (
	"fmt"
	"math"
	"slices"
)

// EarthRadiusM is the radius of the sphere on which Cover and DistanceM measure distances: the
// IUGG mean Earth radius. Great-circle distances on it differ from WGS84 geodesic ones by at most
// about 0.5%.
const EarthRadiusM = 6371008.8

// MaxCoverRadiusM is the largest radius Cover accepts. A 100 km circle covers about 30,000
// third-order meshes at 35°N, 60,000 at 66°N.
const MaxCoverRadiusM = 100_000

// coverSlackRad widens the cover against float rounding (1e-10 rad ≈ 0.6 mm), far above the
// rounding error of the computation (~1e-15 rad).
const coverSlackRad = 1e-10

const (
	degToRad = math.Pi / 180
	radToDeg = 180 / math.Pi
)

// hav is the haversine function, sin²(x/2).
func hav(x float64) float64 {
	s := math.Sin(x / 2)
	return s * s
}

// DistanceM returns the great-circle distance in metres between two points in degrees on the
// sphere of radius EarthRadiusM (haversine formula). It is the metric of Cover.
func DistanceM(lat1, lon1, lat2, lon2 float64) float64 {
	p1, p2 := lat1*degToRad, lat2*degToRad
	h := hav(p2-p1) + math.Cos(p1)*math.Cos(p2)*hav((lon2-lon1)*degToRad)
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(min(1, h)))
}

// Cover returns the third-order meshes whose closed rectangle intersects the circle of radiusM
// metres around (lat, lon), ordered south to north, then west to east. A radius of 0 gives the
// mesh holding the centre. Meshes outside the domain are omitted. The centre must be inside the
// domain (error wrapping ErrOutOfDomain); the radius must be in [0, MaxCoverRadiusM].
//
// Distances are great-circle distances on a sphere of radius EarthRadiusM (see DistanceM). The
// result is exact up to a widening of ~0.6 mm against float rounding: every mesh the circle touches
// is included, and a mesh at most about a millimetre beyond it may be.
func Cover(lat, lon, radiusM float64) ([]Code, error) {
	var p coverPlan
	if err := p.init(lat, lon, radiusM); err != nil {
		return nil, err
	}
	return p.appendTo(make([]Code, 0, p.count())), nil
}

// AppendCover appends the cover of the circle (see Cover) to dst and returns the extended slice.
// It does not allocate when dst has room. On error dst is returned unchanged.
func AppendCover(dst []Code, lat, lon, radiusM float64) ([]Code, error) {
	var p coverPlan
	if err := p.init(lat, lon, radiusM); err != nil {
		return dst, err
	}
	return p.appendTo(slices.Grow(dst, p.count())), nil
}

// coverPlan holds the geometry of one circle. Rows are third-order mesh rows (latitude units / 240),
// columns third-order mesh columns (longitude units / 360).
//
// For a row (a latitude band [φ0, φ1]) the longitudes of the circle's points inside the band form
// the interval [λP − w, λP + w], where w is the largest longitude half-width of the circle over the
// band. The half-width at latitude φ solves hav(ρ) = hav(φ − φP) + cos φP cos φ hav(w(φ)); it is
// unimodal in φ (a spherical cap meets each meridian in one arc) with its maximum at the latitude
// φT of the points where meridians touch the circle, sin φT = sin φP / cos ρ. So w over the band is
// w(clamp(φT, φ0, φ1)), and the meshes of the row that touch the circle are exactly those whose
// longitude range meets [λP − w, λP + w].
type coverPlan struct {
	lat, lon         float64 // centre, degrees
	latU, lonU       int64   // centre, units
	radiusZero       bool
	phiP, cosP, phiT float64
	havRho           float64
	rowLo, rowHi     int64
}

func (p *coverPlan) init(lat, lon, radiusM float64) error {
	if !(radiusM >= 0) || radiusM > MaxCoverRadiusM {
		return fmt.Errorf("mesh: cover radius %v m: must be in [0, %d]", radiusM, MaxCoverRadiusM)
	}
	latU, lonU, ok := pointUnits(lat, lon)
	if !ok {
		return fmt.Errorf("mesh: cover centre (lat %v, lon %v): %w", lat, lon, ErrOutOfDomain)
	}
	p.lat, p.lon, p.latU, p.lonU = lat, lon, latU, lonU
	if radiusM == 0 {
		p.radiusZero = true
		return nil
	}
	rho := radiusM / EarthRadiusM
	p.phiP = lat * degToRad
	var sinP float64
	sinP, p.cosP = math.Sincos(p.phiP)
	p.phiT = math.Asin(min(1, sinP/math.Cos(rho)))
	p.havRho = hav(rho)
	ext := (rho + coverSlackRad) * radToDeg
	p.rowLo = max(floorDiv(floorUnits(lat-ext), 240), minLatU/240)
	p.rowHi = min(floorDiv(floorUnits(lat+ext), 240), maxLatU/240-1)
	return nil
}

// floorUnits converts degrees to units by plain flooring (the cover is already widened).
func floorUnits(deg float64) int64 { return int64(math.Floor(deg * unitsPerDeg)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// cols returns the columns of row that touch the circle (lo > hi when none do).
func (p *coverPlan) cols(row int64) (lo, hi int64) {
	phi0 := float64(row*240) / unitsPerDeg * degToRad
	phi1 := float64((row+1)*240) / unitsPerDeg * degToRad
	phiS := min(max(p.phiT, phi0), phi1)
	var w float64 // half-width in radians
	if h := (p.havRho - hav(phiS-p.phiP)) / (p.cosP * math.Cos(phiS)); h >= 1 {
		w = math.Pi
	} else if h > 0 {
		w = 2 * math.Asin(math.Sqrt(h))
	} // else: the band is only within the slack of the circle; keep the centre's column
	ext := (w + coverSlackRad) * radToDeg
	lo = max(floorDiv(floorUnits(p.lon-ext), 360), minLonU/360)
	hi = min(floorDiv(floorUnits(p.lon+ext), 360), maxLonU/360-1)
	return lo, hi
}

// count returns the number of meshes of the cover.
func (p *coverPlan) count() int {
	if p.radiusZero {
		return 1
	}
	n := 0
	for row := p.rowLo; row <= p.rowHi; row++ {
		if lo, hi := p.cols(row); hi >= lo {
			n += int(hi - lo + 1)
		}
	}
	return n
}

func (p *coverPlan) appendTo(dst []Code) []Code {
	if p.radiusZero {
		return append(dst, thirdFromCell(p.latU/240, p.lonU/360))
	}
	for row := p.rowLo; row <= p.rowHi; row++ {
		lo, hi := p.cols(row)
		for col := lo; col <= hi; col++ {
			dst = append(dst, thirdFromCell(row, col))
		}
	}
	return dst
}
