package telemetry

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// Field numbers of meshcast.v1.Telemetry.
const (
	protoLat      = 1
	protoLon      = 2
	protoTS       = 3
	protoStatus   = 4
	protoHeading  = 5
	protoSpeed    = 6
	protoAccuracy = 7
	protoClass    = 8
)

// DecodeProto decodes a protobuf meshcast.v1.Telemetry payload into f and
// validates it. It sets every payload field of f and leaves Fleet and
// Vehicle alone. It reads the wire format directly (no allocation) with the
// semantics of proto.Unmarshal: the last value of a field wins, a known
// field with an unexpected wire type is skipped as unknown, unknown fields
// are skipped. ts 0 (absent) and VEHICLE_STATUS_UNSPECIFIED are missing
// fields; VEHICLE_CLASS_UNSPECIFIED becomes STANDARD.
func DecodeProto(p []byte, f *Fix) error {
	f.Lat, f.Lon, f.TS = 0, 0, 0
	f.Status, f.Class = 0, 0
	f.Heading, f.Speed, f.Accuracy = 0, 0, 0

	for len(p) > 0 {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return protoError(n, "")
		}
		if num > protowire.MaxValidNumber {
			return errorf(ReasonMalformed, "", "invalid protobuf: field number %d out of range", num)
		}
		p = p[n:]
		known := true
		switch {
		case typ == protowire.Fixed64Type && (num == protoLat || num == protoLon):
			v, n := protowire.ConsumeFixed64(p)
			if n < 0 {
				return protoError(n, fieldName(num))
			}
			if num == protoLat {
				f.Lat = math.Float64frombits(v)
			} else {
				f.Lon = math.Float64frombits(v)
			}
			p = p[n:]
		case typ == protowire.VarintType && (num == protoTS || num == protoStatus || num == protoClass):
			v, n := protowire.ConsumeVarint(p)
			if n < 0 {
				return protoError(n, fieldName(num))
			}
			switch num {
			case protoTS:
				f.TS = int64(v)
			case protoStatus:
				f.Status = meshcastv1.VehicleStatus(int32(v))
			default:
				f.Class = meshcastv1.VehicleClass(int32(v))
			}
			p = p[n:]
		case typ == protowire.Fixed32Type && (num == protoHeading || num == protoSpeed || num == protoAccuracy):
			v, n := protowire.ConsumeFixed32(p)
			if n < 0 {
				return protoError(n, fieldName(num))
			}
			switch num {
			case protoHeading:
				f.Heading = math.Float32frombits(v)
			case protoSpeed:
				f.Speed = math.Float32frombits(v)
			default:
				f.Accuracy = math.Float32frombits(v)
			}
			p = p[n:]
		default:
			known = false
		}
		if !known {
			if typ == protowire.EndGroupType {
				return errorf(ReasonMalformed, "", "invalid protobuf: unexpected end group (field %d)", num)
			}
			n := protowire.ConsumeFieldValue(num, typ, p)
			if n < 0 {
				return protoError(n, "")
			}
			p = p[n:]
		}
	}
	if f.TS == 0 {
		return errorf(ReasonMissingField, fieldTS, "required, got 0 or absent")
	}
	if f.Class == meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED {
		f.Class = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD
	}
	return f.Validate()
}

func fieldName(num protowire.Number) string {
	switch num {
	case protoLat:
		return fieldLat
	case protoLon:
		return fieldLon
	case protoTS:
		return fieldTS
	case protoStatus:
		return fieldStatus
	case protoHeading:
		return fieldHeading
	case protoSpeed:
		return fieldSpeed
	case protoAccuracy:
		return fieldAccuracy
	case protoClass:
		return fieldClass
	}
	return ""
}

func protoError(code int, field string) error {
	return &Error{Reason: ReasonMalformed, Field: field, Msg: "invalid protobuf: " + protowire.ParseError(code).Error()}
}
