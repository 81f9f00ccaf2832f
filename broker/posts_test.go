package broker_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

func TestStoreDeleteExpirePosts(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 16)
		c.Handle(broker.PostsChannel, func(_, payload string) { got <- payload })
		if err := c.Subscribe(ctx, c.Key(broker.PostsChannel)); err != nil {
			t.Fatal(err)
		}
		id1, err := c.StorePost(ctx, []byte(`"from":"7","date":100`), "7", 100, "n1:1")
		if err != nil || id1 != 1 {
			t.Fatalf("first id %d (%v), want 1", id1, err)
		}
		expect(t, got, `{"op":"post","origin":"n1:1","post":{"id":1,"from":"7","date":100}}`)
		id2, _ := c.StorePost(ctx, []byte(`"from":"8","date":200`), "8", 200, "n1:2")
		expect(t, got, `{"op":"post","origin":"n1:2","post":{"id":2,"from":"8","date":200}}`)
		id3, _ := c.StorePost(ctx, []byte(`"from":"8","date":300`), "8", 300, "n1:3")
		expect(t, got, `{"op":"post","origin":"n1:3","post":{"id":3,"from":"8","date":300}}`)

		// Only the author deletes; the check is inside the script.
		if err := c.DeletePost(ctx, id2, "7"); !errors.Is(err, broker.ErrNotOwner) {
			t.Fatalf("delete by another user: %v, want ErrNotOwner", err)
		}
		if err := c.DeletePost(ctx, 99, "7"); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("delete of unknown post: %v, want ErrPostNotFound", err)
		}
		if err := c.DeletePost(ctx, id2, "8"); err != nil {
			t.Fatal(err)
		}
		expect(t, got, `{"op":"del","ids":[2]}`)
		if err := c.DeletePost(ctx, id2, "8"); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("second delete: %v, want ErrPostNotFound", err)
		}

		// Expiry removes what is dated at or before the cutoff, in batches.
		n, err := c.ExpirePosts(ctx, 100, 10)
		if err != nil || n != 1 {
			t.Fatalf("expired %d (%v), want 1", n, err)
		}
		expect(t, got, `{"op":"del","ids":[1]}`)
		if n, _ := c.ExpirePosts(ctx, 100, 10); n != 0 {
			t.Fatalf("second sweep expired %d", n)
		}
		var left []string
		if err := c.ScanPosts(ctx, func(p string) { left = append(left, p) }); err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || !strings.HasPrefix(left[0], `{"id":3,`) {
			t.Fatalf("left %v, want only post %d", left, id3)
		}
	})
}

func TestScanPostsManyBatches(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		for i := 0; i < 2500; i++ {
			if _, err := c.StorePost(ctx, []byte(`"date":1`), "1", 1, "x"); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]bool{}
		c.ScanPosts(ctx, func(p string) { seen[p] = true })
		if len(seen) != 2500 {
			t.Fatalf("scanned %d distinct posts, want 2500", len(seen))
		}
		if n, _ := c.PostCount(ctx); n != 2500 {
			t.Fatalf("count %d", n)
		}
	})
}

func TestPostQuotaSlidingWindow(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		q := broker.Quota{N: 2, PeriodMs: 1000}
		type step struct {
			now       int64
			take      bool
			ok        bool
			remaining int
			retry     int64
		}
		steps := []step{
			{now: 0, take: false, remaining: 2},
			{now: 10, take: true, ok: true, remaining: 1},
			{now: 500, take: true, ok: true, remaining: 0},
			{now: 900, take: true, ok: false, retry: 110}, // the 10 ms publish leaves the window at 1010
			{now: 1010, take: false, remaining: 1},
			{now: 1010, take: true, ok: true, remaining: 0},
			{now: 1499, take: true, ok: false, retry: 1},
			{now: 5000, take: false, remaining: 2}, // refilled by time alone
		}
		for i, s := range steps {
			if !s.take {
				r, err := c.PostQuotaRemaining(ctx, "u1", s.now, q)
				if err != nil || r != s.remaining {
					t.Fatalf("step %d: remaining %d (%v), want %d", i, r, err, s.remaining)
				}
				continue
			}
			r, retry, ok, err := c.TakePostQuota(ctx, "u1", s.now, q)
			if err != nil || ok != s.ok || r != s.remaining || retry != s.retry {
				t.Fatalf("step %d: take = %d %d %v %v, want %d %d %v", i, r, retry, ok, err, s.remaining, s.retry, s.ok)
			}
		}
		// A refund gives the last publish back.
		c.TakePostQuota(ctx, "u2", 0, q)
		c.RefundPostQuota(ctx, "u2")
		if r, _ := c.PostQuotaRemaining(ctx, "u2", 0, q); r != 2 {
			t.Fatalf("after refund %d left, want 2", r)
		}
	})
}

func TestRawStorePost(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		c.RawStorePost(ctx, 5, "garbage", 1)
		var all []string
		c.ScanPosts(ctx, func(p string) { all = append(all, p) })
		sort.Strings(all)
		if len(all) != 1 || all[0] != "garbage" {
			t.Fatalf("scanned %v", all)
		}
		// The sweep removes it like any other post.
		if n, _ := c.ExpirePosts(ctx, 1, 10); n != 1 {
			t.Fatalf("expired %d", n)
		}
	})
}

// TestPostBounds: the store script refuses past the count and byte
// budgets, atomically, and deletions and expiry give their room back; a
// byte counter missing (posts stored before it existed) is rebuilt.
func TestPostBounds(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		// Planted without the counter, as an older version stored them:
		// 20 bytes.
		if err := c.RawStorePost(ctx, 50, `{"id":50,"date":100}`, 100); err != nil {
			t.Fatal(err)
		}
		m := []byte(`"date":100`) // posts of 17 or 18 bytes: '{"id":N,"date":100}'
		bounds := broker.PostBounds{Posts: 3, Bytes: 20 + 17 + 18 + 28 + 10}
		id1, err := c.StorePostWithin(ctx, m, "7", 100, "o", bounds)
		if err != nil {
			t.Fatal(err)
		}
		// 20+19 held; the next needs at most 10+28 more: 77 > 75.
		bounds.Bytes = 75
		if _, err := c.StorePostWithin(ctx, m, "7", 200, "o", bounds); !errors.Is(err, broker.ErrPostsFull) {
			t.Fatalf("past the byte budget: %v", err)
		}
		bounds.Bytes = 0
		if _, err := c.StorePostWithin(ctx, m, "7", 200, "o", bounds); err != nil {
			t.Fatal(err)
		}
		if _, err := c.StorePostWithin(ctx, m, "7", 300, "o", bounds); !errors.Is(err, broker.ErrPostsFull) {
			t.Fatalf("past the count budget: %v", err)
		}
		if n, _ := c.PostCount(ctx); n != 3 {
			t.Fatalf("%d posts stored, want 3", n)
		}
		if err := c.DeletePost(ctx, id1, "7"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.StorePostWithin(ctx, m, "7", 300, "o", bounds); err != nil {
			t.Fatalf("after a deletion: %v", err)
		}
		// Expire everything: the byte budget is whole again.
		if _, err := c.ExpirePosts(ctx, 1000, 100); err != nil {
			t.Fatal(err)
		}
		if _, err := c.StorePostWithin(ctx, m, "7", 2000, "o", broker.PostBounds{Bytes: 18 + 28}); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
		if seq, err := c.PostSeq(ctx); err != nil || seq != 4 {
			t.Fatalf("PostSeq %d (%v), want 4", seq, err)
		}
	})
}

func TestAddressPosts(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		for i := 0; i < 2; i++ {
			if ok, err := c.TakeAddressPost(ctx, "2001:db8::/64", 20000, 2); !ok || err != nil {
				t.Fatalf("take %d: %v %v", i, ok, err)
			}
		}
		if ok, _ := c.TakeAddressPost(ctx, "2001:db8::/64", 20000, 2); ok {
			t.Fatal("a third publish from the address was counted")
		}
		if ok, _ := c.TakeAddressPost(ctx, "2001:db8::/64", 20001, 2); !ok {
			t.Fatal("the next day is refused")
		}
		if err := c.RefundAddressPost(ctx, "2001:db8::/64", 20000); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.TakeAddressPost(ctx, "2001:db8::/64", 20000, 2); !ok {
			t.Fatal("a refunded publish is still counted")
		}
	})
}

// ChangePost edits a stored post in place: owner-checked, the new version
// broadcast, the extras in a fixed order, a renewal moving the post's
// expiry; on Redis Cluster too (its keys share the {posts} slot).
func TestChangePost(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 16)
		c.Handle(broker.PostsChannel, func(_, payload string) { got <- payload })
		if err := c.Subscribe(ctx, c.Key(broker.PostsChannel)); err != nil {
			t.Fatal(err)
		}
		members := `"from":"7","body":"\"a\"","to":[[[0]],[[1]]],"features":0,"date":100,"range_values":[5]`
		id, err := c.StorePost(ctx, []byte(members), "7", 100, "n1:1")
		if err != nil {
			t.Fatal(err)
		}
		expect(t, got, `{"op":"post","origin":"n1:1","post":{"id":1,`+members+`}}`)

		if _, _, err := c.ChangePost(ctx, id, "8", 150, broker.PostChange{Kind: "status", Status: "sold"}); !errors.Is(err, broker.ErrNotOwner) {
			t.Fatalf("change by another user: %v", err)
		}
		if _, _, err := c.ChangePost(ctx, 9, "7", 150, broker.PostChange{Kind: "status", Status: "sold"}); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("change of no post: %v", err)
		}
		post, _, err := c.ChangePost(ctx, id, "7", 150, broker.PostChange{Kind: "update",
			Head: []byte(`"from":"7","body":"\"range_values\\\":[1]\"","to":[[[2]],[[3]]],"features":4`), Tail: []byte(`,"range_values":[]`)})
		want := `{"id":1,"from":"7","body":"\"range_values\\\":[1]\"","to":[[[2]],[[3]]],"features":4,"date":100,"range_values":[],"edited":150}`
		if err != nil || post != want {
			t.Fatalf("update: %v\n got %s\nwant %s", err, post, want)
		}
		expect(t, got, `{"op":"upd","post":`+want+`}`)
		post, _, _ = c.ChangePost(ctx, id, "7", 160, broker.PostChange{Kind: "status", Status: "reserved"})
		expect(t, got, `{"op":"upd","post":`+post+`}`)
		// Renewal: expiry 1000 s, window 100 s: possible from 1000.
		if _, from, err := c.ChangePost(ctx, id, "7", 899, broker.PostChange{Kind: "renew", Expiry: 1000, Window: 100}); !errors.Is(err, broker.ErrTooEarly) || from != 1000 {
			t.Fatalf("early renewal: %v, from %d", err, from)
		}
		post, _, err = c.ChangePost(ctx, id, "7", 1000, broker.PostChange{Kind: "renew", Expiry: 1000, Window: 100})
		want = `{"id":1,"from":"7","body":"\"range_values\\\":[1]\"","to":[[[2]],[[3]]],"features":4,"date":100,"range_values":[],"status":"reserved","renewed":1000,"edited":150}`
		if err != nil || post != want {
			t.Fatalf("renew: %v\n got %s\nwant %s", err, post, want)
		}
		expect(t, got, `{"op":"upd","post":`+want+`}`)
		post, _, _ = c.ChangePost(ctx, id, "7", 1001, broker.PostChange{Kind: "status", Status: "available"})
		if strings.Contains(post, "status") {
			t.Fatalf("available: %s", post)
		}
		expect(t, got, `{"op":"upd","post":`+post+`}`)
		// The sweep counts from the renewal.
		if n, _ := c.ExpirePosts(ctx, 999, 10); n != 0 {
			t.Fatalf("a renewed post expired at its old date")
		}
		if n, _ := c.ExpirePosts(ctx, 1000, 10); n != 1 {
			t.Fatalf("the renewed post did not expire at its renewal date")
		}
	})
}
