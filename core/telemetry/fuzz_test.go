package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// FuzzDecodeJSON checks that DecodeJSON never panics, that a fix it accepts
// validates, and that it agrees with a reference built on encoding/json:
// the same payloads are invalid JSON, and for valid JSON objects the same
// values are decoded and the same payloads are accepted (a rejection must
// carry one of the reasons the reference finds).
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(goodJSON))
	f.Add([]byte(`{` + req + `}`))
	f.Add([]byte(`{"l\u0061t":1,"lon":2,"ts":1.5e3,"status":"vac\u0061nt","x":[{"y":[]},"z"],"class":null}`))
	f.Add([]byte(`{"lat":1,"lon":2,"ts":12345678901234567890e-5,"status":"occupied","heading":359.9999999,"speed":3.4028235e38}`))
	for _, tt := range badJSON {
		if len(tt.in) < 1000 {
			f.Add([]byte(tt.in))
		}
	}
	f.Fuzz(diffJSON)
}

// diffJSON is the check of FuzzDecodeJSON.
func diffJSON(t *testing.T, data []byte) {
	var fix Fix
	err := DecodeJSON(data, &fix)
	checkDecoded(t, &fix, err)

	ref, reasons := referenceJSON(data)
	switch {
	case reasons == nil: // the reference accepts
		if err != nil {
			t.Fatalf("DecodeJSON(%q) = %v; encoding/json accepts it as %+v", data, err, ref)
		}
		if !sameFix(fix, ref) {
			t.Fatalf("DecodeJSON(%q) = %+v; encoding/json gives %+v", data, fix, ref)
		}
	case err == nil:
		t.Fatalf("DecodeJSON(%q) accepts %+v; the reference rejects it: %v", data, fix, reasons)
	case !reasons[ReasonOf(err)]:
		t.Fatalf("DecodeJSON(%q) = %v (%s); the reference finds only %v", data, err, ReasonOf(err), reasons)
	}
}

// TestDecodeJSONMatchesReference runs the check of FuzzDecodeJSON on the
// table cases, including those too large for the fuzz seeds (the nesting
// limit, which must be encoding/json's).
func TestDecodeJSONMatchesReference(t *testing.T) {
	for _, tt := range badJSON {
		diffJSON(t, []byte(tt.in))
	}
	deep := func(n int) []byte {
		return []byte(`{` + req + `,"x":` + strings.Repeat(`[{"a":`, n/2) + `0` + strings.Repeat(`}]`, n/2) + `}`)
	}
	arrays := func(n int) []byte {
		return []byte(`{` + req + `,"x":` + strings.Repeat(`[`, n) + strings.Repeat(`]`, n) + `}`)
	}
	for _, tt := range []struct {
		in    []byte
		depth int
	}{{deep(maxJSONDepth - 2), maxJSONDepth - 1}, {deep(maxJSONDepth), maxJSONDepth + 1},
		{arrays(maxJSONDepth - 1), maxJSONDepth}, {arrays(maxJSONDepth), maxJSONDepth + 1}} {
		diffJSON(t, tt.in)
		if ok := json.Valid(tt.in); ok != (tt.depth <= maxJSONDepth) {
			t.Errorf("json.Valid at depth %d = %v", tt.depth, ok)
		}
	}
}

// checkDecoded checks what every decoder result must satisfy.
func checkDecoded(t *testing.T, fix *Fix, err error) {
	t.Helper()
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T %v is not an *Error", err, err)
		}
		known := false
		for _, r := range Reasons() {
			known = known || r == e.Reason
		}
		if !known || e.Msg == "" {
			t.Fatalf("error %q has reason %q, not in Reasons(), or no message", err, e.Reason)
		}
		return
	}
	if verr := fix.Validate(); verr != nil {
		t.Fatalf("decoded fix %+v does not validate: %v", fix, verr)
	}
	if fix.Class == meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED || fix.Status == meshcastv1.VehicleStatus_VEHICLE_STATUS_UNSPECIFIED {
		t.Fatalf("decoded fix %+v has an UNSPECIFIED enum", fix)
	}
}

// referenceJSON decodes data with encoding/json and checks it by the rules
// of the package documentation, written as plainly as possible. It returns
// the fix, or the set of reasons for which the payload is to be rejected.
func referenceJSON(data []byte) (Fix, map[Reason]bool) {
	bad := map[Reason]bool{}
	if !json.Valid(data) {
		bad[ReasonMalformed] = true
		// A decoder may stop at the first error of a value of the wrong
		// type, or at a duplicate, before it sees the syntax error.
		bad[ReasonWrongType], bad[ReasonDuplicateField] = true, true
		bad[ReasonMissingField], bad[ReasonOutOfRange], bad[ReasonBadEnum] = true, true, true
		return Fix{}, bad
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		bad[ReasonMalformed] = true // valid JSON, but not an object
		return Fix{}, bad
	}
	if hasDuplicateKnownKey(data) {
		bad[ReasonDuplicateField] = true
		// Fields before the duplicate may fail first.
		bad[ReasonWrongType], bad[ReasonMissingField], bad[ReasonOutOfRange], bad[ReasonBadEnum] = true, true, true, true
	}
	var f Fix
	present := map[string]bool{}
	for key, raw := range obj {
		if string(raw) == "null" {
			continue
		}
		isNumber := raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9'
		switch key {
		case "lat", "lon":
			present[key] = true
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil {
				bad[map[bool]Reason{true: ReasonOutOfRange, false: ReasonWrongType}[isNumber]] = true
			}
			if key == "lat" {
				f.Lat = v
			} else {
				f.Lon = v
			}
		case "heading", "speed", "accuracy":
			var v float32
			if err := json.Unmarshal(raw, &v); err != nil {
				bad[map[bool]Reason{true: ReasonOutOfRange, false: ReasonWrongType}[isNumber]] = true
			}
			switch key {
			case "heading":
				f.Heading = v
			case "speed":
				f.Speed = v
			default:
				f.Accuracy = v
			}
		case "ts":
			present[key] = true
			if !isNumber {
				bad[ReasonWrongType] = true
				break
			}
			ts, r := referenceTS(string(raw))
			if r != "" {
				bad[r] = true
			}
			f.TS = ts
		case "status", "class":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				bad[ReasonWrongType] = true
				break
			}
			statuses := map[string]meshcastv1.VehicleStatus{"vacant": vacant, "dispatched": dispatched, "occupied": occupied, "out_of_service": outOfSvc}
			classes := map[string]meshcastv1.VehicleClass{"standard": standard, "premium": premium, "van": van, "accessible": accessible}
			if key == "status" {
				present[key] = true
				if f.Status = statuses[s]; f.Status == 0 {
					bad[ReasonBadEnum] = true
				}
			} else if f.Class = classes[s]; f.Class == 0 {
				bad[ReasonBadEnum] = true
			}
		}
	}
	for _, k := range []string{"lat", "lon", "ts", "status"} {
		if !present[k] {
			bad[ReasonMissingField] = true
		}
	}
	if f.Class == 0 {
		f.Class = standard
	}
	if !(f.Lat >= -90 && f.Lat <= 90 && f.Lon >= -180 && f.Lon <= 180) ||
		present["ts"] && f.TS <= 0 ||
		!(f.Heading >= 0 && f.Heading < 360) || f.Speed < 0 || f.Accuracy < 0 {
		bad[ReasonOutOfRange] = true
	}
	if len(bad) > 0 {
		return Fix{}, bad
	}
	return f, nil
}

// referenceTS evaluates a JSON number exactly with math/big; reason is
// wrong_type for a fraction, out_of_range outside [1, MaxInt64].
func referenceTS(num string) (int64, Reason) {
	if v, err := strconv.ParseInt(num, 10, 64); err == nil {
		if v <= 0 {
			return 0, ReasonOutOfRange
		}
		return v, ""
	}
	mant, exp := num, 0
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		mant = num[:i]
		e, err := strconv.Atoi(num[i+1:])
		if err != nil || e > 10000 || e < -10000 {
			// Too far for math/big to be quick: zero, a fraction or huge.
			switch {
			case strings.Trim(mant, "-0.") == "":
				return 0, ReasonOutOfRange
			case strings.HasPrefix(num[i+1:], "-"):
				return 0, ReasonWrongType
			default:
				return 0, ReasonOutOfRange
			}
		}
		exp = e
	}
	r, ok := new(big.Rat).SetString(mant)
	if !ok {
		panic("bad number " + num)
	}
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(exp, -exp))), nil))
	if exp >= 0 {
		r.Mul(r, scale)
	} else {
		r.Quo(r, scale)
	}
	if !r.IsInt() {
		return 0, ReasonWrongType
	}
	n := r.Num()
	if n.Sign() <= 0 || !n.IsInt64() {
		return 0, ReasonOutOfRange
	}
	return n.Int64(), ""
}

// hasDuplicateKnownKey reports whether the top-level object of valid JSON
// data has one of the schema's keys twice.
func hasDuplicateKnownKey(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	seen := map[string]bool{}
	depth := 0
	expectKey := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			panic(err) // data is valid JSON
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				depth++
				expectKey = depth == 1 && tok == '{'
				continue
			default:
				depth--
			}
		case string:
			if depth == 1 && expectKey {
				switch tok {
				case "lat", "lon", "ts", "status", "heading", "speed", "accuracy", "class":
					if seen[tok] {
						return true
					}
					seen[tok] = true
				}
				expectKey = false
				continue
			}
		}
		// A value ended; at depth 1 the next token is a key.
		expectKey = depth == 1
	}
}

// FuzzDecodeProto checks that DecodeProto never panics, that a fix it
// accepts validates, and that it agrees with proto.Unmarshal on what is
// malformed and on the decoded values.
func FuzzDecodeProto(f *testing.F) {
	good, err := proto.Marshal(goodTelemetry())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, tt := range badProtoCases {
		f.Add(tt.in)
	}
	f.Add(cat(good, tagVarint(99, 1), tagFixed64(1, 45)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var fix Fix
		err := DecodeProto(data, &fix)
		checkDecoded(t, &fix, err)

		var m meshcastv1.Telemetry
		uerr := proto.Unmarshal(data, &m)
		if (uerr != nil) != (ReasonOf(err) == ReasonMalformed) {
			t.Fatalf("DecodeProto(%x) = %v; proto.Unmarshal = %v", data, err, uerr)
		}
		if uerr != nil {
			return
		}
		want := Fix{Lat: m.Lat, Lon: m.Lon, TS: m.Ts, Status: m.Status, Heading: m.Heading,
			Speed: m.Speed, Accuracy: m.Accuracy, Class: m.Class}
		if want.Class == meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED {
			want.Class = standard
		}
		valid := m.Ts > 0 && m.Status >= 1 && m.Status <= 4 && want.Class >= 1 && want.Class <= 4 &&
			want.Lat >= -90 && want.Lat <= 90 && want.Lon >= -180 && want.Lon <= 180 &&
			want.Heading >= 0 && want.Heading < 360 &&
			want.Speed >= 0 && want.Speed <= math.MaxFloat32 && want.Accuracy >= 0 && want.Accuracy <= math.MaxFloat32
		if valid != (err == nil) {
			t.Fatalf("DecodeProto(%x) = %v; the message %v is valid: %v", data, err, &m, valid)
		}
		if err == nil && !sameFix(fix, want) {
			t.Fatalf("DecodeProto(%x) = %+v; proto.Unmarshal gives %+v", data, fix, want)
		}
	})
}
