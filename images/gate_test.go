package images

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// acquireAsync runs acquire in the background; the result arrives on the
// channel.
type acquired struct {
	release func()
	reason  string
}

func acquireAsync(g *gate, key, name string, wait time.Duration) chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		r, why := g.acquire(context.Background(), key, name, wait)
		ch <- acquired{r, why}
	}()
	return ch
}

// settle waits until n requests are in line.
func settle(t *testing.T, g *gate, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); g.waiting() != n; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d in line, want %d", g.waiting(), n)
		}
	}
}

// must returns the result, failing if acquire is still waiting after a
// guard far longer than any refusal takes (the waits asked are a minute).
func must(t *testing.T, ch chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("acquire is waiting, want an answer at once")
	}
	return acquired{}
}

// An address at its share is refused at once, not after the queue wait:
// waiting would not free its own slots. A waiting request holds its
// address's share too.
func TestGateAddressBusyAtOnce(t *testing.T) {
	g := newGate(1, 2)
	r1, _ := g.acquire(context.Background(), "a", "n1", time.Minute)
	if r1 == nil {
		t.Fatal("first slot refused")
	}
	w := acquireAsync(g, "a", "n2", time.Minute) // node full: waits, holding a's second share
	settle(t, g, 1)
	if a := must(t, acquireAsync(g, "a", "n3", time.Minute)); a.reason != reasonAddressBusy {
		t.Fatalf("third from a: %q, want %s", a.reason, reasonAddressBusy)
	}
	r1()
	if a := must(t, w); a.release == nil {
		t.Fatalf("waiter: %q", a.reason)
	} else {
		a.release()
	}
}

// At most max requests wait; the next is refused busy at once.
func TestGateLineBounded(t *testing.T) {
	g := newGate(1, 10)
	r, _ := g.acquire(context.Background(), "a", "n0", time.Minute)
	w := acquireAsync(g, "b", "n1", time.Minute)
	settle(t, g, 1)
	if a := must(t, acquireAsync(g, "c", "n2", time.Minute)); a.reason != reasonBusy {
		t.Fatalf("past the line's bound: %q, want %s", a.reason, reasonBusy)
	}
	r()
	must(t, w).release()
	if g.inFlight() != 0 || g.waiting() != 0 || len(g.byKey) != 0 || len(g.byName) != 0 {
		t.Fatalf("left over: %d slots, %d waiting, %v, %v", g.inFlight(), g.waiting(), g.byKey, g.byName)
	}
}

// A release hands its slot to the first in line and wakes that one only;
// a wait that ends unserved gives its share back.
func TestGateHandsSlotsInOrder(t *testing.T) {
	g := newGate(2, 10)
	r1, _ := g.acquire(context.Background(), "a", "n1", time.Minute)
	r2, _ := g.acquire(context.Background(), "b", "n2", time.Minute)
	first := acquireAsync(g, "c", "n3", time.Minute)
	settle(t, g, 1)
	second := acquireAsync(g, "d", "n4", time.Minute)
	settle(t, g, 2)
	r1()
	a := must(t, first)
	if a.release == nil || g.waiting() != 1 || g.inFlight() != 2 {
		t.Fatalf("after one release: %q, %d waiting, %d slots", a.reason, g.waiting(), g.inFlight())
	}
	select {
	case <-second:
		t.Fatal("the second in line was served by the first's slot")
	default:
	}
	r2()
	b := must(t, second)
	if b.release == nil {
		t.Fatalf("second in line: %q", b.reason)
	}
	a.release()
	b.release()
	if g.inFlight() != 0 {
		t.Fatalf("%d slots taken", g.inFlight())
	}

	r, _ := g.acquire(context.Background(), "a", "n1", time.Minute)
	r2, _ = g.acquire(context.Background(), "b", "n2", time.Minute)
	if _, why := g.acquire(context.Background(), "e", "n5", time.Millisecond); why != reasonBusy {
		t.Fatalf("unserved wait: %q", why)
	}
	if g.waiting() != 0 || g.byKey["e"] != 0 || g.byName["n5"] {
		t.Fatal("an unserved wait kept its place or share")
	}
	r()
	r2()
}
