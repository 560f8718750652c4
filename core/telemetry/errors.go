package telemetry

import (
	"errors"
	"fmt"
)

// Reason classifies why a message was rejected. Its values are a fixed set,
// meant as metric label values; [Reasons] lists them.
type Reason string

// The reasons a message is rejected.
const (
	ReasonOversized       Reason = "oversized"        // payload longer than the size limit
	ReasonBadTopic        Reason = "bad_topic"        // topic is not taxi/{fleet}/{vehicle}/state
	ReasonBadContentType  Reason = "bad_content_type" // content type is neither JSON nor protobuf
	ReasonMalformed       Reason = "malformed"        // not valid JSON / protobuf, or not an object
	ReasonMissingField    Reason = "missing_field"    // a required field is absent (or null / UNSPECIFIED)
	ReasonDuplicateField  Reason = "duplicate_field"  // a known JSON key appears twice
	ReasonWrongType       Reason = "wrong_type"       // a field has the wrong JSON type (or ts is not integral)
	ReasonOutOfRange      Reason = "out_of_range"     // a number outside its allowed range
	ReasonBadEnum         Reason = "bad_enum"         // status or class is not one of the allowed values
	ReasonFutureTimestamp Reason = "future_timestamp" // ts further in the future than the allowed skew
	ReasonStaleTimestamp  Reason = "stale_timestamp"  // ts older than the TTL (often: ts in seconds)

	// ReasonUnknown is what [ReasonOf] returns for an error that does not
	// come from this package. This package never produces it.
	ReasonUnknown Reason = "unknown"
)

var allReasons = [...]Reason{
	ReasonOversized, ReasonBadTopic, ReasonBadContentType, ReasonMalformed,
	ReasonMissingField, ReasonDuplicateField, ReasonWrongType, ReasonOutOfRange,
	ReasonBadEnum, ReasonFutureTimestamp, ReasonStaleTimestamp,
}

// Reasons returns every Reason this package produces, for example to
// initialise a counter per label value. The caller may keep the slice.
func Reasons() []Reason {
	r := allReasons
	return r[:]
}

// Error is a rejected message: why (Reason), which field if one is to blame,
// and a message saying exactly what is wrong.
type Error struct {
	Reason Reason
	Field  string // the JSON / protobuf field name; "" when no single field is to blame
	Msg    string
}

// Error returns `field "lat": 91.5 out of range [-90, 90]`, or just Msg when
// no field is to blame.
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return fmt.Sprintf("field %q: %s", e.Field, e.Msg)
}

// ReasonOf returns the Reason of the first [*Error] in err's chain, "" for a
// nil error and [ReasonUnknown] for any other error.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonUnknown
}

func errorf(r Reason, field, format string, args ...any) *Error {
	return &Error{Reason: r, Field: field, Msg: fmt.Sprintf(format, args...)}
}
