package broker

import "time"

// Backoff is the wait between attempts to reach Redis again: it starts at
// First and doubles up to Max; Reset starts over after a success. The zero
// value of a field takes 100 ms and 2 s.
type Backoff struct {
	First, Max time.Duration
	next       time.Duration
}

// Wait sleeps for the next delay and reports true, or returns false as
// soon as stop is closed.
func (b *Backoff) Wait(stop <-chan struct{}) bool {
	if b.next == 0 {
		b.next = b.First
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
		return false
	}
	b.next = min(2*b.next, b.Max)
	return true
}

// Reset makes the next Wait the first delay again.
func (b *Backoff) Reset() { b.next = 0 }
