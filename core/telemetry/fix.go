package telemetry

import (
	"math"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// Fix is one decoded and validated position report of one taxi.
type Fix struct {
	Fleet, Vehicle string // from the MQTT topic, never the payload
	Lat, Lon       float64
	TS             int64 // Unix ms of the fix
	Status         meshcastv1.VehicleStatus
	Heading        float32 // degrees [0, 360)
	Speed          float32 // km/h >= 0
	Accuracy       float32 // metres >= 0
	// Class is never UNSPECIFIED after decoding: it defaults to STANDARD.
	Class meshcastv1.VehicleClass
}

// ID returns "fleet/vehicle", the Vehicle.id riders see.
func (f *Fix) ID() string { return f.Fleet + "/" + f.Vehicle }

// Field names as they appear in errors (the JSON keys, which are also the
// protobuf field names).
const (
	fieldLat      = "lat"
	fieldLon      = "lon"
	fieldTS       = "ts"
	fieldStatus   = "status"
	fieldHeading  = "heading"
	fieldSpeed    = "speed"
	fieldAccuracy = "accuracy"
	fieldClass    = "class"
)

const (
	statusNames = "vacant, dispatched, occupied, out_of_service"
	classNames  = "standard, premium, van, accessible"
)

// Validate checks the ranges and enums of the payload fields (not Fleet and
// Vehicle): what both decoders check after decoding. NaN and infinities fail.
// A UNSPECIFIED class is invalid here (the decoders turn it into STANDARD).
func (f *Fix) Validate() error {
	if !(f.Lat >= -90 && f.Lat <= 90) {
		return errorf(ReasonOutOfRange, fieldLat, "%v out of range [-90, 90]", f.Lat)
	}
	if !(f.Lon >= -180 && f.Lon <= 180) {
		return errorf(ReasonOutOfRange, fieldLon, "%v out of range [-180, 180]", f.Lon)
	}
	if f.TS <= 0 {
		return errorf(ReasonOutOfRange, fieldTS, "%d out of range: want Unix milliseconds > 0", f.TS)
	}
	switch f.Status {
	case meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT,
		meshcastv1.VehicleStatus_VEHICLE_STATUS_DISPATCHED,
		meshcastv1.VehicleStatus_VEHICLE_STATUS_OCCUPIED,
		meshcastv1.VehicleStatus_VEHICLE_STATUS_OUT_OF_SERVICE:
	case meshcastv1.VehicleStatus_VEHICLE_STATUS_UNSPECIFIED:
		return errorf(ReasonMissingField, fieldStatus, "required, got VEHICLE_STATUS_UNSPECIFIED")
	default:
		return errorf(ReasonBadEnum, fieldStatus, "%d is not a VehicleStatus (want %s)", int32(f.Status), statusNames)
	}
	if !(f.Heading >= 0 && f.Heading < 360) {
		return errorf(ReasonOutOfRange, fieldHeading, "%v out of range [0, 360)", f.Heading)
	}
	if !(f.Speed >= 0 && f.Speed <= math.MaxFloat32) {
		return errorf(ReasonOutOfRange, fieldSpeed, "%v out of range: want a finite number >= 0", f.Speed)
	}
	if !(f.Accuracy >= 0 && f.Accuracy <= math.MaxFloat32) {
		return errorf(ReasonOutOfRange, fieldAccuracy, "%v out of range: want a finite number >= 0", f.Accuracy)
	}
	switch f.Class {
	case meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD,
		meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM,
		meshcastv1.VehicleClass_VEHICLE_CLASS_VAN,
		meshcastv1.VehicleClass_VEHICLE_CLASS_ACCESSIBLE:
	default:
		return errorf(ReasonBadEnum, fieldClass, "%d is not a VehicleClass (want %s)", int32(f.Class), classNames)
	}
	return nil
}
