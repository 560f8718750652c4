// Package telemetry owns the taxi fix: decoding and validating what taxi
// terminals publish on MQTT (API.md §1) and classifying a fix as dispatchable
// or not (API.md §2).
//
// # Ingest
//
// [Decode] takes one MQTT message (topic, MQTT v5 content type, payload) and
// fills a [Fix]: it checks the size ([MaxPayloadBytes]), takes the fleet and
// vehicle from the topic taxi/{fleet}/{vehicle}/state ([ParseTopic]), picks the
// JSON ([DecodeJSON]) or protobuf ([DecodeProto]) decoder by content type, and
// validates the result. Every failure is an [*Error] whose [Reason] is one of a
// fixed set of metric label values ([Reasons]) and whose message names the
// field and says what is wrong, e.g. `field "lat": 91.5 out of range [-90, 90]`.
// Only the first problem found is reported.
//
// The JSON decoder is a single-pass, allocation-free parser for this one
// schema (no maps, no reflection). Its rules, beyond API.md:
//
//   - The payload is one JSON object (RFC 8259), optionally surrounded by
//     JSON whitespace; anything after it is rejected (malformed). Nesting is
//     limited to 10000 levels, as in encoding/json.
//   - Keys match exactly (case-sensitive, after unescaping "\u006cat" is
//     "lat"). Unknown keys are ignored whatever their value, at any depth.
//   - A known key given twice is rejected (duplicate_field) rather than
//     letting the last one win silently.
//   - null counts as absent (as in protojson): optional fields keep their
//     default, a required field is then missing (missing_field).
//   - lat, lon, heading, speed and accuracy must be JSON numbers (wrong_type
//     otherwise); a number too large for its type is out_of_range.
//     heading, speed and accuracy are rounded once, directly to float32.
//   - ts must be a JSON number with an exact integral value (1732260000123,
//     1732260000123.0 and 1.732260000123e12 are the same instant; 1.5 is
//     wrong_type) in [1, 2^63-1] (out_of_range otherwise).
//   - status and class are strings; JSON escapes in them are decoded
//     ("vac\u0061nt" is "vacant"); the value must be one of the lowercase
//     names in API.md (bad_enum otherwise, listing the allowed values).
//   - Strings may hold any bytes but control characters, as in encoding/json.
//
// The protobuf decoder reads meshcast.v1.Telemetry with protowire, allocation
// free, with proto.Unmarshal's semantics (last value of a repeated scalar
// wins, a field with an unexpected wire type is an unknown field, unknown
// fields are skipped). VEHICLE_STATUS_UNSPECIFIED and unknown enum numbers
// are rejected (missing_field, bad_enum); VEHICLE_CLASS_UNSPECIFIED means
// STANDARD. The same range checks apply, and NaN or infinite values fail them.
//
// # Classification
//
// [Classifier.Classify] decides whether a fix is dispatchable, checking in
// this order, the first failing check deciding the reason:
//
//  1. ts more than MaxSkew in the future: an error (future_timestamp), not a result;
//  2. now - ts > TTL: an error (stale_timestamp), not a result: such a fix would
//     never be shown, so it is dropped and counted; the message says "ts looks
//     like seconds" when ts read as Unix seconds is within a year of now;
//  3. status is not vacant: NOT_VACANT;
//  4. outside the JIS X 0410 mesh domain, or in no service-area zone: OUTSIDE_SERVICE_AREA;
//  5. in a no-dispatch zone: IN_NO_DISPATCH_ZONE;
//  6. otherwise dispatchable.
//
// The third-order mesh is computed for every fix inside the mesh domain, so a
// removal can name the mesh the vehicle left; the zones are looked up only
// for fixes that pass checks 1-3 and lie in the mesh domain. Classify does
// not allocate unless it returns an error (or the fix lies within a degree
// outside the mesh domain, where mesh.Third builds its error).
// [Fix.ToVehicle] builds the public Vehicle riders see.
package telemetry
