package telemetry

import (
	"errors"
	"math"
	"math/bits"
	"strconv"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// maxJSONDepth is the deepest nesting accepted, the top-level object being
// level 1: the limit of encoding/json.
const maxJSONDepth = 10000

// Bits of the known fields, to detect missing and duplicate keys.
const (
	hasLat = 1 << iota
	hasLon
	hasTS
	hasStatus
	hasHeading
	hasSpeed
	hasAccuracy
	hasClass
)

// DecodeJSON decodes a JSON telemetry payload (API.md §1) into f and
// validates it. It sets every payload field of f and leaves Fleet and
// Vehicle alone. The package documentation lists the exact rules. It does
// not allocate on success.
func DecodeJSON(p []byte, f *Fix) error {
	f.Lat, f.Lon, f.TS = 0, 0, 0
	f.Status, f.Class = 0, 0
	f.Heading, f.Speed, f.Accuracy = 0, 0, 0

	i := skipWS(p, 0)
	if i >= len(p) {
		return errorf(ReasonMalformed, "", "empty payload: want a JSON object")
	}
	if p[i] != '{' {
		if _, err := skipValue(p, i); err != nil {
			return err
		}
		return errorf(ReasonMalformed, "", "payload is a JSON %s: want a JSON object", jsonKind(p[i]))
	}
	i = skipWS(p, i+1)
	var seen uint
	if i < len(p) && p[i] == '}' {
		i++
	} else {
		for {
			if i >= len(p) || p[i] != '"' {
				return syntaxError(p, i, "object key")
			}
			var kbuf [16]byte
			key, end, err := readShortString(p, i, &kbuf)
			if err != nil {
				return err
			}
			i = skipWS(p, end)
			if i >= len(p) || p[i] != ':' {
				return syntaxError(p, i, "':' after object key")
			}
			i = skipWS(p, i+1)

			var bit uint
			var field string
			switch string(key) {
			case fieldLat:
				bit, field = hasLat, fieldLat
			case fieldLon:
				bit, field = hasLon, fieldLon
			case fieldTS:
				bit, field = hasTS, fieldTS
			case fieldStatus:
				bit, field = hasStatus, fieldStatus
			case fieldHeading:
				bit, field = hasHeading, fieldHeading
			case fieldSpeed:
				bit, field = hasSpeed, fieldSpeed
			case fieldAccuracy:
				bit, field = hasAccuracy, fieldAccuracy
			case fieldClass:
				bit, field = hasClass, fieldClass
			}
			if bit == 0 {
				if i, err = skipValue(p, i); err != nil {
					return err
				}
			} else {
				if seen&bit != 0 {
					return errorf(ReasonDuplicateField, field, "given twice")
				}
				seen |= bit
				if i, err = decodeField(p, i, bit, field, f); err != nil {
					return err
				}
			}

			i = skipWS(p, i)
			if i < len(p) && p[i] == ',' {
				i = skipWS(p, i+1)
				continue
			}
			if i < len(p) && p[i] == '}' {
				i++
				break
			}
			return syntaxError(p, i, "',' or '}' after object value")
		}
	}
	if i = skipWS(p, i); i < len(p) {
		return errorf(ReasonMalformed, "", "invalid JSON: data after the object at offset %d", i)
	}

	// A null status leaves Status UNSPECIFIED: missing too.
	switch {
	case seen&hasLat == 0:
		return errorf(ReasonMissingField, fieldLat, "required")
	case seen&hasLon == 0:
		return errorf(ReasonMissingField, fieldLon, "required")
	case seen&hasTS == 0:
		return errorf(ReasonMissingField, fieldTS, "required")
	case f.Status == 0:
		return errorf(ReasonMissingField, fieldStatus, "required")
	}
	if f.Class == 0 {
		f.Class = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD
	}
	return f.Validate()
}

// decodeField decodes the value at p[i] of the known field bit into f and
// returns the index after it. null leaves an optional field at its default;
// for lat, lon and ts it is a missing field (status is checked by the caller).
func decodeField(p []byte, i int, bit uint, field string, f *Fix) (int, error) {
	if i >= len(p) {
		return i, syntaxError(p, i, "value")
	}
	c := p[i]
	if c == 'n' {
		end, err := skipValue(p, i)
		if err != nil {
			return end, err
		}
		if bit == hasLat || bit == hasLon || bit == hasTS {
			return end, errorf(ReasonMissingField, field, "required, got null")
		}
		return end, nil
	}
	switch bit {
	case hasStatus, hasClass:
		if c != '"' {
			return wrongType(p, i, field, "string")
		}
		var vbuf [16]byte
		v, end, err := readShortString(p, i, &vbuf)
		if err != nil {
			return end, err
		}
		if bit == hasStatus {
			switch string(v) {
			case "vacant":
				f.Status = meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT
			case "dispatched":
				f.Status = meshcastv1.VehicleStatus_VEHICLE_STATUS_DISPATCHED
			case "occupied":
				f.Status = meshcastv1.VehicleStatus_VEHICLE_STATUS_OCCUPIED
			case "out_of_service":
				f.Status = meshcastv1.VehicleStatus_VEHICLE_STATUS_OUT_OF_SERVICE
			default:
				return end, errorf(ReasonBadEnum, field, "%s is not one of %s", clipRaw(p[i:end]), statusNames)
			}
		} else {
			switch string(v) {
			case "standard":
				f.Class = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD
			case "premium":
				f.Class = meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM
			case "van":
				f.Class = meshcastv1.VehicleClass_VEHICLE_CLASS_VAN
			case "accessible":
				f.Class = meshcastv1.VehicleClass_VEHICLE_CLASS_ACCESSIBLE
			default:
				return end, errorf(ReasonBadEnum, field, "%s is not one of %s", clipRaw(p[i:end]), classNames)
			}
		}
		return end, nil
	}

	if c != '-' && (c < '0' || c > '9') {
		return wrongType(p, i, field, "number")
	}
	end, n, err := readNumber(p, i)
	if err != nil {
		return end, err
	}
	num := p[i:end]
	switch bit {
	case hasTS:
		ts, msg, ok := n.integral()
		if !ok {
			ts, msg = parseIntegral(num)
		}
		if msg != "" {
			r := ReasonOutOfRange
			if msg == msgNotIntegral {
				r = ReasonWrongType
			}
			return end, errorf(r, field, "%s %s", clipRaw(num), msg)
		}
		f.TS = ts
		return end, nil
	case hasLat, hasLon:
		v, ok := n.float64()
		if !ok {
			// string(num) does not allocate here: it does not escape and
			// strconv copies the input when it builds an error.
			if v, err = strconv.ParseFloat(string(num), 64); err != nil {
				return end, numberError(err, field, num, 64)
			}
		}
		if bit == hasLat {
			f.Lat = v
		} else {
			f.Lon = v
		}
		return end, nil
	default: // heading, speed, accuracy: rounded once, straight to float32
		v, ok := n.float32()
		if !ok {
			v64, err := strconv.ParseFloat(string(num), 32)
			if err != nil {
				return end, numberError(err, field, num, 32)
			}
			v = float32(v64) // exact: ParseFloat rounded to float32 already
		}
		switch bit {
		case hasHeading:
			f.Heading = v
		case hasSpeed:
			f.Speed = v
		default:
			f.Accuracy = v
		}
		return end, nil
	}
}

// numberError reports a number strconv refused: too large for its type
// (out_of_range) or, which scanNumber should have prevented, malformed.
func numberError(err error, field string, num []byte, bitSize int) error {
	if errors.Is(err, strconv.ErrRange) {
		return errorf(ReasonOutOfRange, field, "%s out of range of a %d-bit float", clipRaw(num), bitSize)
	}
	return errorf(ReasonMalformed, field, "bad number %s", clipRaw(num))
}

// wrongType checks that the value at p[i] is valid JSON, then reports it as
// the wrong type for field.
func wrongType(p []byte, i int, field, want string) (int, error) {
	end, err := skipValue(p, i)
	if err != nil {
		return end, err
	}
	return end, errorf(ReasonWrongType, field, "got a %s, want a %s", jsonKind(p[i]), want)
}

// jsonKind names the JSON type of a value starting with c.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func syntaxError(p []byte, i int, want string) error {
	if i >= len(p) {
		return errorf(ReasonMalformed, "", "invalid JSON: unexpected end of input, want %s", want)
	}
	return errorf(ReasonMalformed, "", "invalid JSON: unexpected %q at offset %d, want %s", p[i], i, want)
}

// clipRaw quotes raw JSON text for an error message, shortened.
func clipRaw(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

func skipWS(p []byte, i int) int {
	for i < len(p) {
		switch p[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// readShortString reads the JSON string starting at p[i] (a '"') and returns
// its value, unescaped, when it fits in buf or needs no unescaping; a longer
// escaped string returns a value that matches no short name (a prefix ending
// in 0xFF, which is not valid in any escaped-ASCII name). end is the index
// after the closing quote.
func readShortString(p []byte, i int, buf *[16]byte) (val []byte, end int, err error) {
	start := i + 1
	j := start
	for j < len(p) {
		c := p[j]
		if c == '"' {
			return p[start:j], j + 1, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, j, errorf(ReasonMalformed, "", "invalid JSON: control character %q in string at offset %d", c, j)
		}
		j++
	}
	if j >= len(p) {
		return nil, j, syntaxError(p, j, "end of string")
	}
	// Slow path: unescape into buf. Runes beyond ASCII become 0xFF, which
	// is enough to tell that the value is none of the (ASCII) names.
	n := copy(buf[:], p[start:j])
	over := j-start > len(buf)
	for j < len(p) {
		c := p[j]
		var out byte
		switch {
		case c == '"':
			if over {
				n = len(buf)
				buf[n-1] = 0xFF
			}
			return buf[:n], j + 1, nil
		case c < 0x20:
			return nil, j, errorf(ReasonMalformed, "", "invalid JSON: control character %q in string at offset %d", c, j)
		case c == '\\':
			if j+1 >= len(p) {
				return nil, j + 1, syntaxError(p, j+1, "escape sequence")
			}
			switch e := p[j+1]; e {
			case '"', '\\', '/':
				out, j = e, j+2
			case 'b':
				out, j = '\b', j+2
			case 'f':
				out, j = '\f', j+2
			case 'n':
				out, j = '\n', j+2
			case 'r':
				out, j = '\r', j+2
			case 't':
				out, j = '\t', j+2
			case 'u':
				r, ok := hex4(p, j+2)
				if !ok {
					return nil, j, errorf(ReasonMalformed, "", "invalid JSON: bad \\u escape at offset %d", j)
				}
				out, j = 0xFF, j+6
				if r < 0x80 {
					out = byte(r)
				}
			default:
				return nil, j, errorf(ReasonMalformed, "", "invalid JSON: bad escape \\%c at offset %d", e, j)
			}
		default:
			out, j = c, j+1
		}
		if n < len(buf) {
			buf[n] = out
			n++
		} else {
			over = true
		}
	}
	return nil, j, syntaxError(p, j, "end of string")
}

// hex4 decodes the 4 hex digits at p[i:i+4].
func hex4(p []byte, i int) (rune, bool) {
	if i+4 > len(p) {
		return 0, false
	}
	var r rune
	for _, c := range p[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipString validates the JSON string starting at p[i] (a '"') and returns
// the index after it.
func skipString(p []byte, i int) (int, error) {
	j := i + 1
	for j < len(p) {
		switch c := p[j]; {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			if j+1 >= len(p) {
				return j + 1, syntaxError(p, j+1, "escape sequence")
			}
			switch p[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if _, ok := hex4(p, j+2); !ok {
					return j, errorf(ReasonMalformed, "", "invalid JSON: bad \\u escape at offset %d", j)
				}
				j += 6
			default:
				return j, errorf(ReasonMalformed, "", "invalid JSON: bad escape \\%c at offset %d", p[j+1], j)
			}
		case c < 0x20:
			return j, errorf(ReasonMalformed, "", "invalid JSON: control character %q in string at offset %d", c, j)
		default:
			j++
		}
	}
	return j, syntaxError(p, j, "end of string")
}

// scanNumber validates the JSON number starting at p[i] and returns the
// index after it.
func scanNumber(p []byte, i int) (int, error) {
	end, _, err := readNumber(p, i)
	return end, err
}

// decimal is a JSON number read while validating it: mant * 10^exp10, when
// the significant digits fit in mant (!trunc).
type decimal struct {
	mant  uint64
	exp10 int
	neg   bool
	trunc bool // more digits than mant holds: use the slow paths
}

// readNumber validates the JSON number starting at p[i],
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and returns the index
// after it and its value.
func readNumber(p []byte, i int) (int, decimal, error) {
	var d decimal
	j := i
	if j < len(p) && p[j] == '-' {
		d.neg = true
		j++
	}
	switch {
	case j < len(p) && p[j] == '0':
		j++
	case j < len(p) && '1' <= p[j] && p[j] <= '9':
		for ; j < len(p) && '0' <= p[j] && p[j] <= '9'; j++ {
			d.addDigit(p[j], 0)
		}
	default:
		return j, d, syntaxError(p, j, "digit in number")
	}
	if j < len(p) && p[j] == '.' {
		j++
		k := j
		for ; j < len(p) && '0' <= p[j] && p[j] <= '9'; j++ {
			d.addDigit(p[j], -1)
		}
		if j == k {
			return j, d, syntaxError(p, j, "digit after decimal point")
		}
	}
	if j < len(p) && (p[j] == 'e' || p[j] == 'E') {
		j++
		eneg := false
		if j < len(p) && (p[j] == '+' || p[j] == '-') {
			eneg = p[j] == '-'
			j++
		}
		k, e := j, 0
		for ; j < len(p) && '0' <= p[j] && p[j] <= '9'; j++ {
			if e < 1e8 { // saturate: far beyond any meaningful exponent
				e = e*10 + int(p[j]-'0')
			}
		}
		if j == k {
			return j, d, syntaxError(p, j, "digit in exponent")
		}
		if eneg {
			e = -e
		}
		d.exp10 += e
	}
	return j, d, nil
}

// addDigit appends a digit; shift is -1 for a fraction digit.
func (d *decimal) addDigit(c byte, shift int) {
	if d.trunc {
		return
	}
	if d.mant > (math.MaxUint64-9)/10 {
		d.trunc = true
		return
	}
	d.mant = d.mant*10 + uint64(c-'0')
	d.exp10 += shift
}

// Exact powers of ten (Clinger's fast path, as in strconv).
var (
	pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}
	pow10f32 = [...]float32{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}
)

// float64 returns the correctly rounded value when one exact operation
// gives it: the mantissa and the power of ten are exact float64 values.
func (d decimal) float64() (float64, bool) {
	if d.trunc || d.mant > 1<<53 || d.exp10 < -22 || d.exp10 > 22 {
		return 0, false
	}
	f := float64(d.mant)
	if d.exp10 >= 0 {
		f *= pow10f64[d.exp10]
	} else {
		f /= pow10f64[-d.exp10]
	}
	if d.neg {
		f = -f
	}
	return f, true
}

// float32 is float64 for float32, rounding once (Go rounds float32
// arithmetic to float32).
func (d decimal) float32() (float32, bool) {
	if d.trunc || d.mant > 1<<24 || d.exp10 < -10 || d.exp10 > 10 {
		return 0, false
	}
	f := float32(d.mant)
	if d.exp10 >= 0 {
		f *= pow10f32[d.exp10]
	} else {
		f /= pow10f32[-d.exp10]
	}
	if d.neg {
		f = -f
	}
	return f, true
}

// integral is parseIntegral for a number whose digits fit (ok).
func (d decimal) integral() (v int64, msg string, ok bool) {
	if d.trunc {
		return 0, "", false
	}
	const outOfRange = "out of range: want Unix milliseconds in [1, 9223372036854775807]"
	m, e := d.mant, d.exp10
	if m == 0 {
		return 0, outOfRange, true
	}
	for e < 0 && m%10 == 0 {
		m /= 10
		e++
	}
	if e < 0 {
		return 0, msgNotIntegral, true
	}
	if d.neg {
		return 0, outOfRange, true
	}
	for ; e > 0; e-- {
		hi, lo := bits.Mul64(m, 10)
		if hi != 0 {
			return 0, outOfRange, true
		}
		m = lo
	}
	if m > math.MaxInt64 {
		return 0, outOfRange, true
	}
	return int64(m), "", true
}

func digits(p []byte, j int) int {
	for j < len(p) && '0' <= p[j] && p[j] <= '9' {
		j++
	}
	return j
}

const msgNotIntegral = "is not an integer: want Unix milliseconds"

// parseIntegral returns the exact value of a valid JSON number that must be
// an integer in [1, MaxInt64]. msg is "" on success, msgNotIntegral when the
// value has a fractional part, and otherwise says what is out of range.
func parseIntegral(num []byte) (v int64, msg string) {
	const outOfRange = "out of range: want Unix milliseconds in [1, 9223372036854775807]"
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	// Split into integer digits, fraction digits and exponent.
	ie := digits(num, 0)
	intDigits := num[:ie]
	var fracDigits []byte
	rest := num[ie:]
	if len(rest) > 0 && rest[0] == '.' {
		fe := digits(rest, 1)
		fracDigits, rest = rest[1:fe], rest[fe:]
	}
	exp := 0
	if len(rest) > 0 { // [eE][+-]?digits
		rest = rest[1:]
		eneg := rest[0] == '-'
		if rest[0] == '+' || rest[0] == '-' {
			rest = rest[1:]
		}
		for _, c := range rest {
			if exp < 1e8 { // saturate: far beyond any meaningful exponent
				exp = exp*10 + int(c-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	// The digits are intDigits ++ fracDigits; the value is that integer
	// times 10^(exp - len(fracDigits)). Find the significant ones.
	n := len(intDigits) + len(fracDigits)
	at := func(k int) byte {
		if k < len(intDigits) {
			return intDigits[k]
		}
		return fracDigits[k-len(intDigits)]
	}
	first, last := -1, -1
	for k := 0; k < n; k++ {
		if at(k) != '0' {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	if first < 0 { // zero
		return 0, outOfRange
	}
	e := exp - len(fracDigits) + (n - 1 - last) // exponent after dropping trailing zeros
	if e < 0 {
		return 0, msgNotIntegral
	}
	if neg {
		return 0, outOfRange
	}
	if last-first+1+e > 19 { // at least 10^19 > MaxInt64
		return 0, outOfRange
	}
	var u uint64
	for k := first; k <= last; k++ {
		u = u*10 + uint64(at(k)-'0') // at most 19 digits: no overflow
	}
	for ; e > 0; e-- {
		hi, lo := bits.Mul64(u, 10)
		if hi != 0 {
			return 0, outOfRange
		}
		u = lo
	}
	if u > math.MaxInt64 {
		return 0, outOfRange
	}
	return int64(u), ""
}

// skipValue validates the JSON value starting at p[i] (at depth 1, inside
// the top-level object) and returns the index after it.
func skipValue(p []byte, i int) (int, error) {
	if i >= len(p) {
		return i, syntaxError(p, i, "value")
	}
	switch c := p[i]; c {
	case '{', '[':
		return skipContainer(p, i)
	case '"':
		return skipString(p, i)
	case 't':
		return literal(p, i, "true")
	case 'f':
		return literal(p, i, "false")
	case 'n':
		return literal(p, i, "null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return scanNumber(p, i)
		}
		return i, syntaxError(p, i, "value")
	}
}

func literal(p []byte, i int, lit string) (int, error) {
	if len(p)-i >= len(lit) && string(p[i:i+len(lit)]) == lit {
		return i + len(lit), nil
	}
	return i, errorf(ReasonMalformed, "", "invalid JSON: bad literal at offset %d, want %s", i, lit)
}

// skipContainer validates the object or array starting at p[i] without
// recursion, remembering for each open level whether it is an object (bit
// set) or an array, and returns the index after it.
func skipContainer(p []byte, i int) (int, error) {
	var stack [(maxJSONDepth + 63) / 64]uint64
	depth := 1 // the object holding this value
	for {
		// p[i] starts a value.
		var err error
		switch c := p[i]; c {
		case '{', '[':
			if depth >= maxJSONDepth {
				return i, errorf(ReasonMalformed, "", "invalid JSON: nested deeper than %d at offset %d", maxJSONDepth, i)
			}
			if c == '{' {
				stack[depth/64] |= 1 << (depth % 64)
			} else {
				stack[depth/64] &^= 1 << (depth % 64)
			}
			i = skipWS(p, i+1)
			if i < len(p) && p[i] == c+2 { // empty; '}' is '{'+2, ']' is '['+2
				i++
				break
			}
			depth++
			if c == '{' {
				if i, err = objectKey(p, i); err != nil {
					return i, err
				}
			}
			if i >= len(p) {
				return i, syntaxError(p, i, "value")
			}
			continue
		default:
			if i, err = skipValue(p, i); err != nil {
				return i, err
			}
		}
		// A value ended at i: close containers or move to the next value.
		for {
			if depth == 1 {
				return i, nil
			}
			i = skipWS(p, i)
			isObj := stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			closer := byte(']')
			if isObj {
				closer = '}'
			}
			if i < len(p) && p[i] == closer {
				depth--
				i++
				continue
			}
			if i < len(p) && p[i] == ',' {
				i = skipWS(p, i+1)
				if isObj {
					if i, err = objectKey(p, i); err != nil {
						return i, err
					}
				}
				if i >= len(p) {
					return i, syntaxError(p, i, "value")
				}
				break
			}
			return i, syntaxError(p, i, "',' or '"+string(closer)+"'")
		}
	}
}

// objectKey validates `"key" :` at p[i] and returns the index of the value.
func objectKey(p []byte, i int) (int, error) {
	if i >= len(p) || p[i] != '"' {
		return i, syntaxError(p, i, "object key")
	}
	i, err := skipString(p, i)
	if err != nil {
		return i, err
	}
	i = skipWS(p, i)
	if i >= len(p) || p[i] != ':' {
		return i, syntaxError(p, i, "':' after object key")
	}
	return skipWS(p, i+1), nil
}
