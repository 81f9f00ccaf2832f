package posts

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

// The per-author lists stay exactly the live posts of each author, in id
// order, through inserts out of order, removals and compactions; an
// author with no post left has no list.
func TestIndexByFrom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := newIndex(0)
	ids := r.Perm(2000)
	for k, i := range ids {
		x.insert(&Post{ID: uint64(i + 1), Date: 100, From: fmt.Sprint(i % 37), JSON: []byte("{}")})
		if k%3 == 0 {
			x.remove(uint64(ids[r.IntN(k+1)] + 1))
			x.tidy()
		}
	}
	x.removeOlder(200)
	if len(x.byFrom) != 0 {
		t.Fatalf("every post expired, %d authors left", len(x.byFrom))
	}
	for k, i := range r.Perm(500) {
		x.insert(&Post{ID: uint64(3000 + i), Date: 300, From: fmt.Sprint(i % 7), JSON: []byte("{}")})
		if k%2 == 0 {
			x.remove(uint64(3000 + r.IntN(500)))
		}
	}
	// An author whose posts mostly went keeps no large array.
	for i := range 100 {
		x.insert(&Post{ID: uint64(10_000 + i), Date: 300, From: "z", JSON: []byte("{}")})
	}
	for i := range 90 {
		x.remove(uint64(10_000 + i))
	}
	if l := x.byFrom["z"]; len(l) != 10 || cap(l) >= 64 || l[0].ID != 10_090 {
		t.Fatalf("author z after 90 of 100 removed: len %d cap %d", len(l), cap(l))
	}
	want := map[string][]uint64{}
	for _, p := range x.byID {
		want[p.From] = append(want[p.From], p.ID)
	}
	if len(want) != len(x.byFrom) {
		t.Fatalf("%d authors listed, want %d", len(x.byFrom), len(want))
	}
	for from, l := range want {
		slices.Sort(l)
		var got []uint64
		for _, p := range x.byFrom[from] {
			if !p.alive() {
				t.Fatalf("author %s lists dead post %d", from, p.ID)
			}
			got = append(got, p.ID)
		}
		if !slices.Equal(got, l) {
			t.Fatalf("author %s: %v, want %v", from, got, l)
		}
	}
}

// mineAck decodes a my_posts_ack.
type mineAck struct {
	Cmd, Result string
	Items       []map[string]any
	Next        uint64
}

func (n *node) mine(t testing.TB, c *fakeConn, frame string) mineAck {
	t.Helper()
	k := len(c.frames())
	if err := n.Mine(context.Background(), c, req(t, frame)); err != nil {
		t.Fatalf("%s: %v", frame, err)
	}
	var a mineAck
	got := c.wait(t, k+1)[k]
	if err := json.Unmarshal([]byte(got), &a); err != nil || a.Cmd != "my_posts_ack" || a.Result != "ok" {
		t.Fatalf("%s: %s", frame, got)
	}
	return a
}

func (a mineAck) ids() []uint64 {
	var out []uint64
	for _, it := range a.Items {
		out = append(out, uint64(it["id"].(float64)))
	}
	return out
}

// my_posts answers a user's own live posts from any node, newest first,
// paged, hidden ones marked, no one else's, deleted and expired ones
// gone; a bad cursor is malformed and a burst past the budget is refused.
func TestMyPosts(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 100, MaxCatchUp: 2, SubscribeRate: 1, SubscribeBurst: 10}
		a := startNode(t, b.Options, cfg)
		n := startNode(t, b.Options, cfg)
		seller := newConn("7")
		var mine []uint64
		for i := range 3 {
			mine = append(mine, a.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, fmt.Sprint(10+i))))
		}
		other := a.publish(t, newConn("8"), publishFrame("[0,1,2]", "[0,3,7]", 1, "99"))
		n.until(t, "the posts on the second node", func() bool { return n.has(mine[2]) && n.has(other) })

		asker := newConn("7")
		p1 := n.mine(t, asker, `{"cmd":"my_posts"}`)
		if fmt.Sprint(p1.ids()) != fmt.Sprint([]uint64{mine[2], mine[1]}) || p1.Next != mine[1] {
			t.Fatalf("first page %v next %d, want the two newest of %v", p1.ids(), p1.Next, mine)
		}
		p2 := n.mine(t, asker, fmt.Sprintf(`{"cmd":"my_posts","before":%d}`, p1.Next))
		if fmt.Sprint(p2.ids()) != fmt.Sprint([]uint64{mine[0]}) || p2.Next != 0 {
			t.Fatalf("second page %v next %d, want %d and no cursor", p2.ids(), p2.Next, mine[0])
		}
		if c := n.MineCount("7"); c != 3 {
			t.Fatalf("MineCount %d, want 3", c)
		}
		if got := n.mine(t, newConn("9"), `{"cmd":"my_posts"}`); len(got.Items) != 0 {
			t.Fatalf("a user with no posts got %v", got.ids())
		}

		// Hidden pending review: still listed, in its place, marked.
		bounds := broker.ReportBounds{Reporters: 10, Details: 3, Queue: 10, HideAt: 3}
		for _, by := range []string{"1", "2", "3"} {
			if _, err := a.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"scam"}`, mine[1])), bounds); err != nil {
				t.Fatal(err)
			}
		}
		n.until(t, "the post hidden", func() bool { return n.hiddenHas(mine[1]) && !n.has(mine[1]) })
		p1 = n.mine(t, asker, `{"cmd":"my_posts"}`)
		if fmt.Sprint(p1.ids()) != fmt.Sprint([]uint64{mine[2], mine[1]}) || p1.Items[1]["under_review"] != true ||
			p1.Items[0]["under_review"] != nil || p1.Items[1]["from"] != "7" {
			t.Fatalf("with post %d hidden: %+v", mine[1], p1)
		}
		if c := n.MineCount("7"); c != 3 {
			t.Fatalf("MineCount with a hidden post %d, want 3", c)
		}
		// A node started now loads it hidden, and lists it so too.
		late := startNode(t, b.Options, cfg)
		if got := late.mine(t, newConn("7"), `{"cmd":"my_posts","before":`+fmt.Sprint(mine[2])+`}`); fmt.Sprint(got.ids()) != fmt.Sprint([]uint64{mine[1], mine[0]}) ||
			got.Items[0]["under_review"] != true || got.Items[1]["under_review"] != nil {
			t.Fatalf("a node started after the hide: %+v", got)
		}
		// Another user never sees it, nor gets the seller's posts.
		if got := n.mine(t, newConn("8"), `{"cmd":"my_posts"}`); fmt.Sprint(got.ids()) != fmt.Sprint([]uint64{other}) {
			t.Fatalf("user 8 got %v, want only %d", got.ids(), other)
		}

		// Edited while hidden: the new version, still marked; dismissed:
		// unmarked; hidden again.
		if _, _, err := a.b.ChangePost(ctx, mine[1], "7", clk.Now().Unix(), broker.PostChange{Kind: "status", Status: "sold"}); err != nil {
			t.Fatal(err)
		}
		n.until(t, "the change held aside", func() bool {
			n.mu.RLock()
			defer n.mu.RUnlock()
			h := n.hidden[mine[1]]
			return h != nil && strings.Contains(string(h.JSON), "sold")
		})
		if got := n.mine(t, asker, `{"cmd":"my_posts"}`); got.Items[1]["status"] != "sold" || got.Items[1]["under_review"] != true {
			t.Fatalf("edited while hidden: %+v", got.Items)
		}
		if _, shown, err := a.b.DismissReports(ctx, mine[1]); err != nil || !shown {
			t.Fatalf("dismiss: %v %v", shown, err)
		}
		n.until(t, "the post shown", func() bool { return n.has(mine[1]) })
		if got := n.mine(t, asker, `{"cmd":"my_posts"}`); fmt.Sprint(got.ids()) != fmt.Sprint([]uint64{mine[2], mine[1]}) ||
			got.Items[1]["under_review"] != nil || got.Items[1]["status"] != "sold" {
			t.Fatalf("after the dismissal: %+v", got.Items)
		}
		for _, by := range []string{"4", "5", "6"} {
			if _, err := a.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"spam"}`, mine[1])), bounds); err != nil {
				t.Fatal(err)
			}
		}
		n.until(t, "hidden again", func() bool { return n.hiddenHas(mine[1]) })

		// Deleted (the hidden one): gone.
		if err := a.Delete(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, mine[1]))); err != nil {
			t.Fatal(err)
		}
		n.until(t, "the deletion", func() bool { return !n.hiddenHas(mine[1]) })
		if got := n.mine(t, asker, `{"cmd":"my_posts"}`); fmt.Sprint(got.ids()) != fmt.Sprint([]uint64{mine[2], mine[0]}) {
			t.Fatalf("after the deletion %v", got.ids())
		}

		// Expired: gone at once from the answer, swept or not.
		clk.Add(DefaultConfig().Expiry + time.Hour)
		if got := n.mine(t, asker, `{"cmd":"my_posts"}`); len(got.Items) != 0 || got.Next != 0 {
			t.Fatalf("after expiry %+v", got)
		}
		if err := n.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if c := n.MineCount("7"); c != 0 {
			t.Fatalf("MineCount after the sweep %d", c)
		}

		// Bounds: a cursor that is no id closes; the budget refuses.
		if err := n.Mine(ctx, asker, req(t, `{"cmd":"my_posts","before":"x"}`)); !isMalformed(err) {
			t.Fatalf("a string cursor: %v", err)
		}
		var err error
		for range 12 {
			if err = n.Mine(ctx, newConn("30"), req(t, `{"cmd":"my_posts"}`)); err != nil {
				break
			}
		}
		if reason(err) != wire.RateLimited || !strings.Contains(err.Error(), "try again") {
			t.Fatalf("past the burst: %v", err)
		}
	})
}

// docs/protocol.md "My listings beyond a node's bound": a node whose
// --max-posts is lower than the publishing node's drops the oldest posts
// from its index, and still lists all of a seller's live listings (from
// Redis, merged with its index), paged, newest first, no one else's; a
// listing deleted is gone at once; hidden ones keep their mark. A node
// that never dropped a post does not read Redis.
func TestMyPostsBeyondTheBound(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 100, MaxCatchUp: 4, SubscribeRate: 1, SubscribeBurst: 20}
		a, n, seller, mine, other := beyondTheBound(t, b.Options, cfg)
		if n.size() != 3 || n.has(mine[2]) || n.Stats().Evicted == 0 {
			t.Fatalf("the small node holds %d posts (evicted %d)", n.size(), n.Stats().Evicted)
		}
		brokertest.Poll(t, 10*time.Second, "the authors' sets backfilled", n.mineReady.Load)
		if a.mineReady.Load() {
			t.Fatal("a node that dropped nothing reads Redis")
		}

		asker := newConn("7")
		p1 := n.mine(t, asker, `{"cmd":"my_posts"}`)
		if fmt.Sprint(p1.ids()) != fmt.Sprint([]uint64{mine[5], mine[4], mine[3], mine[2]}) || p1.Next != mine[2] {
			t.Fatalf("first page %v next %d, want the four newest of %v", p1.ids(), p1.Next, mine)
		}
		p2 := n.mine(t, asker, fmt.Sprintf(`{"cmd":"my_posts","before":%d}`, p1.Next))
		if fmt.Sprint(p2.ids()) != fmt.Sprint([]uint64{mine[1], mine[0]}) || p2.Next != 0 {
			t.Fatalf("second page %v next %d", p2.ids(), p2.Next)
		}
		for _, it := range append(p1.Items, p2.Items...) {
			if it["from"] != "7" || it["under_review"] != nil {
				t.Fatalf("an item %v", it)
			}
		}
		if got := n.mine(t, newConn("8"), `{"cmd":"my_posts"}`); fmt.Sprint(got.ids()) != fmt.Sprint([]uint64{other}) {
			t.Fatalf("user 8 got %v", got.ids())
		}
		// Deleted (one the small node dropped): gone.
		if err := a.Delete(context.Background(), seller, req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, mine[0]))); err != nil {
			t.Fatal(err)
		}
		if got := n.mine(t, asker, fmt.Sprintf(`{"cmd":"my_posts","before":%d}`, p1.Next)); fmt.Sprint(got.ids()) != fmt.Sprint([]uint64{mine[1]}) {
			t.Fatalf("after the deletion %v", got.ids())
		}
		// Expired (the clock past the expiry; not swept yet): left out.
		clk.Add(a.cfg.Expiry + time.Hour)
		if got := n.mine(t, asker, `{"cmd":"my_posts"}`); len(got.Items) != 0 {
			t.Fatalf("expired listings listed: %v", got.ids())
		}
	})
}
