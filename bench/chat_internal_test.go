package bench

import (
	"sync/atomic"
	"testing"
)

// The drain waits on missing: accepted messages not delivered yet, in
// whichever order the reply and the delivery are read, and not fooled by
// a delivered message whose reply was lost with its connection.
func TestArrivedCountsMissingExactly(t *testing.T) {
	var a arrived
	var missing atomic.Int64
	step := func(name string, fn func(), want int64) {
		t.Helper()
		fn()
		if got := missing.Load(); got != want {
			t.Fatalf("%s: missing %d, want %d", name, got, want)
		}
	}
	step("1 accepted", func() { a.ack(1, &missing) }, 1)
	step("1 delivered", func() { a.deliver(1, &missing) }, 0)
	step("2 delivered before its reply", func() { a.deliver(2, &missing) }, 0)
	step("2 accepted after", func() { a.ack(2, &missing) }, 0)
	step("3 delivered, its reply lost", func() { a.deliver(3, &missing) }, 0)
	step("4 accepted", func() { a.ack(4, &missing) }, 1)
	step("4 accepted twice", func() { a.ack(4, &missing) }, 1)
	step("5 accepted", func() { a.ack(5, &missing) }, 2)
	step("4 delivered", func() { a.deliver(4, &missing) }, 1)
	step("4 delivered again", func() { a.deliver(4, &missing) }, 1)
	step("5 delivered", func() { a.deliver(5, &missing) }, 0)
}
