package posts

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// naive is the answer of a read by brute force: every live post matching
// f, dated after cutoff, in id order (descending when desc).
func naive(x *index, f *Filter, cutoff int64, desc bool) []uint64 {
	var out []uint64
	for _, p := range x.all.ps {
		if p.alive() && !p.expired(cutoff) && f.matchProd(p) && f.matchRest(p) {
			out = append(out, p.ID)
		}
	}
	if desc {
		slices.Reverse(out)
	}
	return out
}

func randomIndex(r *rand.Rand, n int) *index {
	x := newIndex(0)
	for i := 0; i < n; i++ {
		p := &Post{ID: uint64(i + 1), Date: int64(100 + i), Loc: uint64(r.IntN(5)), Prod: uint64(r.IntN(7)),
			Features: 1 << r.IntN(4), Ranges: []int64{int64(r.IntN(100))}, JSON: []byte("{}")}
		x.insert(p)
	}
	// Some dead posts, not yet compacted.
	for i := 0; i < n/10; i++ {
		x.remove(uint64(r.IntN(n) + 1))
	}
	return x
}

func randomFilter(r *rand.Rand) *Filter {
	f := &Filter{}
	pick := func(k, max int) []uint64 {
		var l []uint64
		for i := 0; i < k; i++ {
			l = append(l, uint64(r.IntN(max)))
		}
		return normalise(l)
	}
	f.Locs = pick(r.IntN(3), 6) // 5 is a location no post has
	f.Prods = pick(r.IntN(3), 8)
	if r.IntN(3) == 0 {
		f.Features = 1 << r.IntN(5)
	}
	if r.IntN(3) == 0 {
		lo := int64(r.IntN(100))
		f.Ranges = []int64{lo, lo + 20}
	}
	return f
}

// TestScanMatchesBruteForce checks every read path of the index against a
// brute-force walk: pages of any size, paged further with the cursor a
// read returns when it stops at its scan bound, in both directions, and
// counts.
func TestScanMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randomIndex(r, 2000)
	for i := 0; i < 300; i++ {
		f := randomFilter(r)
		cutoff := int64(100 + r.IntN(200))
		for _, desc := range []bool{false, true} {
			want := naive(x, f, cutoff, desc)
			limit, maxScan := 1+r.IntN(50), 1+r.IntN(300)
			var got []uint64
			var from uint64
			for {
				res := x.scan(f, cutoff, read{limit: limit, maxScan: maxScan, desc: desc, from: from})
				if len(res.posts) > limit || res.n != len(res.posts) {
					t.Fatalf("a page of %d (n %d) for limit %d", len(res.posts), res.n, limit)
				}
				for _, p := range res.posts {
					got = append(got, p.ID)
				}
				switch {
				case res.next != 0:
					from = res.next
				case len(res.posts) == limit:
					from = res.posts[len(res.posts)-1].ID
				default:
					from = 0
				}
				if from == 0 {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("filter %+v desc %v: paged\n %v\nwant\n %v", f, desc, got, want)
			}
		}
		// Counts, continued from the cursor when they stop at the bound.
		want := len(naive(x, f, cutoff, true))
		n, before := 0, uint64(0)
		for {
			res := x.count(f, cutoff, before, 1+r.IntN(500))
			n += res.n
			if before = res.next; before == 0 {
				break
			}
		}
		if n != want {
			t.Fatalf("filter %+v: count %d, want %d", f, n, want)
		}
	}
}

// TestNoMatchReadsExamineNothing shows that a read for channels nobody
// publishes in costs nothing, however many posts there are (issue 10.5:
// it walked the whole index), and that a read that must filter stops at
// its bound with a cursor.
func TestNoMatchReadsExamineNothing(t *testing.T) {
	x := newIndex(0)
	for i := 1; i <= 50_000; i++ {
		x.insert(&Post{ID: uint64(i), Date: 10, Prod: uint64(i % 10), Loc: uint64(i % 3), JSON: []byte("{}")})
	}
	for _, f := range []*Filter{
		{Prods: []uint64{99}},
		{Locs: []uint64{7}},
		{Locs: []uint64{7}, Prods: []uint64{1, 2}},
		{Locs: []uint64{1}, Prods: []uint64{99}},
	} {
		// No list holds a candidate, and the read says it saw everything.
		if ls, _ := x.lists(f); len(ls) != 0 {
			t.Fatalf("filter %+v: %d lists to read", f, len(ls))
		}
		if res := x.scan(f, 0, read{limit: 20, maxScan: 100, desc: true}); len(res.posts) != 0 || res.next != 0 {
			t.Fatalf("filter %+v: %d posts, next %d", f, len(res.posts), res.next)
		}
		if c := x.count(f, 0, 0, 100); c.n != 0 || c.next != 0 {
			t.Fatalf("filter %+v: count %+v", f, c)
		}
	}
	// A status no post has: the read stops after 100 posts with a cursor.
	res := x.scan(&Filter{Status: statusBit("sold")}, 0, read{limit: 20, maxScan: 100, desc: true})
	if len(res.posts) != 0 || res.next != 50_000-99 {
		t.Fatalf("residual read: %d posts, next %d", len(res.posts), res.next)
	}
	// Features no post has: nothing examined, and complete.
	if res := x.scan(&Filter{Features: 1 << 40}, 0, read{limit: 20, maxScan: 100, desc: true}); res.scanned != 0 || res.next != 0 {
		t.Fatalf("features no post has: %d examined, next %d", res.scanned, res.next)
	}
	if c := x.count(&Filter{Features: 1 << 40}, 0, 0, 100); c.n != 0 || c.scanned != 0 || c.next != 0 {
		t.Fatalf("count of features no post has: %+v", c)
	}
	// A count of channels only is the lists' sizes, without a walk.
	if c := x.count(&Filter{Prods: []uint64{3, 4}, Locs: []uint64{0, 1, 2}}, 0, 0, 1); c.n != 10_000 || c.next != 0 {
		t.Fatalf("count %+v, want 10000", c)
	}
}

func TestIndexEvictionOrder(t *testing.T) {
	x := newIndex(0)
	for i := 1; i <= 5; i++ {
		x.insert(&Post{ID: uint64(i), JSON: []byte("{}")})
	}
	x.remove(1)
	if p := x.oldest(); p == nil || p.ID != 2 {
		t.Fatalf("oldest %v, want 2", p)
	}
	if x.newest() != 5 || x.bytes != 8 {
		t.Fatalf("newest %d bytes %d", x.newest(), x.bytes)
	}
}
