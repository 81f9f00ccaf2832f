package broker

import (
	"context"
	"testing"
	"time"
)

// The shared bound gives every call at least the timeout and at most the
// timeout plus one tick, and calls of one tick share one context.
func TestSharedDeadlineBounds(t *testing.T) {
	const tmo = 5 * time.Second
	d := newDeadlines(tmo)
	start := time.Now()
	var first context.Context
	for _, off := range []time.Duration{0, d.tick / 2, d.tick - 1, d.tick, 3 * d.tick, 3*d.tick + 1} {
		now := start.Add(off)
		ctx := d.get(now)
		dl, ok := ctx.Deadline()
		if !ok || dl.Before(now.Add(tmo)) || dl.After(now.Add(tmo+d.tick)) {
			t.Fatalf("at +%v: deadline %v (%v), want within [%v, %v]", off, dl, ok, now.Add(tmo), now.Add(tmo+d.tick))
		}
		if off < d.tick {
			if first == nil {
				first = ctx
			} else if ctx != first {
				t.Fatalf("at +%v: a new context within the first tick", off)
			}
		} else if ctx == first {
			t.Fatalf("at +%v: the first tick's context after its tick", off)
		}
	}
}

// A caller's tighter deadline is kept; a cancellable caller's context
// without one gets its own timeout, and keeps its cancellation.
func TestBoundKeepsTheCallersContext(t *testing.T) {
	c := &Client{tmo: time.Second, dl: newDeadlines(time.Second)}
	tight, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if got, done := c.bound(tight); got != tight {
		t.Fatal("a tighter deadline was replaced")
	} else {
		done()
	}
	parent, stop := context.WithCancel(context.Background())
	got, done := c.bound(parent)
	defer done()
	if dl, ok := got.Deadline(); !ok || time.Until(dl) > time.Second {
		t.Fatalf("deadline %v %v, want the timeout", dl, ok)
	}
	stop()
	<-got.Done() // the caller's cancellation reaches it
}

// A shared context of a longer budget (a session's shutdown) is bounded by
// the command timeout's shared context; one of a shorter budget is kept.
func TestBoundOfASharedContext(t *testing.T) {
	c := &Client{tmo: time.Second, dl: newDeadlines(time.Second)}
	long := NewDeadlines(10 * time.Second).Context()
	got, done := c.bound(long)
	done()
	if dl, _ := got.Deadline(); time.Until(dl) > time.Second+c.dl.tick {
		t.Fatalf("bound of a 10 s budget ends in %v, want the 1 s timeout", time.Until(dl))
	}
	short := NewDeadlines(100 * time.Millisecond).Context()
	if got, done := c.bound(short); got != short {
		t.Fatal("a shorter shared budget was replaced")
	} else {
		done()
	}
}
