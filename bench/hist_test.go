package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lies in its bucket, and the bucket is at most 1/128 wide
	// relative to the value.
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 123456789, 1 << 40, 1<<62 + 12345} {
		i := bucketOf(v)
		hi := highest(i)
		lo := int64(0)
		if i > 0 {
			lo = highest(i-1) + 1
		}
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= sub && float64(hi-lo+1)/float64(v) > 1.0/128 {
			t.Fatalf("bucket of %d is [%d, %d]: too wide", v, lo, hi)
		}
	}
	if i := bucketOf(1<<63 - 1); i >= buckets {
		t.Fatalf("largest value maps to bucket %d of %d", i, buckets)
	}
}

func TestHistogramQuantilesMatchSorted(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 100000)
	for i := range vals {
		// Log-uniform from 1 µs to 1 s, like latencies.
		vals[i] = int64(float64(int64(1000)<<r.IntN(20)) * (1 + r.Float64()))
		h.Record(time.Duration(vals[i]))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		idx := int(q*float64(len(vals))+0.5) - 1
		want := vals[idx]
		got := int64(h.Quantile(q))
		if got < want || float64(got-want) > float64(want)/128+1 {
			t.Fatalf("q%.3f = %d, exact %d", q, got, want)
		}
	}
	if h.Max() != time.Duration(vals[len(vals)-1]) || h.Count() != uint64(len(vals)) {
		t.Fatalf("max %v count %d", h.Max(), h.Count())
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 {
		t.Fatal("empty histogram has a p99")
	}
}
