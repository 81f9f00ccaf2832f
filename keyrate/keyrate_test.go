package keyrate

import (
	"strconv"
	"testing"
	"time"
)

func TestBucketPerKey(t *testing.T) {
	l := New(1, 2, 10)
	now := time.Unix(1_800_000_000, 0)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.Allow("a", now); ok != want {
			t.Fatalf("request %d of a: %v, want %v", i, ok, want)
		}
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("b shares a's bucket")
	}
	if ok, d := l.Allow("a", now); ok || d <= 0 || d > time.Second {
		t.Fatalf("a drained: %v, wait %v", ok, d)
	}
	if ok, _ := l.Allow("a", now.Add(time.Second)); !ok {
		t.Fatal("a not refilled after a second")
	}
	var nl *Limiter
	if ok, _ := nl.Allow("x", now); !ok {
		t.Fatal("a nil limiter refuses")
	}
}

// A full table evicts the key used least recently, never the key just
// used, and never grows past its bound; a key in use keeps its own
// (drained) bucket.
func TestFullTableEvictsLeastRecent(t *testing.T) {
	l := New(1, 1, 3)
	now := time.Unix(1_800_000_000, 0)
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k, now)
	}
	l.Allow("a", now) // a is now the most recent, b the least
	l.Allow("d", now) // evicts b
	if l.Len() != 3 || l.Evicted() != 1 {
		t.Fatalf("len %d, evicted %d", l.Len(), l.Evicted())
	}
	if ok, _ := l.Allow("a", now); ok {
		t.Fatal("a was evicted (its drained bucket forgotten) instead of b")
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("b, evicted, starts again with a full bucket")
	}
	for i := 0; i < 1000; i++ {
		l.Allow("k"+strconv.Itoa(i), now)
	}
	if l.Len() != 3 {
		t.Fatalf("len %d past the bound 3", l.Len())
	}
}
