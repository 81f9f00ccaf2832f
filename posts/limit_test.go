package posts

import (
	"strconv"
	"testing"
	"time"
)

// An adversary that holds every slot of the table (one request per key
// keeps a key from being idle) cannot make a new legitimate client share a
// bucket it drained: the new client gets a bucket of its own.
func TestKeyedFullTableAdmitsNewClients(t *testing.T) {
	k := newKeyed(20, 40, 1000)
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < 1000; i++ {
		k.allow("attacker-"+strconv.Itoa(i), now)
	}
	for i := 0; i < 40; i++ { // drain the shared bucket from one more key
		k.allow("attacker-x", now)
	}
	now = now.Add(10 * time.Millisecond)
	if ok, _ := k.allow("legit-client", now); !ok {
		t.Fatalf("a new client's first read is refused: it shares the overflow bucket the adversary drained")
	}
}
