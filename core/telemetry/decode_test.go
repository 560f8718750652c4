package telemetry

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

const (
	vacant     = meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT
	dispatched = meshcastv1.VehicleStatus_VEHICLE_STATUS_DISPATCHED
	occupied   = meshcastv1.VehicleStatus_VEHICLE_STATUS_OCCUPIED
	outOfSvc   = meshcastv1.VehicleStatus_VEHICLE_STATUS_OUT_OF_SERVICE
	standard   = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD
	premium    = meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM
	van        = meshcastv1.VehicleClass_VEHICLE_CLASS_VAN
	accessible = meshcastv1.VehicleClass_VEHICLE_CLASS_ACCESSIBLE
)

// goodJSON is the example payload of API.md §1.
const goodJSON = `{"lat":35.681236,"lon":139.767125,"ts":1732260000123,"status":"vacant",` +
	`"heading":90.0,"speed":12.5,"accuracy":8.0,"class":"standard"}`

var goodFix = Fix{Lat: 35.681236, Lon: 139.767125, TS: 1732260000123, Status: vacant,
	Heading: 90, Speed: 12.5, Accuracy: 8, Class: standard}

// req holds the required fields; tests append to it.
const req = `"lat":35.681236,"lon":139.767125,"ts":1732260000123,"status":"vacant"`

var minimalFix = Fix{Lat: 35.681236, Lon: 139.767125, TS: 1732260000123, Status: vacant, Class: standard}

func with(f Fix, change func(*Fix)) Fix {
	change(&f)
	return f
}

func TestDecodeJSONGood(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1)
	tests := []struct {
		name, in string
		want     Fix
	}{
		{"API.md example", goodJSON, goodFix},
		{"required fields only", `{` + req + `}`, minimalFix},
		{"whitespace everywhere", " \t\r\n{ \"lat\" : 35.681236 ,\n\"lon\":139.767125,\"ts\"\t:1732260000123,\"status\":\"vacant\" } \n", minimalFix},
		{"fields in any order", `{"status":"vacant","ts":1732260000123,"class":"van","lon":139.767125,"lat":35.681236}`,
			with(minimalFix, func(f *Fix) { f.Class = van })},
		{"unknown fields of every type ignored",
			`{"a":{"b":[1,{"c":[[],{}]},"x\"y}]"],"d":{}},` + req + `,"e":[],"f":null,"g":true,"h":false,"i":-1.5e-3,"j":"\u00e9\ud83d\ude00","k":{"lat":99}}`,
			minimalFix},
		{"unknown key differing in case", `{` + req + `,"LAT":1000,"Status":"nope"}`, minimalFix},
		{"unknown string with raw non-UTF-8 bytes", "{" + req + ",\"x\":\"\xff\xfe\"}", minimalFix},
		{"unknown value nested to the depth limit", `{` + req + `,"x":` + deep + `}`, minimalFix},
		{"escaped key and enum values", `{"l\u0061t":35.681236,"lon":139.767125,"\u0074s":1732260000123,"status":"vac\u0061nt","class":"prem\u0069um"}`,
			with(minimalFix, func(f *Fix) { f.Class = premium })},
		{"escaped slash is a plain character", `{` + req + `,"x\/y":1}`, minimalFix},
		{"null optional fields keep defaults", `{` + req + `,"heading":null,"speed":null,"accuracy":null,"class":null}`, minimalFix},
		{"ts with zero fraction", `{"lat":1,"lon":2,"ts":1732260000123.000,"status":"occupied"}`,
			Fix{Lat: 1, Lon: 2, TS: 1732260000123, Status: occupied, Class: standard}},
		{"ts with exponent", `{"lat":1,"lon":2,"ts":1.732260000123e12,"status":"dispatched"}`,
			Fix{Lat: 1, Lon: 2, TS: 1732260000123, Status: dispatched, Class: standard}},
		{"ts with exponent and trailing zeros", `{"lat":1,"lon":2,"ts":17322600001230E-1,"status":"out_of_service"}`,
			Fix{Lat: 1, Lon: 2, TS: 1732260000123, Status: outOfSvc, Class: standard}},
		{"ts max int64", `{"lat":1,"lon":2,"ts":9223372036854775807,"status":"vacant"}`,
			Fix{Lat: 1, Lon: 2, TS: math.MaxInt64, Status: vacant, Class: standard}},
		{"range limits inclusive", `{"lat":-90,"lon":180,"ts":1,"status":"vacant","heading":0,"speed":0,"accuracy":0,"class":"accessible"}`,
			Fix{Lat: -90, Lon: 180, TS: 1, Status: vacant, Class: accessible}},
		{"range limits other side", `{"lat":90,"lon":-180,"ts":1,"status":"vacant","heading":359.99}`,
			Fix{Lat: 90, Lon: -180, TS: 1, Status: vacant, Heading: 359.99, Class: standard}},
		{"negative zero and exponents", `{"lat":-0,"lon":1.3976E2,"ts":1,"status":"vacant","speed":1e1}`,
			Fix{Lat: math.Copysign(0, -1), Lon: 139.76, TS: 1, Status: vacant, Speed: 10, Class: standard}},
		{"tiny number underflows to zero", `{"lat":1e-400,"lon":0,"ts":1,"status":"vacant"}`,
			Fix{TS: 1, Status: vacant, Class: standard}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Fix{Fleet: "keep", Vehicle: "me", Heading: 7, Class: van} // leftovers from a previous fix
			if err := DecodeJSON([]byte(tt.in), &f); err != nil {
				t.Fatalf("DecodeJSON: %v", err)
			}
			want := tt.want
			want.Fleet, want.Vehicle = "keep", "me"
			if !sameFix(f, want) {
				t.Errorf("got  %+v\nwant %+v", f, want)
			}
		})
	}
}

// sameFix compares bit for bit (so -0 differs from 0).
func sameFix(a, b Fix) bool {
	return a.Fleet == b.Fleet && a.Vehicle == b.Vehicle &&
		math.Float64bits(a.Lat) == math.Float64bits(b.Lat) && math.Float64bits(a.Lon) == math.Float64bits(b.Lon) &&
		a.TS == b.TS && a.Status == b.Status && a.Class == b.Class &&
		math.Float32bits(a.Heading) == math.Float32bits(b.Heading) &&
		math.Float32bits(a.Speed) == math.Float32bits(b.Speed) &&
		math.Float32bits(a.Accuracy) == math.Float32bits(b.Accuracy)
}

type badCase struct {
	name, in string
	reason   Reason
	field    string
	msg      string // the whole Error(), or a substring when it starts with "~"
}

var badJSON = []badCase{
	// Not JSON, not an object.
	{"empty", ``, ReasonMalformed, "", "empty payload: want a JSON object"},
	{"only whitespace", " \n", ReasonMalformed, "", "empty payload: want a JSON object"},
	{"array", `[1,2]`, ReasonMalformed, "", "payload is a JSON array: want a JSON object"},
	{"string", `"lat"`, ReasonMalformed, "", "payload is a JSON string: want a JSON object"},
	{"null", `null`, ReasonMalformed, "", "payload is a JSON null: want a JSON object"},
	{"number", `12`, ReasonMalformed, "", "payload is a JSON number: want a JSON object"},
	{"byte order mark", "\xef\xbb\xbf{" + req + "}", ReasonMalformed, "", "~invalid JSON"},
	{"trailing garbage", `{"lat":1} x`, ReasonMalformed, "", "invalid JSON: data after the object at offset 10"},
	{"two objects", `{` + req + `}{}`, ReasonMalformed, "", "~data after the object"},
	{"unterminated object", `{` + req, ReasonMalformed, "", "invalid JSON: unexpected end of input, want ',' or '}' after object value"},
	{"unterminated string", `{"lat":35,"x":"abc`, ReasonMalformed, "", "~unexpected end of input, want end of string"},
	{"trailing comma", `{` + req + `,}`, ReasonMalformed, "", "~want object key"},
	{"missing colon", `{"lat" 35}`, ReasonMalformed, "", "~want ':' after object key"},
	{"single quotes", `{'lat':35}`, ReasonMalformed, "", "~unexpected '\\'' at offset 1"},
	{"unquoted key", `{lat:35}`, ReasonMalformed, "", "~want object key"},
	{"NaN literal", `{"lat":NaN,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~invalid JSON"},
	{"Infinity in unknown field", `{` + req + `,"x":Infinity}`, ReasonMalformed, "", "~invalid JSON"},
	{"leading zero", `{"lat":035,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~unexpected '3'"},
	{"plus sign", `{"lat":+1,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~invalid JSON"},
	{"bare fraction", `{"lat":.5,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~invalid JSON"},
	{"dot without digits", `{"lat":1.,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~want digit after decimal point"},
	{"exponent without digits", `{"lat":1e,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~want digit in exponent"},
	{"hex number", `{"lat":0x10,"lon":1,"ts":1,"status":"vacant"}`, ReasonMalformed, "", "~invalid JSON"},
	{"control character in string", "{" + req + ",\"x\":\"a\tb\"}", ReasonMalformed, "", "~control character"},
	{"bad escape", `{` + req + `,"x":"\x41"}`, ReasonMalformed, "", "~bad escape \\x"},
	{"short unicode escape", `{` + req + `,"x":"\u12"}`, ReasonMalformed, "", "~bad \\u escape"},
	{"bad literal", `{` + req + `,"x":nul}`, ReasonMalformed, "", "~bad literal"},
	{"unclosed nested array", `{` + req + `,"x":[1,{"a":2}}`, ReasonMalformed, "", "~want ',' or ']'"},
	{"mismatched brackets", `{` + req + `,"x":{"a":[}]}`, ReasonMalformed, "", "~invalid JSON"},
	{"nested too deep", `{` + req + `,"x":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`,
		ReasonMalformed, "", "~nested deeper than 10000"},

	// Missing and duplicate fields.
	{"missing lat", `{"lon":1,"ts":1,"status":"vacant"}`, ReasonMissingField, "lat", `field "lat": required`},
	{"missing lon", `{"lat":1,"ts":1,"status":"vacant"}`, ReasonMissingField, "lon", `field "lon": required`},
	{"missing ts", `{"lat":1,"lon":1,"status":"vacant"}`, ReasonMissingField, "ts", `field "ts": required`},
	{"missing status", `{"lat":1,"lon":1,"ts":1}`, ReasonMissingField, "status", `field "status": required`},
	{"empty object", `{}`, ReasonMissingField, "lat", `field "lat": required`},
	{"null lat", `{"lat":null,"lon":1,"ts":1,"status":"vacant"}`, ReasonMissingField, "lat", `field "lat": required, got null`},
	{"null ts", `{"lat":1,"lon":1,"ts":null,"status":"vacant"}`, ReasonMissingField, "ts", `field "ts": required, got null`},
	{"null status", `{"lat":1,"lon":1,"ts":1,"status":null}`, ReasonMissingField, "status", `field "status": required`},
	{"duplicate lat", `{` + req + `,"lat":35}`, ReasonDuplicateField, "lat", `field "lat": given twice`},
	{"duplicate through escape", `{` + req + `,"st\u0061tus":"vacant"}`, ReasonDuplicateField, "status", `field "status": given twice`},
	{"duplicate null class", `{` + req + `,"class":null,"class":"van"}`, ReasonDuplicateField, "class", `field "class": given twice`},

	// Wrong types.
	{"lat as string", `{"lat":"35.6","lon":1,"ts":1,"status":"vacant"}`, ReasonWrongType, "lat", `field "lat": got a string, want a number`},
	{"lon as boolean", `{"lat":1,"lon":true,"ts":1,"status":"vacant"}`, ReasonWrongType, "lon", `field "lon": got a boolean, want a number`},
	{"ts as string", `{"lat":1,"lon":1,"ts":"1732260000123","status":"vacant"}`, ReasonWrongType, "ts", `field "ts": got a string, want a number`},
	{"heading as object", `{` + req + `,"heading":{"deg":90}}`, ReasonWrongType, "heading", `field "heading": got a object, want a number`},
	{"speed as array", `{` + req + `,"speed":[1]}`, ReasonWrongType, "speed", `field "speed": got a array, want a number`},
	{"status as number", `{"lat":1,"lon":1,"ts":1,"status":1}`, ReasonWrongType, "status", `field "status": got a number, want a string`},
	{"class as boolean", `{` + req + `,"class":false}`, ReasonWrongType, "class", `field "class": got a boolean, want a string`},
	{"ts with a fraction", `{"lat":1,"lon":1,"ts":1732260000123.5,"status":"vacant"}`, ReasonWrongType, "ts",
		`field "ts": 1732260000123.5 is not an integer: want Unix milliseconds`},
	{"ts tiny exponent", `{"lat":1,"lon":1,"ts":1e-3,"status":"vacant"}`, ReasonWrongType, "ts", "~is not an integer"},
	{"wrong type value still has to be valid JSON", `{"lat":"35`, ReasonMalformed, "", "~want end of string"},

	// Out of range.
	{"lat too large", `{"lat":91.5,"lon":1,"ts":1,"status":"vacant"}`, ReasonOutOfRange, "lat", `field "lat": 91.5 out of range [-90, 90]`},
	{"lat too small", `{"lat":-90.000001,"lon":1,"ts":1,"status":"vacant"}`, ReasonOutOfRange, "lat", `field "lat": -90.000001 out of range [-90, 90]`},
	{"lat beyond float64", `{"lat":1e400,"lon":1,"ts":1,"status":"vacant"}`, ReasonOutOfRange, "lat", `field "lat": 1e400 out of range of a 64-bit float`},
	{"lon too large", `{"lat":1,"lon":180.5,"ts":1,"status":"vacant"}`, ReasonOutOfRange, "lon", `field "lon": 180.5 out of range [-180, 180]`},
	{"ts zero", `{"lat":1,"lon":1,"ts":0,"status":"vacant"}`, ReasonOutOfRange, "ts", "~0 out of range: want Unix milliseconds in [1, 9223372036854775807]"},
	{"ts negative", `{"lat":1,"lon":1,"ts":-1732260000123,"status":"vacant"}`, ReasonOutOfRange, "ts", "~-1732260000123 out of range"},
	{"ts beyond int64", `{"lat":1,"lon":1,"ts":9223372036854775808,"status":"vacant"}`, ReasonOutOfRange, "ts", "~out of range"},
	{"ts huge exponent", `{"lat":1,"lon":1,"ts":1e999999999999,"status":"vacant"}`, ReasonOutOfRange, "ts", "~out of range"},
	{"heading 360", `{` + req + `,"heading":360}`, ReasonOutOfRange, "heading", `field "heading": 360 out of range [0, 360)`},
	{"heading negative", `{` + req + `,"heading":-1}`, ReasonOutOfRange, "heading", `field "heading": -1 out of range [0, 360)`},
	{"speed negative", `{` + req + `,"speed":-0.5}`, ReasonOutOfRange, "speed", `field "speed": -0.5 out of range: want a finite number >= 0`},
	{"speed beyond float32", `{` + req + `,"speed":1e39}`, ReasonOutOfRange, "speed", `field "speed": 1e39 out of range of a 32-bit float`},
	{"accuracy negative", `{` + req + `,"accuracy":-1}`, ReasonOutOfRange, "accuracy", `field "accuracy": -1 out of range: want a finite number >= 0`},

	// Enums.
	{"unknown status", `{"lat":1,"lon":1,"ts":1,"status":"parked"}`, ReasonBadEnum, "status",
		`field "status": "parked" is not one of vacant, dispatched, occupied, out_of_service`},
	{"status in upper case", `{"lat":1,"lon":1,"ts":1,"status":"VACANT"}`, ReasonBadEnum, "status", "~\"VACANT\" is not one of"},
	{"protobuf status name", `{"lat":1,"lon":1,"ts":1,"status":"VEHICLE_STATUS_VACANT"}`, ReasonBadEnum, "status", "~is not one of"},
	{"status with a non-ASCII escape", `{"lat":1,"lon":1,"ts":1,"status":"vac\u00e1nt"}`, ReasonBadEnum, "status", "~is not one of"},
	{"status with a NUL escape", `{"lat":1,"lon":1,"ts":1,"status":"vacant\u0000"}`, ReasonBadEnum, "status", "~is not one of"},
	{"long escaped status", `{"lat":1,"lon":1,"ts":1,"status":"out_of_service\u0041\u0041\u0041"}`, ReasonBadEnum, "status", "~is not one of"},
	{"empty status", `{"lat":1,"lon":1,"ts":1,"status":""}`, ReasonBadEnum, "status", "~\"\" is not one of"},
	{"unknown class", `{` + req + `,"class":"limo"}`, ReasonBadEnum, "class",
		`field "class": "limo" is not one of standard, premium, van, accessible`},
}

func checkBad(t *testing.T, err error, tt badCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", tt.reason)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	if e.Reason != tt.reason || e.Field != tt.field {
		t.Errorf("reason %q field %q (%v), want reason %q field %q", e.Reason, e.Field, err, tt.reason, tt.field)
	}
	if ReasonOf(err) != tt.reason {
		t.Errorf("ReasonOf = %q, want %q", ReasonOf(err), tt.reason)
	}
	if sub, ok := strings.CutPrefix(tt.msg, "~"); ok {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	} else if err.Error() != tt.msg {
		t.Errorf("error %q\nwant       %q", err, tt.msg)
	}
}

func TestDecodeJSONBad(t *testing.T) {
	for _, tt := range badJSON {
		t.Run(tt.name, func(t *testing.T) {
			var f Fix
			checkBad(t, DecodeJSON([]byte(tt.in), &f), tt)
		})
	}
}

func TestParseTopic(t *testing.T) {
	long := strings.Repeat("v", 64)
	tests := []struct {
		topic, fleet, vehicle string
		err                   string // substring; "" for success
	}{
		{"taxi/nihon-kotsu/T_0042/state", "nihon-kotsu", "T_0042", ""},
		{"taxi/a/b/state", "a", "b", ""},
		{"taxi/" + long + "/" + long + "/state", long, long, ""},
		{"taxi/ACME/0/state", "ACME", "0", ""},
		{"", "", "", "want taxi/{fleet}/{vehicle}/state"},
		{"taxi/a/b", "", "", "want taxi/{fleet}/{vehicle}/state"},
		{"taxi/a/state", "", "", "want taxi/{fleet}/{vehicle}/state"},
		{"Taxi/a/b/state", "", "", "want taxi/{fleet}/{vehicle}/state"},
		{"/taxi/a/b/state", "", "", "want taxi/{fleet}/{vehicle}/state"},
		{"taxi/a/b/state/", "", "", "want taxi/{fleet}/{vehicle}/state"},
		{"taxi//b/state", "", "", "fleet is empty"},
		{"taxi/a//state", "", "", "vehicle is empty"},
		{"taxi/a/b/c/state", "", "", "vehicle may only hold"},
		{"taxi/a b/c/state", "", "", "fleet may only hold"},
		{"taxi/a/+/state", "", "", "vehicle may only hold"},
		{"taxi/a/#/state", "", "", "vehicle may only hold"},
		{"taxi/a/é/state", "", "", "vehicle may only hold"},
		{"taxi/a.b/c/state", "", "", "fleet may only hold"},
		{"taxi/" + long + "x/b/state", "", "", "fleet is longer than 64 characters"},
		{"taxi/a/" + long + "x/state", "", "", "vehicle is longer than 64 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			fleet, vehicle, err := ParseTopic(tt.topic)
			if tt.err == "" {
				if err != nil || fleet != tt.fleet || vehicle != tt.vehicle {
					t.Fatalf("ParseTopic = %q, %q, %v; want %q, %q, nil", fleet, vehicle, err, tt.fleet, tt.vehicle)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || ReasonOf(err) != ReasonBadTopic {
				t.Fatalf("ParseTopic error = %v (%s), want %s containing %q", err, ReasonOf(err), ReasonBadTopic, tt.err)
			}
			if fleet != "" || vehicle != "" {
				t.Errorf("ParseTopic returned %q, %q with an error", fleet, vehicle)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	const topic = "taxi/acme/car-7/state"
	pb := marshalTelemetry(t, goodTelemetry())
	tests := []struct {
		name, topic, ct string
		payload         []byte
		reason          Reason
	}{
		{"JSON without content type", topic, "", []byte(goodJSON), ""},
		{"JSON content type", topic, "application/json", []byte(goodJSON), ""},
		{"JSON with charset, any case", topic, "Application/JSON; charset=utf-8", []byte(goodJSON), ""},
		{"protobuf", topic, "application/x-protobuf", pb, ""},
		{"protobuf, other name", topic, "application/protobuf", pb, ""},
		{"protobuf sent as JSON", topic, "application/json", pb, ReasonMalformed},
		{"JSON sent as protobuf", topic, "application/x-protobuf", []byte(goodJSON), ReasonMalformed},
		{"unknown content type", topic, "text/plain", []byte(goodJSON), ReasonBadContentType},
		{"bad topic", "taxi/acme/state", "", []byte(goodJSON), ReasonBadTopic},
		{"oversized before anything else", "bad", "text/plain", make([]byte, MaxPayloadBytes+1), ReasonOversized},
		{"limit is inclusive", topic, "", []byte(`{` + req + `,"pad":"` + strings.Repeat("x", MaxPayloadBytes-len(req)-11) + `"}`), ""},
		{"validation runs", topic, "", []byte(`{"lat":91,"lon":1,"ts":1,"status":"vacant"}`), ReasonOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Fix
			err := Decode(tt.topic, tt.ct, tt.payload, &f)
			if ReasonOf(err) != tt.reason {
				t.Fatalf("Decode error %v (reason %q), want reason %q", err, ReasonOf(err), tt.reason)
			}
			if err != nil {
				return
			}
			if f.Fleet != "acme" || f.Vehicle != "car-7" || f.ID() != "acme/car-7" {
				t.Errorf("identity %q %q %q, want acme car-7 acme/car-7", f.Fleet, f.Vehicle, f.ID())
			}
			want := goodFix
			if len(tt.payload) == MaxPayloadBytes {
				want = minimalFix
			}
			want.Fleet, want.Vehicle = "acme", "car-7"
			if !sameFix(f, want) {
				t.Errorf("got  %+v\nwant %+v", f, want)
			}
		})
	}
	if n := len(tests[10].payload); n != MaxPayloadBytes {
		t.Fatalf("limit test payload is %d bytes, want %d", n, MaxPayloadBytes)
	}

	t.Run("Decoder limit", func(t *testing.T) {
		d := Decoder{MaxPayloadBytes: 100}
		var f Fix
		err := d.Decode(topic, "", []byte(goodJSON), &f)
		if ReasonOf(err) != ReasonOversized || err.Error() != fmt.Sprintf("payload of %d bytes exceeds the limit of 100", len(goodJSON)) {
			t.Fatalf("Decode = %v, want oversized", err)
		}
		d.MaxPayloadBytes = len(goodJSON)
		if err := d.Decode(topic, "", []byte(goodJSON), &f); err != nil {
			t.Fatalf("Decode at the limit: %v", err)
		}
	})
}

func TestReasonOf(t *testing.T) {
	if r := ReasonOf(nil); r != "" {
		t.Errorf("ReasonOf(nil) = %q", r)
	}
	if r := ReasonOf(errors.New("x")); r != ReasonUnknown {
		t.Errorf("ReasonOf(other) = %q, want %q", r, ReasonUnknown)
	}
	wrapped := fmt.Errorf("message 7: %w", &Error{Reason: ReasonBadEnum, Field: "class", Msg: "x"})
	if r := ReasonOf(wrapped); r != ReasonBadEnum {
		t.Errorf("ReasonOf(wrapped) = %q, want %q", r, ReasonBadEnum)
	}
	if s := (&Error{Reason: ReasonMalformed, Msg: "bad"}).Error(); s != "bad" {
		t.Errorf("Error() without field = %q", s)
	}
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if r == "" || seen[r] || r == ReasonUnknown {
			t.Errorf("Reasons() has %q twice, empty or unknown", r)
		}
		seen[r] = true
	}
	for _, tt := range badJSON {
		if !seen[tt.reason] {
			t.Errorf("case %q: reason %q not in Reasons()", tt.name, tt.reason)
		}
	}
}

func TestDecodeJSONAllocs(t *testing.T) {
	payloads := []string{goodJSON,
		`{"l\u0061t":35.681236,"lon":139.767125,"ts":1.732260000123e12,"status":"vac\u0061nt","x":{"y":[1,2,{"z":null}]}}`}
	for _, p := range payloads {
		b := []byte(p)
		var f Fix
		if n := testing.AllocsPerRun(100, func() {
			if err := Decode("taxi/a/b/state", "", b, &f); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Decode(%s) allocates %v times, want 0", p, n)
		}
	}
}
