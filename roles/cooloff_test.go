package roles

import (
	"testing"
	"time"
)

func TestCoolOff(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCoolOff(10 * time.Second)
	c.max = 2
	c.add("u:1", now)
	if d := c.wait("u:1", now.Add(4*time.Second)); d != 6*time.Second {
		t.Fatalf("wait after 4 s = %v, want 6s", d)
	}
	if d := c.wait("u:2", now); d != 0 {
		t.Fatalf("a key never added waits %v", d)
	}
	if d := c.wait("u:1", now.Add(10*time.Second)); d != 0 {
		t.Fatalf("wait after the cooling-off = %v", d)
	}
	// A full table makes room from what expired, else records nothing.
	c.add("a", now)
	c.add("b", now)
	c.add("c", now.Add(time.Second))
	if c.wait("c", now.Add(time.Second)) != 0 || len(c.until) != 2 {
		t.Fatalf("a full table took a new key: %v", c.until)
	}
	c.add("c", now.Add(11*time.Second))
	if c.wait("c", now.Add(11*time.Second)) != 10*time.Second {
		t.Fatalf("expired entries were not swept for a new key: %v", c.until)
	}
	if newCoolOff(0) != nil || (*coolOff)(nil).wait("x", now) != 0 {
		t.Fatal("a zero cooling-off is off")
	}
}
