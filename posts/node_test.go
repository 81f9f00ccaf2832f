package posts

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

const (
	// Channel hashes at depth 3 (PROTOCOL.md section 4 examples).
	h012 = 2097154       // [0,1,2]
	h037 = 6291463       // [0,3,7]
	h110 = 4398048608256 // [1,1,0]
)

func subscribe(t testing.TB, n *node, c *fakeConn, frame string) {
	t.Helper()
	if err := n.Subscribe(context.Background(), c, req(t, frame)); err != nil {
		t.Fatalf("subscribe %s: %v", frame, err)
	}
}

func TestTwoNodesLiveFanOut(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)

		byProduct := newConn("1")
		subscribe(t, n1, byProduct, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]]}`, h037))
		byLocation := newConn("2")
		subscribe(t, n1, byLocation, fmt.Sprintf(`{"cmd":"subscribe","channels":[[%d],[]]}`, h012))
		byFeature := newConn("3")
		subscribe(t, n1, byFeature, `{"cmd":"subscribe","any_of_features":8}`)
		byRange := newConn("4")
		subscribe(t, n1, byRange, `{"cmd":"subscribe","ranges":[0,1000]}`)
		seenAll := newConn("5")
		subscribe(t, n1, seenAll, `{"cmd":"subscribe","last_post_id":1000000}`)
		for _, c := range []*fakeConn{byProduct, byLocation, byFeature, byRange, seenAll} {
			if f := c.frames(); len(f) != 1 || f[0] != `{"cmd":"subscribe_ack","result":"ok"}` {
				t.Fatalf("after subscribe: %v", f)
			}
		}

		// The publisher, on the other node, watches everything.
		pub := newConn("42")
		subscribe(t, n2, pub, `{"cmd":"subscribe"}`)
		id := n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, "27000,2016"))
		f := pub.wait(t, 3)
		if !strings.HasPrefix(f[1], `{"cmd":"publish_ack","result":"ok","id":`) || items(t, f[2])[0] != id {
			t.Fatalf("publisher got %v, want its ack then its own post", f)
		}
		want := fmt.Sprintf(`{"cmd":"post","items":[{"id":%d,"from":"42","body":"{\"msg\":\"hi\"}","to":[[[0,1,2]],[[0,3,7]]],"features":1,"date":%d,"range_values":[27000,2016]}]}`,
			id, clk.Now().Unix())
		if f[2] != want {
			t.Fatalf("echo\n got %s\nwant %s", f[2], want)
		}
		if got := byProduct.wait(t, 2)[1]; got != want {
			t.Fatalf("product subscriber got %s", got)
		}
		if got := byLocation.wait(t, 2)[1]; got != want {
			t.Fatalf("location subscriber got %s", got)
		}

		// A second post that every filter lets through shows, by order on the
		// channel, that the first one was withheld from those it did not match.
		id2 := n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 8, "500"))
		for _, c := range []*fakeConn{byFeature, byRange} {
			f := c.wait(t, 2)
			if len(f) != 2 || items(t, f[1])[0] != id2 {
				t.Fatalf("user %s got %v, want only post %d", c.user, f, id2)
			}
		}
		if f := byProduct.wait(t, 3); items(t, f[2])[0] != id2 {
			t.Fatalf("product subscriber: %v", f)
		}
		// A last_post_id above every stored post asks for no catch-up, and
		// every later post arrives (PROTOCOL.md section 4; issue 11.2).
		if f := seenAll.wait(t, 3); len(f) != 3 || items(t, f[1])[0] != id || items(t, f[2])[0] != id2 {
			t.Fatalf("subscriber past every id got %v, want posts %d and %d", f, id, id2)
		}
	})
}

func TestBurstAcksAndCatchUpPaging(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 2000, SubscribeRate: -1}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		pub := newConn("7")
		const total = 1000
		for i := 0; i < total; i++ {
			prod := "[0,3,7]"
			if i%2 == 1 {
				prod = "[1,1,0]"
			}
			r := req(t, publishFrame("[0,1,2]", prod, 1, ""))
			if err := n2.Publish(context.Background(), pub, r); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		// One ack per request, in order, with increasing ids.
		f := pub.frames()
		if len(f) != total {
			t.Fatalf("%d frames for %d publishes", len(f), total)
		}
		var last uint64
		for i, fr := range f {
			var id uint64
			if _, err := fmt.Sscanf(fr, `{"cmd":"publish_ack","result":"ok","id":%d,`, &id); err != nil || id <= last {
				t.Fatalf("ack %d = %s after id %d", i, fr, last)
			}
			last = id
		}
		n1.until(t, "node 1 holds every post", func() bool { return n1.size() == total })

		// Paging forward through the backlog, 100 at a time, oldest first.
		page := func(filter string, wantTotal int) {
			c := newConn("9")
			var after uint64
			var got []uint64
			for round := 0; ; round++ {
				before := len(c.frames())
				subscribe(t, n1, c, fmt.Sprintf(`{"cmd":"subscribe","last_post_id":%d%s}`, after, filter))
				fr := c.frames()[before:]
				if fr[0] != `{"cmd":"subscribe_ack","result":"ok"}` {
					t.Fatalf("first frame after subscribe: %s", fr[0])
				}
				if len(fr) == 1 {
					break
				}
				ids := items(t, fr[1])
				if len(fr) != 2 || len(ids) > 100 {
					t.Fatalf("round %d: %d frames, %d items", round, len(fr), len(ids))
				}
				for _, id := range ids {
					if id <= after {
						t.Fatalf("round %d: id %d not above %d", round, id, after)
					}
					after = id
				}
				got = append(got, ids...)
			}
			if len(got) != wantTotal {
				t.Fatalf("paged through %d posts, want %d", len(got), wantTotal)
			}
		}
		page("", total)
		page(fmt.Sprintf(`,"channels":[[],[%d]]`, h110), total/2)
		page(`,"any_of_features":2`, 0)
	})
}

func TestRestartedNodeRebuildsIndex(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now}
		n1 := startNode(t, b.Options, cfg)
		pub := newConn("7")
		var ids []uint64
		for i := 0; i < 5; i++ {
			ids = append(ids, n1.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		}
		if err := n1.Delete(context.Background(), pub, req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, ids[2]))); err != nil {
			t.Fatal(err)
		}
		// A fresh node (a restarted process) loads what Redis holds.
		n3 := startNode(t, b.Options, cfg)
		if n3.size() != 4 || n3.has(ids[2]) {
			t.Fatalf("restarted node holds %d posts (deleted one: %v), want 4", n3.size(), n3.has(ids[2]))
		}
		c := newConn("8")
		subscribe(t, n3, c, `{"cmd":"subscribe"}`)
		if got := fmt.Sprint(items(t, c.wait(t, 2)[1])); got != fmt.Sprint([]uint64{ids[0], ids[1], ids[3], ids[4]}) {
			t.Fatalf("catch-up %s", got)
		}

		// A reload (what a Redis reconnect triggers) delivers what was
		// stored meanwhile without a broadcast, once, and skips what does
		// not parse.
		ctx := context.Background()
		n3.b.RawStorePost(ctx, 1000, `{"id":1000,"from":"9","body":"","to":[[[0]],[[1]]],"features":0,"date":`+
			fmt.Sprint(clk.Now().Unix())+`,"range_values":[]}`, clk.Now().Unix())
		n3.b.RawStorePost(ctx, 1001, `{"id":"garbage"`, clk.Now().Unix())
		n3.in.push(item{reload: true})
		f := c.wait(t, 3)
		if got := items(t, f[2]); len(got) != 1 || got[0] != 1000 {
			t.Fatalf("after reload: %v", f)
		}
		// Nothing else happens on this node: each signal is one reload.
		<-n3.applied
		n3.in.push(item{reload: true})
		<-n3.applied
		if f := c.frames(); len(f) != 3 || n3.size() != 5 {
			t.Fatalf("a second reload changed things: %d posts, frames %v", n3.size(), f)
		}
	})
}

func TestRedisRestartReloads(t *testing.T) {
	r := brokertest.StartRedis(t)
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()}
	clk := newClock()
	cfg := Config{Clock: clk.Now}
	n1 := startNode(t, opt, cfg)
	n2 := startNode(t, opt, cfg)
	pub := newConn("7")
	n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
	n1.until(t, "node 1 has the post", func() bool { return n1.size() == 1 })
	sub := newConn("8")
	subscribe(t, n1, sub, `{"cmd":"subscribe"}`)
	sub.wait(t, 2)

	// The restarted Redis is empty (no persistence): both nodes reload and
	// drop what it no longer holds; then posts flow again.
	r.Restart()
	n1.until(t, "node 1 reloaded", func() bool { return n1.size() == 0 })
	n2.until(t, "node 2 reloaded", func() bool { return n2.size() == 0 })
	var err error
	for i := 0; i < 50; i++ {
		// The first command on a pooled connection that died fails fast.
		if err = n2.Publish(context.Background(), pub, req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))); err == nil {
			break
		}
		if reason(err) != wire.Unavailable {
			t.Fatalf("publish after restart: %v", err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if f := sub.wait(t, 3); items(t, f[2])[0] != 1 {
		t.Fatalf("after the restart the subscriber got %v", f)
	}
}

func TestDeleteReachesEveryNode(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		author, other := newConn("7"), newConn("8")
		id := n2.publish(t, author, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		n1.until(t, "node 1 has the post", func() bool { return n1.has(id) })
		ctx := context.Background()
		del := func(n *node, c *fakeConn, frame string) error {
			before := len(c.frames())
			err := n.Delete(ctx, c, req(t, frame))
			if err != nil && len(c.frames()) != before {
				t.Fatalf("a failed delete sent %v", c.frames()[before:])
			}
			return err
		}
		frame := fmt.Sprintf(`{"cmd":"delete","id":%d}`, id)
		if err := del(n1, other, frame); reason(err) != wire.NotOwner || isMalformed(err) {
			t.Fatalf("delete by another user: %v", err)
		}
		if err := del(n1, author, `{"cmd":"delete","id":999999}`); reason(err) != wire.NotFound {
			t.Fatalf("delete of an unknown id: %v", err)
		}
		if err := del(n1, author, `{"cmd":"delete","id":-4}`); reason(err) != wire.NotFound || isMalformed(err) {
			t.Fatalf("delete of a negative id: %v", err)
		}
		if err := del(n1, author, `{"cmd":"delete"}`); !isMalformed(err) {
			t.Fatalf("delete without id: %v", err)
		}
		if err := del(n1, author, `{"cmd":"delete","id":"1"}`); !isMalformed(err) {
			t.Fatalf("delete with a string id: %v", err)
		}
		if !n1.has(id) || !n2.has(id) {
			t.Fatal("a failed delete removed the post")
		}
		if err := del(n2, author, frame); err != nil {
			t.Fatal(err)
		}
		if f := author.frames(); f[len(f)-1] != fmt.Sprintf(`{"cmd":"delete_ack","result":"ok","id":%d}`, id) {
			t.Fatalf("author got %v", f)
		}
		if n2.has(id) {
			t.Fatal("the deleting node still holds the post after the ack")
		}
		n1.until(t, "node 1 drops the post", func() bool { return !n1.has(id) })
		c := newConn("9")
		subscribe(t, n1, c, `{"cmd":"subscribe"}`)
		if f := c.frames(); len(f) != 1 {
			t.Fatalf("catch-up after delete: %v", f)
		}
		if n, _ := n1.b.PostCount(ctx); n != 0 {
			t.Fatalf("redis still holds %d posts", n)
		}
	})
}

func TestExpiry(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, Expiry: 24 * time.Hour}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		pub := newConn("7")
		old := n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		clk.Add(12 * time.Hour)
		young := n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		n1.until(t, "node 1 has both", func() bool { return n1.size() == 2 })

		clk.Add(12 * time.Hour) // old is now exactly 24 h old
		// Before any sweep, an expired post is never returned.
		c := newConn("9")
		subscribe(t, n1, c, `{"cmd":"subscribe"}`)
		if got := items(t, c.wait(t, 2)[1]); len(got) != 1 || got[0] != young {
			t.Fatalf("catch-up after expiry: %v", got)
		}
		// The sweep of one node removes it from Redis and every node.
		if err := n2.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n2.has(old) {
			t.Fatal("the sweeping node kept the expired post")
		}
		n1.until(t, "node 1 drops the expired post", func() bool { return !n1.has(old) })
		if n, _ := n1.b.PostCount(context.Background()); n != 1 || !n1.has(young) {
			t.Fatalf("redis holds %d posts, want the young one", n)
		}
		// A broadcast of an already expired post is not applied.
		n1.b.Publish(context.Background(), n1.b.Key(broker.PostsChannel),
			fmt.Sprintf(`{"op":"post","origin":"x","post":{"id":77,"from":"1","body":"","to":[[[0]],[[0]]],"features":0,"date":%d,"range_values":[]}}`,
				clk.Now().Add(-25*time.Hour).Unix()))
		n1.b.Publish(context.Background(), n1.b.Key(broker.PostsChannel),
			fmt.Sprintf(`{"op":"post","origin":"x","post":{"id":78,"from":"1","body":"","to":[[[0]],[[0]]],"features":0,"date":%d,"range_values":[]}}`,
				clk.Now().Unix()))
		n1.until(t, "node 1 applies the fresh broadcast", func() bool { return n1.has(78) })
		if n1.has(77) {
			t.Fatal("an expired broadcast post was applied")
		}
	})
}

func TestQuotaRefillsByTime(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 2, QuotaPeriod: time.Hour}
		n := startNode(t, b.Options, cfg)
		ctx := context.Background()
		c := newConn("7")
		if r, err := n.RemainingPosts(ctx, "7"); err != nil || r != 2 {
			t.Fatalf("remaining %d (%v), want 2", r, err)
		}
		n.publish(t, c, publishFrame("[0]", "[0]", 0, ""))
		clk.Add(30 * time.Minute)
		n.publish(t, c, publishFrame("[0]", "[0]", 0, ""))
		if f := c.frames(); !strings.HasSuffix(f[1], `"remaining_posts":0}`) {
			t.Fatalf("second ack %s", f[1])
		}
		before := len(c.frames())
		err := n.Publish(ctx, c, req(t, publishFrame("[0]", "[0]", 0, "")))
		if reason(err) != wire.QuotaExceeded || isMalformed(err) || len(c.frames()) != before {
			t.Fatalf("third publish: %v, frames %v", err, c.frames()[before:])
		}
		if r, _ := n.RemainingPosts(ctx, "7"); r != 0 {
			t.Fatalf("remaining %d, want 0", r)
		}
		// An hour after the first publish, one is back; no login needed.
		clk.Add(30 * time.Minute)
		if r, _ := n.RemainingPosts(ctx, "7"); r != 1 {
			t.Fatalf("remaining %d, want 1", r)
		}
		n.publish(t, c, publishFrame("[0]", "[0]", 0, ""))
		clk.Add(time.Hour)
		if r, _ := n.RemainingPosts(ctx, "7"); r != 2 {
			t.Fatalf("remaining %d, want 2", r)
		}
		// Other users have their own quota.
		if r, _ := n.RemainingPosts(ctx, "8"); r != 2 {
			t.Fatalf("another user has %d", r)
		}
	})
}

func TestBadInput(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, Menu: DemoMenu(), Limits: Limits{MaxBody: 100}}
		n := startNode(t, b.Options, cfg)
		ctx := context.Background()
		c := newConn("7")
		tests := []struct {
			name, frame string
			want        string // reason, or "malformed"
		}{
			{"location outside the menu", publishFrame("[9,0,0]", "[0,0,0]", 0, ""), wire.BadRequest},
			{"product outside the menu", publishFrame("[0,0,0]", "[0,0,9]", 0, ""), wire.BadRequest},
			{"code above the depth", publishFrame("[0,0]", "[0,0,0]", 0, ""), wire.BadRequest},
			{"component too wide", publishFrame("[4194304,0,0]", "[0,0,0]", 0, ""), wire.BadRequest},
			{"two items", `{"cmd":"publish","items":[{"body":"","to":[[[0,0,0]],[[0,0,0]]]},{"body":"","to":[[[0,0,0]],[[0,0,0]]]}]}`, "malformed"},
			{"oversized body", `{"cmd":"publish","items":[{"body":"` + strings.Repeat("a", 100) + `","to":[[[0,0,0]],[[0,0,0]]]}]}`, wire.TooLarge},
			{"malformed code", `{"cmd":"publish","items":[{"body":"","to":[[["0"]],[[0,0,0]]]}]}`, "malformed"},
		}
		for _, tc := range tests {
			err := n.Publish(ctx, c, req(t, tc.frame))
			got := reason(err)
			if isMalformed(err) {
				got = "malformed"
			}
			if got != tc.want {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
			}
		}
		if f := c.frames(); len(f) != 0 {
			t.Fatalf("failed requests sent %v", f)
		}
		if err := n.Subscribe(ctx, c, req(t, `{"cmd":"subscribe","channels":5}`)); !isMalformed(err) || len(c.frames()) != 0 {
			t.Fatalf("malformed subscribe: %v %v", err, c.frames())
		}
		// A valid code of the menu is accepted; then broadcasts that do not
		// parse are logged and skipped, and the node goes on.
		sub := newConn("8")
		subscribe(t, n, sub, `{"cmd":"subscribe"}`)
		ch := n.b.Key(broker.PostsChannel)
		for _, bad := range []string{`garbage`, `{"op":"post","post":{"id":"x"}}`, `{"op":"del","ids":"x"}`,
			`{"op":"what"}`, `[1,2]`, `{"op":"post","post":{"id":5,"from":"1","date":1,"to":[[[1]],[[1]]],"features":-3}}`} {
			n.b.Publish(ctx, ch, bad)
		}
		// Published on another node, the post reaches this one through the
		// channel, behind the bad broadcasts.
		other := startNode(t, b.Options, cfg)
		id := other.publish(t, c, publishFrame("[1,1,0]", "[2,1,0]", 0, ""))
		if f := sub.wait(t, 2); len(f) != 2 || items(t, f[1])[0] != id {
			t.Fatalf("subscriber after bad broadcasts: %v", f)
		}
		n.until(t, "every bad broadcast skipped", func() bool { return n.Stats().Skipped == 6 })
		if st := n.Stats(); st.Skipped != 6 || st.Delivered != 1 || st.Posts != 1 || st.Subscriptions != 1 {
			t.Fatalf("stats %+v, want 6 skipped, 1 delivered, 1 post, 1 subscription", st)
		}
	})
}

func TestSubscribeReplacesAndLeave(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now})
		pub, c, watcher := newConn("7"), newConn("8"), newConn("9")
		subscribe(t, n, watcher, `{"cmd":"subscribe"}`)
		subscribe(t, n, c, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]]}`, h037))
		// Replaced: now only [1,1,0] products.
		subscribe(t, n, c, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]]}`, h110))
		n.publish(t, pub, publishFrame("[0]", "[0,3,7]", 0, ""))
		id := n.publish(t, pub, publishFrame("[0]", "[1,1,0]", 0, ""))
		watcher.wait(t, 3)
		if f := c.frames(); len(f) != 3 || items(t, f[2])[0] != id {
			t.Fatalf("replaced subscription got %v", f)
		}
		n.Leave(c)
		n.Leave(c) // twice is harmless
		id = n.publish(t, pub, publishFrame("[0]", "[1,1,0]", 0, ""))
		watcher.wait(t, 4)
		if f := c.frames(); len(f) != 3 {
			t.Fatalf("after Leave: %v", f)
		}
		n.mu.RLock()
		left := len(n.x.prodSubs) + len(n.x.wild)
		n.mu.RUnlock()
		if left != 1 {
			t.Fatalf("%d subscription lists left, want the watcher's only", left)
		}
	})
}

// Subscribing while posts keep coming: each subscription gets its ack, then
// its catch-up, then live posts, and altogether every post above its
// last_post_id exactly once, none at or below it.
func TestSubscribeDuringPublishingGetsEveryPostOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 1000, MaxCatchUp: 1000}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		const total = 300
		var acked atomic.Uint64
		ticks := make(chan uint64, total)
		done, failed := make(chan struct{}), make(chan error, 1)
		go func() {
			pub := newConn("7")
			for i := 0; i < total; i++ {
				r, _ := wire.ParseRequest([]byte(publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
				if err := n2.Publish(context.Background(), pub, r); err != nil {
					failed <- err
					return
				}
				var id uint64
				fmt.Sscanf(pub.frames()[i], `{"cmd":"publish_ack","result":"ok","id":%d,`, &id)
				acked.Store(id)
				ticks <- id
			}
			close(done)
		}()
		type subscription struct {
			c     *fakeConn
			after uint64
		}
		var subs []subscription
		for k := 0; k < 30; k++ {
			// Subscribe every 10 publishes, while the posts are in flight.
			var after uint64
			for i := 0; i < 10; i++ {
				select {
				case after = <-ticks:
				case err := <-failed:
					t.Fatalf("publish: %v", err)
				}
			}
			if after > 3 {
				after -= 3 // some already on this node, some not yet
			}
			c := newConn(fmt.Sprint(100 + k))
			subscribe(t, n1, c, fmt.Sprintf(`{"cmd":"subscribe","last_post_id":%d}`, after))
			subs = append(subs, subscription{c, after})
		}
		select {
		case <-done:
		case err := <-failed:
			t.Fatal(err)
		}
		last := acked.Load()
		for _, s := range subs {
			want := int(last - s.after)
			f := s.c.wait(t, 1)
			if f[0] != `{"cmd":"subscribe_ack","result":"ok"}` {
				t.Fatalf("first frame %s", f[0])
			}
			// Wait until the subscriber has seen the last post.
			var ids []uint64
			n1.until(t, "the last post reaches every subscriber", func() bool {
				ids = ids[:0]
				for _, fr := range s.c.frames()[1:] {
					ids = append(ids, items(t, fr)...)
				}
				return len(ids) > 0 && ids[len(ids)-1] == last || len(ids) >= want
			})
			seen := map[uint64]bool{}
			for _, id := range ids {
				if id <= s.after || seen[id] {
					t.Fatalf("after %d: id %d is at or below it or came twice: %v", s.after, id, ids)
				}
				seen[id] = true
			}
			if len(seen) != want {
				t.Fatalf("after %d: %d posts, want %d", s.after, len(seen), want)
			}
		}
	})
}

// A connection whose queue is full (Send false) does not keep the post
// from the others.
func TestFullConnDoesNotStopFanOut(t *testing.T) {
	x := newIndex(0)
	full := &fullConn{}
	ok1, ok2 := newConn("1"), newConn("2")
	x.subscribe(ok1, &Filter{}, 0)
	x.subscribe(full, &Filter{}, 0)
	x.subscribe(ok2, &Filter{Prods: []uint64{5}}, 0)
	p := &Post{ID: 1, Prod: 5, JSON: []byte(`{}`)}
	if n := x.fanout(p, liveFrame(p), nil); n != 3 {
		t.Fatalf("fanned out to %d, want 3", n)
	}
	if len(ok1.frames()) != 1 || len(ok2.frames()) != 1 || full.n != 1 {
		t.Fatalf("deliveries %d %d %d", len(ok1.frames()), len(ok2.frames()), full.n)
	}
}

type fullConn struct{ n int }

func (c *fullConn) User() string                 { return "full" }
func (c *fullConn) Send([]byte) bool             { c.n++; return false }
func (c *fullConn) SendLive(f []byte) bool       { return c.Send(f) }
func (c *fullConn) SendPersistent(b []byte) bool { return c.Send(b) }
func (c *fullConn) Client() string               { return "127.0.0.1" }

// Run sweeps by itself: with a short sweep period, an expired post leaves
// Redis and the node without anyone calling Sweep.
func TestRunSweepsPeriodically(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, Expiry: time.Hour, SweepEvery: 10 * time.Millisecond})
		id := n.publish(t, newConn("7"), publishFrame("[0]", "[0]", 0, ""))
		clk.Add(2 * time.Hour)
		deadline := time.After(10 * time.Second)
		for {
			c, err := n.b.PostCount(context.Background())
			if err == nil && c == 0 && !n.has(id) {
				return
			}
			select {
			case <-n.applied: // the sweep's deletion broadcast
			case <-deadline:
				t.Fatalf("after 10 s redis holds %d posts, node has it: %v", c, n.has(id))
			}
		}
	})
}
