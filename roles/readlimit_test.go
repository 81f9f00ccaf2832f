package roles

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// A connection over its byte budget is not read until the debt is paid;
// closing it wakes the paused reader at once.
func TestByteBudgetPausesAndWakesOnClose(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	paused := make(chan time.Duration, 1)
	c := newCorkConn(server)
	c.budget = newByteBudget(1024, 1024, func(d time.Duration) { paused <- d })
	go client.Write(make([]byte, 4096))

	// The full bucket pays for the first 1024 bytes, and the next read
	// may still go ahead: it is charged after it happens, as debt.
	buf := make([]byte, 4096)
	for i := range 2 {
		n, err := c.Read(buf)
		if err != nil || n != 1024 {
			t.Fatalf("read %d: %d bytes, %v; want 1024 (reads are cut to the burst)", i, n, err)
		}
	}
	if c.budget.tookPause() {
		t.Fatal("the burst paused")
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(buf)
		done <- err
	}()
	select {
	case d := <-paused:
		if d <= 0 || d > time.Second {
			t.Fatalf("paused for %v; want up to the second that pays for 1024 bytes", d)
		}
	case err := <-done:
		t.Fatalf("the second read did not pause: %v", err)
	}
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("paused read ended with %v, want net.ErrClosed", err)
	}
	if !c.budget.tookPause() {
		t.Fatal("the pause was not reported to the reader")
	}
	if newByteBudget(0, 1024, nil) != nil {
		t.Fatal("rate 0 must mean no budget")
	}
}

// The byte budget, one time instead of a rate.Limiter, paces as the
// limiter would: the same pause after every read of a sequence.
func TestByteBudgetPacesLikeATokenBucket(t *testing.T) {
	const perSec, burst = 1000, 500
	b := newByteBudget(perSec, burst, nil)
	lim := rate.NewLimiter(perSec, burst)
	start := time.Now()
	reads := []struct {
		at time.Duration
		n  int
	}{{0, 300}, {0, 200}, {0, 100}, {50 * time.Millisecond, 400}, {2 * time.Second, 10}, {2 * time.Second, 500}, {2100 * time.Millisecond, 1}}
	for i, r := range reads {
		now := start.Add(r.at)
		b.chargeAt(now, r.n)
		want := lim.ReserveN(now, r.n).DelayFrom(now)
		if got := b.next.Sub(now); max(got, 0)-want > time.Microsecond || want-max(got, 0) > time.Microsecond {
			t.Fatalf("read %d (%d bytes at %v): pause %v, want %v", i, r.n, r.at, max(got, 0), want)
		}
	}
}
