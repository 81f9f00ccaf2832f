package roles

import (
	"strconv"
	"testing"
	"time"
)

// The registration limiter's table is bounded: rotating addresses cannot
// grow it, and a new address still gets a bucket of its own.
func TestAddrLimiterBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := newAddrLimiter(0.001, 1, func() time.Time { return now })
	for i := 0; i < maxLimitedAddrs+1000; i++ {
		a.allow("203.0.113." + strconv.Itoa(i))
	}
	if n := a.l.Len(); n != maxLimitedAddrs {
		t.Fatalf("%d addresses held, want the bound %d", n, maxLimitedAddrs)
	}
	if !a.allow("198.51.100.1") {
		t.Fatal("a new address refused once the table is full")
	}
	if a.allow("198.51.100.1") {
		t.Fatal("burst 1 admitted twice")
	}
	if !newAddrLimiter(0, 1, nil).allow("x") {
		t.Fatal("rate 0 (no limit) refused")
	}
}
