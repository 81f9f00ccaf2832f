package posts

import (
	"context"
	"fmt"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

// An account deletion on a node whose index dropped the author's oldest
// posts (--max-posts lower than the publisher's) deletes them all, those
// only Redis holds included, and the author's {posts}:mine:<user> goes
// with the last. Before, it deleted only what its index held: the others
// stayed live (listed and searched on the nodes that hold them) with no
// account behind them, and so did the set. On a real redis-server and
// the embedded broker.
func TestDeleteAllOfBeyondTheBound(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		a, n, _, mine, other := beyondTheBound(t, b.Options, Config{Clock: clk.Now, QuotaN: 100})
		if n.has(mine[0]) {
			t.Fatal("the small node holds the oldest post")
		}
		ctx := context.Background()
		k, err := n.DeleteAllOf(ctx, "7")
		if err != nil || k != len(mine) {
			t.Fatalf("DeleteAllOf: %d %v, want %d", k, err, len(mine))
		}
		if c, _ := n.b.PostCount(ctx); c != 1 {
			t.Fatalf("%d posts left in Redis, want only post %d", c, other)
		}
		if left, err := n.b.MinePosts(ctx, "7", 0, 100); err != nil || len(left) != 0 {
			t.Fatalf("the author's set after the deletion: %d %v", len(left), err)
		}
		raw := brokertest.Raw(t, b.Options.Addrs[0])
		if e, err := raw.Do(ctx, raw.B().Exists().Key(b.Options.Prefix+"{posts}:mine:7").Build()).AsInt64(); err != nil || e != 0 {
			t.Fatalf("mine:7 still exists: %d %v", e, err)
		}
		a.until(t, "the deleted posts gone from the big node", func() bool { return !a.has(mine[0]) && !a.has(mine[5]) })
	})
}

// A member of {posts}:mine:<user> whose post went without the set being
// told (a node of the version before the set deleted or expired it,
// during a rolling upgrade) does not keep the set alive after the
// account: the account deletion drops what is stale, and the key goes.
// On a real redis-server and the embedded broker.
func TestDeleteAllOfDropsStaleMine(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 100}
		a := startNode(t, b.Options, cfg)
		seller := newConn("7")
		id := a.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, "10"))
		ctx := context.Background()
		raw := brokertest.Raw(t, b.Options.Addrs[0])
		// As the delete script of the version before the set did.
		for _, k := range []string{"data", "owner"} {
			if err := raw.Do(ctx, raw.B().Hdel().Key(b.Options.Prefix+"{posts}:"+k).Field(fmt.Sprint(id)).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.DeleteAllOf(ctx, "7"); err != nil {
			t.Fatal(err)
		}
		if e, err := raw.Do(ctx, raw.B().Exists().Key(b.Options.Prefix+"{posts}:mine:7").Build()).AsInt64(); err != nil || e != 0 {
			t.Fatalf("mine:7 after the account's deletion: exists %d %v", e, err)
		}
	})
}
