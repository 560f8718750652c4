package telemetry

import (
	"fmt"
	"math"
	"time"

	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// Classification defaults (API.md §2).
const (
	DefaultTTL     = 10 * time.Second // three missed 3 s reports
	DefaultMaxSkew = 2 * time.Second
)

// Classifier decides whether fixes are dispatchable. Its fields are read
// only; a Classifier is safe for concurrent use.
type Classifier struct {
	// Zones are the service areas and no-dispatch zones. nil means no
	// zones: every fix is then OUTSIDE_SERVICE_AREA.
	Zones *geofence.Set
	// TTL is how old a fix may be and still count; 0 means DefaultTTL.
	TTL time.Duration
	// MaxSkew is how far in the future a fix's ts may be (terminal clocks
	// drift); 0 means DefaultMaxSkew.
	MaxSkew time.Duration
}

// Result is the classification of one fix.
type Result struct {
	Dispatchable bool
	// Reason says why the fix is not dispatchable: NOT_VACANT, STALE,
	// OUTSIDE_SERVICE_AREA or IN_NO_DISPATCH_ZONE; UNSPECIFIED when it is.
	Reason meshcastv1.RemovalReason
	// Mesh is the third-order mesh of the fix, 0 outside the mesh domain.
	Mesh mesh.Code
	// The first service area and no-dispatch zone holding the fix, nil for
	// none, and both nil when the zones were not looked up (see the package
	// documentation: only for fixes that are vacant and fresh).
	ServiceArea, NoDispatch *geofence.Zone
}

// Classify classifies f at time nowMs (Unix ms), in the order of the package
// documentation. It returns an [*Error] with Reason future_timestamp when
// f.TS is more than MaxSkew after nowMs, and stale_timestamp when it is more
// than TTL before (saying so when ts looks like seconds); Result then holds
// only Mesh. It
// does not allocate unless it returns an error, or the fix lies within a
// degree outside the mesh domain (where mesh.Third builds an error).
func (c *Classifier) Classify(f *Fix, nowMs int64) (Result, error) {
	var r Result
	// Coarse domain check first (as mesh.Third does), to keep clearly
	// foreign fixes off mesh.Third's allocating error path. NaN fails it.
	if f.Lat > 6 && f.Lat < 67 && f.Lon > 99 && f.Lon < 181 {
		if m, err := mesh.Third(f.Lat, f.Lon); err == nil {
			r.Mesh = m
		}
	}

	skew := c.MaxSkew.Milliseconds()
	if c.MaxSkew == 0 {
		skew = DefaultMaxSkew.Milliseconds()
	}
	if f.TS > nowMs && f.TS-nowMs > skew {
		return r, errorf(ReasonFutureTimestamp, fieldTS, "%d is %d ms ahead of now (%d), more than the allowed skew of %d ms",
			f.TS, f.TS-nowMs, nowMs, skew)
	}
	ttl := c.TTL.Milliseconds()
	if c.TTL == 0 {
		ttl = DefaultTTL.Milliseconds()
	}
	if nowMs-f.TS > ttl {
		return r, staleError(f.TS, nowMs, ttl)
	}
	if f.Status != meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT {
		r.Reason = meshcastv1.RemovalReason_REMOVAL_REASON_NOT_VACANT
		return r, nil
	}
	if r.Mesh != 0 && c.Zones != nil {
		z := c.Zones.Classify(f.Lat, f.Lon)
		r.ServiceArea, r.NoDispatch = z.ServiceArea, z.NoDispatch
	}
	switch {
	case r.Mesh == 0 || r.ServiceArea == nil:
		r.Reason = meshcastv1.RemovalReason_REMOVAL_REASON_OUTSIDE_SERVICE_AREA
	case r.NoDispatch != nil:
		r.Reason = meshcastv1.RemovalReason_REMOVAL_REASON_IN_NO_DISPATCH_ZONE
	default:
		r.Dispatchable = true
	}
	return r, nil
}

// staleError rejects a fix older than the TTL: it would never be shown (riders
// only see fresh fixes), so it is dropped and counted instead of applied. A ts
// that is a plausible time in seconds (a common terminal bug) is named.
func staleError(ts, nowMs, ttl int64) *Error {
	e := errorf(ReasonStaleTimestamp, fieldTS, "%d is %d ms before now (%d), older than the TTL of %d ms",
		ts, nowMs-ts, nowMs, ttl)
	if looksLikeSeconds(ts, nowMs) {
		e.Msg += fmt.Sprintf(": ts looks like seconds, want Unix milliseconds (%d)", ts*1000)
	}
	return e
}

// looksLikeSeconds reports a ts that, read as Unix seconds, is within a year of
// now.
func looksLikeSeconds(ts, nowMs int64) bool {
	const year = 366 * 24 * 3600 * 1000
	return ts > 0 && ts < math.MaxInt64/1000 && ts*1000 > nowMs-year && ts*1000 < nowMs+year
}

// ToVehicle returns the public Vehicle for f in mesh m: id "fleet/vehicle",
// mesh as its 8-digit code ("" for 0), observed_at_ms = TS, distance_m 0.
//
// (It is not called Vehicle because Fix has a field of that name.)
func (f *Fix) ToVehicle(m mesh.Code) *meshcastv1.Vehicle {
	v := &meshcastv1.Vehicle{
		Id:           f.ID(),
		Fleet:        f.Fleet,
		Lat:          f.Lat,
		Lon:          f.Lon,
		HeadingDeg:   f.Heading,
		SpeedKmh:     f.Speed,
		Class:        f.Class,
		ObservedAtMs: f.TS,
	}
	if m != 0 {
		v.Mesh = m.String()
	}
	return v
}
