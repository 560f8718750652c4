package bench

import (
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	// Every value lands in a bucket whose upper bound is ≥ it and within 1/16 of it.
	for _, us := range []uint64{0, 1, 15, 31, 32, 33, 47, 48, 63, 64, 100, 999, 1000, 1 << 20, 123456789} {
		i := bucketOf(us)
		up := upperOf(i)
		if up < us {
			t.Errorf("value %d: bucket %d upper %d < value", us, i, up)
		}
		if float64(up-us) > float64(us)/16+1 {
			t.Errorf("value %d: bucket %d upper %d more than 1/16 above", us, i, up)
		}
		if i > 0 && upperOf(i-1) >= us {
			t.Errorf("value %d: previous bucket %d upper %d already holds it", us, i-1, upperOf(i-1))
		}
	}
}

func TestQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		lo, hi time.Duration
	}{
		{"empty", nil, 0.99, 0, 0},
		{"one", []time.Duration{5 * time.Millisecond}, 0.5, 5 * time.Millisecond, 5330 * time.Microsecond},
		{"p50 of 1..1000ms", ramp(1000), 0.5, 500 * time.Millisecond, 532 * time.Millisecond},
		{"p99 of 1..1000ms", ramp(1000), 0.99, 990 * time.Millisecond, 1052 * time.Millisecond},
		{"negative is 0", []time.Duration{-time.Second}, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			if got := h.Quantile(tt.q); got < tt.lo || got > tt.hi {
				t.Errorf("Quantile(%v) = %v, want in [%v, %v]", tt.q, got, tt.lo, tt.hi)
			}
		})
	}
}

func TestSparseMerge(t *testing.T) {
	var a, b Histogram
	for _, v := range ramp(100) {
		a.Record(v)
	}
	b.AddSparse(a.Sparse())
	b.AddSparse(a.Sparse())
	if b.Count() != 200 || b.Quantile(0.5) != a.Quantile(0.5) {
		t.Errorf("merged: count %d p50 %v, want 200 and %v", b.Count(), b.Quantile(0.5), a.Quantile(0.5))
	}
}

func ramp(n int) []time.Duration {
	var out []time.Duration
	for i := 1; i <= n; i++ {
		out = append(out, time.Duration(i)*time.Millisecond)
	}
	return out
}
