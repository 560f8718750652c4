package session

import (
	"fmt"
	"math"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// MaxMinIntervalMs is the largest WatchRequest.min_interval_ms accepted.
const MaxMinIntervalMs = 60000

// InvalidError is a bad WatchRequest: transports answer gRPC INVALID_ARGUMENT / HTTP 400 with
// Error().
type InvalidError struct{ Field, Msg string }

// Error returns "<field>: <msg>", e.g. "radius_m: must be between 1 and 3000, got 5000".
func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (o Options) withDefaults() Options {
	if o.DefaultRadiusM == 0 {
		o.DefaultRadiusM = 1000
	}
	if o.MaxRadiusM == 0 {
		o.MaxRadiusM = 3000
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = 256
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate fills the defaults of req (radius_m 0 becomes o.DefaultRadiusM) and checks it:
// lat a finite number in [-90, 90], lon in [-180, 180], radius_m in [1, o.MaxRadiusM], every class
// a known one other than UNSPECIFIED, the centre inside the mesh domain, min_interval_ms at most
// 60000. The error is an *InvalidError naming the first bad field. Zero options mean the defaults.
func Validate(req *meshcastv1.WatchRequest, o Options) error {
	if req == nil {
		return invalid("request", "missing")
	}
	o = o.withDefaults()
	if req.RadiusM == 0 {
		req.RadiusM = o.DefaultRadiusM
	}
	switch {
	case math.IsNaN(req.Lat) || math.IsInf(req.Lat, 0) || req.Lat < -90 || req.Lat > 90:
		return invalid("lat", "must be a number between -90 and 90, got %v", req.Lat)
	case math.IsNaN(req.Lon) || math.IsInf(req.Lon, 0) || req.Lon < -180 || req.Lon > 180:
		return invalid("lon", "must be a number between -180 and 180, got %v", req.Lon)
	case req.RadiusM > o.MaxRadiusM:
		return invalid("radius_m", "must be between 1 and %d, got %d", o.MaxRadiusM, req.RadiusM)
	}
	for _, c := range req.Classes {
		if c == meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED {
			return invalid("classes", "VEHICLE_CLASS_UNSPECIFIED is not a class (leave classes empty for all)")
		}
		if _, ok := meshcastv1.VehicleClass_name[int32(c)]; !ok {
			return invalid("classes", "unknown vehicle class %d", int32(c))
		}
	}
	if req.MinIntervalMs > MaxMinIntervalMs {
		return invalid("min_interval_ms", "must be at most %d, got %d", MaxMinIntervalMs, req.MinIntervalMs)
	}
	if _, err := mesh.Third(req.Lat, req.Lon); err != nil {
		return invalid("lat,lon", "centre (%v, %v) is outside the served area (lat 6.67 to 66.66, lon 100 to 180)", req.Lat, req.Lon)
	}
	return nil
}
