package posts

import (
	"fmt"
	"strings"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

// A connection that subscribes again gets a post inserted between
// the catch-up's locks once: from its old subscription's fan-out, not
// again from the new one's replay.
func TestResubscribeSendsPostBetweenLocksOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, SubscribeRate: -1})
		pub := newConn("7")
		first := n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		c := newConn("8")
		subscribe(t, n, c, `{"cmd":"subscribe"}`)
		before := len(c.frames())
		n.betweenLocks = func() {
			n.apply(fmt.Sprintf(`{"op":"post","origin":"x","post":{"id":500,"from":"1","body":"","to":[[[0,1,2]],[[0,3,7]]],"features":1,"date":%d,"range_values":[]}}`, clk.Now().Unix()))
		}
		subscribe(t, n, c, fmt.Sprintf(`{"cmd":"subscribe","last_post_id":%d}`, first))
		got := 0
		for _, f := range c.frames()[before:] {
			if strings.Contains(f, `"id":500,`) {
				got++
			}
		}
		if got != 1 {
			t.Fatalf("post 500 reached the connection %d times: %v", got, c.frames()[before:])
		}
	})
}

// The same when so much arrives between the locks that the catch-up is read
// again under the write lock: the posts the old subscription was sent
// meanwhile are not in the new catch-up.
func TestResubscribeAfterLongGapSendsEachPostOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, SubscribeRate: -1, MaxCatchUp: 5000})
		pub := newConn("7")
		first := n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		c := newConn("8")
		subscribe(t, n, c, `{"cmd":"subscribe"}`)
		before := len(c.frames())
		n.betweenLocks = func() {
			for i := 0; i < 1100; i++ {
				n.apply(fmt.Sprintf(`{"op":"post","origin":"x","post":{"id":%d,"from":"1","body":"","to":[[[0,1,2]],[[0,3,7]]],"features":1,"date":%d,"range_values":[]}}`, 1000+i, clk.Now().Unix()))
			}
		}
		subscribe(t, n, c, fmt.Sprintf(`{"cmd":"subscribe","last_post_id":%d}`, first))
		seen := map[string]int{}
		for _, f := range c.frames()[before:] {
			for i := 1000; i < 2100; i++ {
				if strings.Contains(f, fmt.Sprintf(`"id":%d,`, i)) {
					seen[fmt.Sprint(i)]++
				}
			}
		}
		for id, k := range seen {
			if k != 1 {
				t.Fatalf("post %s reached the connection %d times", id, k)
			}
		}
		if len(seen) != 1100 {
			t.Fatalf("%d of the 1100 posts reached the connection", len(seen))
		}
	})
}
