package telemetry

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestNumberFastPaths checks readNumber's exact fast paths against strconv
// (and referenceTS) bit for bit, on numbers built around the limits of the
// fast paths: 2^24 and 2^53 mantissas, powers of ten up to 10^±22, long
// fractions and many digits.
func TestNumberFastPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nums := []string{"0", "-0", "1", "-1", "0.0", "90.0", "359.99", "35.681236", "139.767125",
		"9007199254740992", "9007199254740993", "9007199254740993e-22", "16777216", "16777217e-10",
		"1e22", "1e23", "1e-22", "1e-23", "3.4028235e38", "1.4e-45", "1e10", "1e-10", "123456789e-10",
		"18446744073709551615", "18446744073709551616", "1844674407370955161", "9223372036854775807",
		"9223372036854775808", "1732260000123.000", "1.732260000123e12", "17322600001230E-1", "0.1e1", "100e-2"}
	for range 20000 {
		var b strings.Builder
		if rng.IntN(4) == 0 {
			b.WriteByte('-')
		}
		n := 1 + rng.IntN(20)
		b.WriteByte(byte('1' + rng.IntN(9)))
		for range n - 1 {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			b.WriteByte('.')
			for range 1 + rng.IntN(12) {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if rng.IntN(2) == 0 {
			b.WriteString("e" + strconv.Itoa(rng.IntN(60)-30))
		}
		nums = append(nums, b.String())
	}
	for _, s := range nums {
		end, d, err := readNumber([]byte(s), 0)
		if err != nil || end != len(s) {
			t.Fatalf("readNumber(%s) = %d, %v", s, end, err)
		}
		if v, ok := d.float64(); ok {
			want, err := strconv.ParseFloat(s, 64)
			if err != nil || math.Float64bits(v) != math.Float64bits(want) {
				t.Errorf("float64(%s) = %v, strconv %v %v", s, v, want, err)
			}
		}
		if v, ok := d.float32(); ok {
			want, err := strconv.ParseFloat(s, 32)
			if err != nil || math.Float32bits(v) != math.Float32bits(float32(want)) {
				t.Errorf("float32(%s) = %v, strconv %v %v", s, v, want, err)
			}
		}
		v, msg, ok := d.integral()
		if !ok {
			v, msg = parseIntegral([]byte(s))
		}
		slowV, slowMsg := parseIntegral([]byte(s))
		wantV, wantReason := referenceTS(s)
		reason := Reason("")
		switch {
		case msg == msgNotIntegral:
			reason = ReasonWrongType
		case msg != "":
			reason = ReasonOutOfRange
		}
		if v != wantV || reason != wantReason || v != slowV || msg != slowMsg {
			t.Errorf("integral(%s) = %d %q, parseIntegral %d %q; want %d %q", s, v, msg, slowV, slowMsg, wantV, wantReason)
		}
	}
}
