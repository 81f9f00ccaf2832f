package posts

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// stallConn runs hook on its first persistent frame (the publish_ack),
// before Publish goes on to index the post.
type stallConn struct {
	*fakeConn
	hook func(frame []byte)
}

func (c *stallConn) SendPersistent(frame []byte) bool {
	if h := c.hook; h != nil {
		c.hook = nil
		h(frame)
	}
	return c.fakeConn.SendPersistent(frame)
}

// A post hidden between its store in Redis and the publishing node's own
// indexing of it (the node slow to take its lock again, the brigade fast:
// the new post and its hide both applied from the channel meanwhile)
// stays hidden: Publish must not put back into the index a post the
// node holds aside. It did: admit only looked at the index.
func TestHiddenBeforePublishReturns(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		n := startNode(t, b.Options, Config{Clock: newClock().Now, QuotaN: 100})
		bounds := broker.ReportBounds{Reporters: 10, Details: 3, Queue: 10, HideAt: 3}
		c := &stallConn{fakeConn: newConn("7")}
		var id uint64
		c.hook = func(frame []byte) {
			var ack struct{ ID uint64 }
			if err := json.Unmarshal(frame, &ack); err != nil || ack.ID == 0 {
				t.Errorf("ack %s: %v", frame, err)
				return
			}
			id = ack.ID
			for _, by := range []string{"1", "2", "3"} {
				if _, err := n.b.ReportPost(ctx, id, broker.Report{By: by, Reason: "scam", At: 1, Aged: true}, bounds); err != nil {
					t.Errorf("report: %v", err)
				}
			}
			n.until(t, "the hide applied", func() bool { return n.hiddenHas(id) })
		}
		if err := n.Publish(ctx, c, req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, "10"))); err != nil {
			t.Fatal(err)
		}
		if n.has(id) || !n.hiddenHas(id) {
			t.Fatalf("post %d hidden before its Publish returned: in the index %v, held aside %v", id, n.has(id), n.hiddenHas(id))
		}
		other := newConn("20")
		subscribe(t, n, other, `{"cmd":"subscribe"}`)
		for _, f := range other.wait(t, 1) {
			for _, x := range itemsOrNone(f) {
				if x == id {
					t.Fatalf("another user's catch-up has the hidden post: %s", f)
				}
			}
		}
	})
}

func itemsOrNone(frame string) []uint64 {
	var m struct {
		Items []struct{ ID uint64 }
	}
	if json.Unmarshal([]byte(frame), &m) != nil {
		return nil
	}
	out := make([]uint64, 0, len(m.Items))
	for _, it := range m.Items {
		out = append(out, it.ID)
	}
	return out
}
