package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations in log-linear buckets, the HDR idea: values
// below 2^subBits are exact, and above that every power of two is split in
// 2^(subBits-1) equal sub-buckets, so any recorded value is known to within
// 1/128 (0.8 %) over the whole range from 1 ns to centuries, in a fixed
// 58 KB table. It is written here rather than taken from a library because
// it is 80 lines, the Go HdrHistogram port is no longer maintained, and the
// load generator needs a lock-free Record that many connection goroutines
// call at once (atomic adds, no mutex), which that port does not offer.
type Histogram struct {
	counts [buckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

const (
	subBits = 8
	sub     = 1 << subBits // exact values below this
	half    = sub / 2      // sub-buckets per power of two above it
	buckets = sub + (64-subBits)*half
)

func bucketOf(v int64) int {
	if v < sub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits // v>>shift is in [half, sub)
	return sub + (shift-1)*half + int(uint64(v)>>shift) - half
}

// highest is the largest value that falls in bucket i: percentiles report
// it, so they never understate (as HdrHistogram's "highest equivalent").
func highest(i int) int64 {
	if i < sub {
		return int64(i)
	}
	shift := (i-sub)/half + 1
	j := int64((i-sub)%half + half)
	return (j+1)<<shift - 1
}

// Record adds one observation. Safe for concurrent use.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max is the largest observation, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the value below or at which a fraction q of the
// observations fall (0 when there are none). It may run while Record does:
// the answer is then a consistent-enough snapshot for a progress line.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := highest(i)
			if m := h.max.Load(); v > m {
				v = m
			}
			return time.Duration(v)
		}
	}
	return h.Max()
}
