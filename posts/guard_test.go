package posts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

// TestHTTPReadsRateLimited: GET /api/posts is limited per client address
// (issue 10.5); a refusal is 429 with Retry-After and reason rate_limited,
// counted; the bucket refills with the (injected) clock; ClientKey decides
// what an address is.
func TestHTTPReadsRateLimited(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		key := func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
		n := startNode(t, b.Options, Config{Clock: clk.Now, ReadRate: 0.5, ReadBurst: 2, ClientKey: key})
		srv := serve(t, n)
		for i := 0; i < 2; i++ {
			if code, _, body := get(t, srv.URL+"/api/posts", "X-Test-Client", "a"); code != http.StatusOK {
				t.Fatalf("read %d: %d %s", i, code, body)
			}
		}
		code, hdr, body := get(t, srv.URL+"/api/posts?count=1", "X-Test-Client", "a")
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "2" || !strings.Contains(body, `"reason":"rate_limited"`) {
			t.Fatalf("third read: %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
		}
		if code, _, _ := get(t, srv.URL+"/api/posts/1", "X-Test-Client", "a"); code != http.StatusTooManyRequests {
			t.Fatalf("one post, over the rate: %d", code)
		}
		if code, _, _ := get(t, srv.URL+"/api/posts", "X-Test-Client", "b"); code != http.StatusOK {
			t.Fatalf("another address: %d", code)
		}
		clk.Add(2 * time.Second)
		if code, _, _ := get(t, srv.URL+"/api/posts", "X-Test-Client", "a"); code != http.StatusOK {
			t.Fatalf("after the refill: %d", code)
		}
		if got := n.Stats().ReadsLimited; got != 2 {
			t.Fatalf("ReadsLimited %d, want 2", got)
		}
	})
}

// TestHTTPReadsStopAtMaxScan: a filter that matches nothing after its
// channels is answered after MaxScan posts with a cursor, not by walking
// every post (issue 10.5).
func TestHTTPReadsStopAtMaxScan(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, MaxScan: 10, ReadRate: -1})
		srv := serve(t, n)
		pub := newConn("7")
		var ids []uint64
		for i := 0; i < 25; i++ {
			ids = append(ids, n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		}
		// No post is sold: every post is examined.
		code, _, body := get(t, srv.URL+"/api/posts?status=sold")
		var pg page
		if code != http.StatusOK || json.Unmarshal([]byte(body), &pg) != nil || len(pg.Posts) != 0 || pg.Next != fmt.Sprint(ids[15]) {
			t.Fatalf("no-match read: %d %s, want next %d", code, body, ids[15])
		}
		code, _, body = get(t, srv.URL+"/api/posts?count=1&features=1&before="+pg.Next)
		if code != http.StatusOK || body != fmt.Sprintf(`{"count":10,"next":"%d"}`+"\n", ids[5]) {
			t.Fatalf("capped count: %d %s", code, body)
		}
		if n.Stats().ScansCapped != 2 {
			t.Fatalf("ScansCapped %d", n.Stats().ScansCapped)
		}
		// A channel nobody publishes in is answered at once, complete.
		if _, _, body := get(t, srv.URL+"/api/posts?product=12345"); body != `{"posts":[]}` {
			t.Fatalf("empty channel: %s", body)
		}
	})
}

// TestNoPostHasTheFeatures: a read (or a subscribe's catch-up) whose
// features no live post has is answered at once and complete, without a
// walk: the scan storm of bench/abuse.sh asked for such a feature and
// walked MaxScan posts per request. A post with the feature is found once
// it is published, and the read is free again once that post is gone.
func TestNoPostHasTheFeatures(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, MaxScan: 10, ReadRate: -1})
		srv := serve(t, n)
		pub := newConn("7")
		for i := 0; i < 25; i++ {
			n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1|4, ""))
		}
		for _, q := range []string{"features=2", "features=4611686018427387904", "features=10&sort=price_asc", "features=2&count=1"} {
			code, _, body := get(t, srv.URL+"/api/posts?"+q)
			if code != http.StatusOK || strings.Contains(body, "next") || strings.Contains(body, "partial") || strings.Contains(body, `"id"`) {
				t.Fatalf("%s: %d %s, want an empty, complete answer", q, code, body)
			}
		}
		if got := n.Stats().ScansCapped; got != 0 {
			t.Fatalf("ScansCapped %d: a read of a feature no post has walked the index", got)
		}
		// features=5 shares bit 0 with every post: a walk, as before.
		if _, _, body := get(t, srv.URL+"/api/posts?count=1&features=5"); !strings.HasPrefix(body, `{"count":10,"next":`) {
			t.Fatalf("features=5: %s", body)
		}
		// The first post with bit 1 (2) makes it a walk again; its deletion
		// makes it free again.
		id := n.publish(t, newConn("8"), publishFrame("[0,1,2]", "[0,3,7]", 2, ""))
		var pg page
		if _, _, body := get(t, srv.URL+"/api/posts?features=2"); json.Unmarshal([]byte(body), &pg) != nil || len(pg.Posts) != 1 || pg.Posts[0].ID != id {
			t.Fatalf("features=2 after a post with it: %s", body)
		}
		if err := n.Delete(context.Background(), newConn("8"), req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))); err != nil {
			t.Fatal(err)
		}
		n.until(t, "the deletion", func() bool { return !n.has(id) })
		capped := n.Stats().ScansCapped
		if _, _, body := get(t, srv.URL+"/api/posts?features=2"); body != `{"posts":[]}` {
			t.Fatalf("features=2 after the deletion: %s", body)
		}
		if n.Stats().ScansCapped != capped {
			t.Fatal("a read of a feature whose only post was deleted walked the index")
		}
		// A subscribe's catch-up for it: no walk either.
		c := newConn("9")
		subscribe(t, n, c, `{"cmd":"subscribe","any_of_features":2}`)
		if got := len(c.frames()); got != 1 || n.Stats().ScansCapped != capped {
			t.Fatalf("catch-up for a feature no post has: %d frames %v, ScansCapped %d (was %d)", got, c.frames(), n.Stats().ScansCapped, capped)
		}
	})
}

func TestSubscribeRateLimited(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, SubscribeRate: 1, SubscribeBurst: 2})
		c := newConn("5")
		subscribe(t, n, c, `{"cmd":"subscribe"}`)
		subscribe(t, n, c, `{"cmd":"subscribe"}`)
		err := n.Subscribe(context.Background(), c, req(t, `{"cmd":"subscribe"}`))
		if reason(err) != wire.RateLimited || len(c.frames()) != 2 {
			t.Fatalf("third subscribe: %v, frames %v", err, c.frames())
		}
		// Another user is not held up, and the user's bucket refills.
		subscribe(t, n, newConn("6"), `{"cmd":"subscribe"}`)
		clk.Add(time.Second)
		subscribe(t, n, c, `{"cmd":"subscribe"}`)
		if n.Stats().SubscribesLimited != 1 {
			t.Fatalf("SubscribesLimited %d", n.Stats().SubscribesLimited)
		}
	})
}

// TestPostBudgets: Redis refuses a publish past --max-posts (or
// --max-post-bytes) whichever node it comes through; a deletion makes room.
func TestPostBudgets(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, MaxPosts: 3}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		var ids []uint64
		for i := 0; i < 3; i++ {
			ids = append(ids, n1.publish(t, newConn(fmt.Sprint(i)), publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		}
		c := newConn("9")
		err := n2.Publish(context.Background(), c, req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		if reason(err) != wire.PostsFull || n2.Stats().RefusedFull != 1 {
			t.Fatalf("fourth publish: %v", err)
		}
		// The refused publish did not use up the user's quota.
		if r, _ := n2.RemainingPosts(context.Background(), "9"); r != 10 {
			t.Fatalf("remaining %d after a refused publish", r)
		}
		if err := n2.Delete(context.Background(), newConn("0"), req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, ids[0]))); err != nil {
			t.Fatal(err)
		}
		n2.publish(t, c, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
	})
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		// Each test post is 131 bytes of JSON; 400 bytes hold three, and
		// the budget counts deletions and expiry back.
		n := startNode(t, b.Options, Config{Clock: clk.Now, MaxPostBytes: 400, Expiry: time.Hour})
		for i := 0; i < 3; i++ {
			n.publish(t, newConn(fmt.Sprint(i)), publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		}
		err := n.Publish(context.Background(), newConn("8"), req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		if reason(err) != wire.PostsFull {
			t.Fatalf("publish past the byte budget: %v", err)
		}
		clk.Add(time.Hour)
		if err := n.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		n.publish(t, newConn("8"), publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
	})
}

// TestPostsPerAddress: new accounts from one address share one daily
// budget of publishes (issue 10.1), counted in Redis across nodes.
func TestPostsPerAddress(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock() // 12:00 UTC
		cfg := Config{Clock: clk.Now, PostsPerAddress: 2}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		from := func(user, addr string) *fakeConn { c := newConn(user); c.addr = addr; return c }
		n1.publish(t, from("1", "192.0.2.1"), publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		n2.publish(t, from("2", "192.0.2.1"), publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		err := n1.Publish(context.Background(), from("3", "192.0.2.1"), req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		var we *wire.Error
		if reason(err) != wire.QuotaExceeded || !asWire(err, &we) || !strings.Contains(we.Detail, "in 43200 s") {
			t.Fatalf("third publish from the address: %v", err)
		}
		if r, _ := n1.RemainingPosts(context.Background(), "3"); r != 10 {
			t.Fatalf("the refused user's quota: %d left", r)
		}
		n1.publish(t, from("3", "192.0.2.2"), publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		clk.Add(12 * time.Hour) // the next UTC day
		n1.publish(t, from("3", "192.0.2.1"), publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		if n1.Stats().RefusedAddress != 1 {
			t.Fatalf("RefusedAddress %d", n1.Stats().RefusedAddress)
		}
	})
}

// TestNodeBoundKeepsNewest: a node whose bound is below what Redis holds
// (another node configured higher) keeps the newest posts and counts the
// rest.
func TestNodeBoundKeepsNewest(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		big := startNode(t, b.Options, Config{Clock: clk.Now})
		small := startNode(t, b.Options, Config{Clock: clk.Now, MaxPosts: 2})
		pub := newConn("7")
		var ids []uint64
		for i := 0; i < 5; i++ {
			ids = append(ids, big.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, "")))
		}
		small.until(t, "the small node holds the newest", func() bool { return small.has(ids[4]) })
		if small.size() != 2 || !small.has(ids[3]) || small.Stats().Evicted != 3 {
			t.Fatalf("small node: %d posts, evicted %d", small.size(), small.Stats().Evicted)
		}
		// A node that starts over the bound loads only the newest.
		late := startNode(t, b.Options, Config{Clock: clk.Now, MaxPosts: 3})
		if late.size() != 3 || !late.has(ids[2]) || !late.has(ids[4]) {
			t.Fatalf("late node: %d posts", late.size())
		}
	})
}

func asWire(err error, we **wire.Error) bool {
	e := wire.AsError(err)
	*we = e
	return e != nil
}

// TestHighLastPostIDGetsLivePosts: a last_post_id above every post asks for
// no catch-up, and every post published afterwards arrives (issue 11.2).
func TestHighLastPostIDGetsLivePosts(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		pub := newConn("7")
		old := n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		n1.until(t, "node 1 has the post", func() bool { return n1.has(old) })
		c := newConn("8")
		subscribe(t, n1, c, fmt.Sprintf(`{"cmd":"subscribe","last_post_id":%d}`, uint64(1)<<60))
		id := n2.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		f := c.wait(t, 2)
		if len(f) != 2 || items(t, f[1])[0] != id {
			t.Fatalf("got %v, want the ack and post %d only", f, id)
		}
	})
}

// TestSubscribeRacingPublishes: subscribers with a last_post_id above
// every id, made while posts stream in, each get every post published
// after their subscribe exactly once, with no gap: the catch-up (empty)
// and the live posts meet without loss or duplicate.
func TestSubscribeRacingPublishes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 1000, SubscribeRate: -1}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		const total = 200
		var wg sync.WaitGroup
		var last uint64
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := newConn("7")
			for i := 0; i < total; i++ {
				if err := n2.Publish(context.Background(), pub, req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
			fmt.Sscanf(pub.frames()[total-1], `{"cmd":"publish_ack","result":"ok","id":%d,`, &last)
		}()
		var subs []*fakeConn
		for k := 0; k < 20; k++ {
			c := newConn(fmt.Sprint(100 + k))
			subscribe(t, n1, c, `{"cmd":"subscribe","last_post_id":18446744073709551615}`)
			subs = append(subs, c)
		}
		wg.Wait()
		for _, c := range subs {
			var ids []uint64
			n1.until(t, "the last post reaches the subscriber", func() bool {
				ids = ids[:0]
				for _, fr := range c.frames()[1:] {
					ids = append(ids, items(t, fr)...)
				}
				return len(ids) > 0 && ids[len(ids)-1] == last || c.frames()[0] != `{"cmd":"subscribe_ack","result":"ok"}`
			})
			for i := 1; i < len(ids); i++ {
				if ids[i] != ids[i-1]+1 {
					t.Fatalf("subscriber %s: a gap or duplicate: %v", c.user, ids)
				}
			}
		}
	})
}

// TestSubscribeSettlesChangesBetweenLocks: what happens between the
// catch-up's read and the subscription's registration: a post deleted
// meanwhile leaves the catch-up, a post inserted meanwhile follows it,
// each once; and past the ring of recent inserts the catch-up is read
// again.
func TestSubscribeSettlesChangesBetweenLocks(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, SubscribeRate: -1})
		pub := newConn("7")
		a := n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		bID := n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		broadcast := func(id uint64) string {
			return fmt.Sprintf(`{"op":"post","origin":"x","post":{"id":%d,"from":"1","body":"","to":[[[0,1,2]],[[0,3,7]]],"features":1,"date":%d,"range_values":[]}}`,
				id, clk.Now().Unix())
		}
		n.betweenLocks = func() {
			n.apply(`{"op":"del","ids":[` + fmt.Sprint(a) + `]}`)
			n.apply(broadcast(500))
		}
		c := newConn("8")
		subscribe(t, n, c, `{"cmd":"subscribe"}`)
		f := c.frames()
		if len(f) != 3 || fmt.Sprint(items(t, f[1])) != fmt.Sprint([]uint64{bID}) || items(t, f[2])[0] != 500 {
			t.Fatalf("frames %v, want ack, catch-up [%d], then 500", f, bID)
		}
		n.apply(broadcast(501))
		if f := c.frames(); len(f) != 4 || items(t, f[3])[0] != 501 {
			t.Fatalf("the next live post: %v", f)
		}
		n.betweenLocks = func() {
			for i := 0; i < 1100; i++ {
				n.apply(broadcast(uint64(1000 + i)))
			}
		}
		c2 := newConn("9")
		subscribe(t, n, c2, fmt.Sprintf(`{"cmd":"subscribe","last_post_id":%d}`, bID))
		f = c2.frames()
		if len(f) != 2 || items(t, f[1])[0] != 500 || items(t, f[1])[2] != 1000 || len(items(t, f[1])) != 100 {
			t.Fatalf("after a long gap between locks: %d frames", len(f))
		}
	})
}

// TestPostDeletedAcrossNodes: a subscription with "deletions":true hears
// of a matching post's deletion and expiry on every node; others hear
// nothing new (issue 11.5).
func TestPostDeletedAcrossNodes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, Expiry: time.Hour}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		wants := newConn("1")
		subscribe(t, n1, wants, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]],"deletions":true}`, h037))
		local := newConn("2")
		subscribe(t, n2, local, `{"cmd":"subscribe","deletions":true}`)
		plain := newConn("3")
		subscribe(t, n1, plain, `{"cmd":"subscribe"}`)
		other := newConn("4")
		subscribe(t, n1, other, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]],"deletions":true}`, h110))

		author := newConn("7")
		id := n2.publish(t, author, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		wants.wait(t, 2)
		plain.wait(t, 2)
		local.wait(t, 2)
		if err := n2.Delete(context.Background(), author, req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"cmd":"post_deleted","id":%d}`, id)
		for _, c := range []*fakeConn{wants, local} {
			if f := c.wait(t, 3); len(f) != 3 || f[2] != want {
				t.Fatalf("user %s: %v", c.user, f)
			}
		}
		n1.until(t, "node 1 drops the post", func() bool { return !n1.has(id) })

		// Expiry, swept by node 2: node 1's subscriber hears it once.
		id2 := n2.publish(t, author, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		wants.wait(t, 4)
		clk.Add(time.Hour)
		if err := n2.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		n1.until(t, "node 1 drops the expired post", func() bool { return !n1.has(id2) })
		if err := n1.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		want2 := fmt.Sprintf(`{"cmd":"post_deleted","id":%d}`, id2)
		if f := wants.frames(); len(f) != 5 || f[4] != want2 {
			t.Fatalf("after expiry: %v", f)
		}
		for _, c := range []*fakeConn{plain, other} {
			for _, fr := range c.frames() {
				if strings.Contains(fr, "post_deleted") {
					t.Fatalf("user %s, who did not ask or does not match, got %s", c.user, fr)
				}
			}
		}
		if n1.Stats().DeletedSent != 2 {
			t.Fatalf("node 1 DeletedSent %d", n1.Stats().DeletedSent)
		}
	})
}

// TestHTTPReadLimitIgnoresForwardedFor: without a key function, the limit
// keys on the peer: a client cannot mint fresh buckets by sending
// X-Forwarded-For.
func TestHTTPReadLimitIgnoresForwardedFor(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, ReadRate: 1, ReadBurst: 1})
		srv := serve(t, n)
		get(t, srv.URL+"/api/posts", "X-Forwarded-For", "198.51.100.1")
		if code, _, _ := get(t, srv.URL+"/api/posts", "X-Forwarded-For", "198.51.100.2"); code != http.StatusTooManyRequests {
			t.Fatalf("a second read with another X-Forwarded-For: %d", code)
		}
	})
}
