package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a log-linear histogram of durations in microseconds, safe for concurrent
// Record calls: values below 32 µs are exact, larger ones fall in one of 16 sub-buckets per
// power of two (relative error at most 1/16, about 6%), up to 2^40 µs. Quantiles report the
// upper bound of the bucket holding the rank, so they never understate.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
}

const (
	histSub     = 16 // sub-buckets per power of two
	histSubBits = 4
	histBuckets = (40 - histSubBits + 2) * histSub
)

func bucketOf(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	exp := bits.Len64(us) - histSubBits - 1 // ≥ 1
	i := (exp+1)*histSub + int(us>>exp)&(histSub-1)
	return min(i, histBuckets-1)
}

// upperOf is the largest value in bucket i.
func upperOf(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	exp := i/histSub - 1
	sub := uint64(i % histSub)
	return ((histSub+sub+1)<<exp - 1)
}

// Record adds one duration (negative durations count as 0).
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[bucketOf(uint64(us))].Add(1)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Quantile returns the value at quantile q (0..1); 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(upperOf(i)) * time.Microsecond
		}
	}
	return time.Duration(upperOf(histBuckets-1)) * time.Microsecond
}

// Max returns the upper bound of the highest non-empty bucket.
func (h *Histogram) Max() time.Duration {
	for i := histBuckets - 1; i >= 0; i-- {
		if h.counts[i].Load() > 0 {
			return time.Duration(upperOf(i)) * time.Microsecond
		}
	}
	return 0
}

// Reset empties the histogram.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
}

// Sparse returns the non-empty buckets as index → count (how a child process ships its
// histogram to the parent).
func (h *Histogram) Sparse() map[int]uint64 {
	m := map[int]uint64{}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			m[i] = c
		}
	}
	return m
}

// AddSparse merges buckets produced by Sparse.
func (h *Histogram) AddSparse(m map[int]uint64) {
	for i, c := range m {
		if i >= 0 && i < histBuckets {
			h.counts[i].Add(c)
		}
	}
}
