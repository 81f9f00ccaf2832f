package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// An author's posts listed from Redis ({posts}:mine:<user>): kept by the
// store, delete, removal and expiry scripts, newest first a page at a
// time, nobody else's; the key goes with the author's last post; the
// backfill puts back what a node of an older version stored, and a stale
// member is skipped. On Redis, the embedded server and a Redis Cluster
// (the scripts' keys share the {posts} tag).
func TestMinePosts(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		raw := brokertest.Raw(t, b.Options.Addrs...)
		store := func(user string, date int64) uint64 {
			t.Helper()
			id, err := c.StorePost(ctx, []byte(`"from":"`+user+`","date":`+fmt.Sprint(date)), user, date, "test")
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		now := time.Now().Unix()
		var ids []uint64
		for i := range 5 {
			ids = append(ids, store("7", now-int64(10-i)))
		}
		other := store("8", now)
		mine := func(before uint64, n int) []uint64 {
			t.Helper()
			l, err := c.MinePosts(ctx, "7", before, n)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, js := range l {
				var id uint64
				if _, err := fmt.Sscanf(js, `{"id":%d,`, &id); err != nil || !strings.Contains(js, `"from":"7"`) {
					t.Fatalf("not the author's post: %s", js)
				}
				got = append(got, id)
			}
			return got
		}
		if got := mine(0, 3); fmt.Sprint(got) != fmt.Sprint([]uint64{ids[4], ids[3], ids[2]}) {
			t.Fatalf("first page %v of %v", got, ids)
		}
		if got := mine(ids[2], 3); fmt.Sprint(got) != fmt.Sprint([]uint64{ids[1], ids[0]}) {
			t.Fatalf("second page %v", got)
		}
		if err := c.DeletePost(ctx, ids[4], "7"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.RemovePost(ctx, ids[3]); err != nil {
			t.Fatal(err)
		}
		if err := c.DeletePost(ctx, other, "7"); err != broker.ErrNotOwner {
			t.Fatalf("delete of another's post: %v", err)
		}
		if got := mine(0, 10); fmt.Sprint(got) != fmt.Sprint([]uint64{ids[2], ids[1], ids[0]}) {
			t.Fatalf("after a delete and a removal: %v", got)
		}
		// Expired: the two oldest.
		if n, err := c.ExpirePosts(ctx, now-9, 100); err != nil || n != 2 {
			t.Fatalf("expired %d %v", n, err)
		}
		if got := mine(0, 10); fmt.Sprint(got) != fmt.Sprint([]uint64{ids[2]}) {
			t.Fatalf("after the expiry: %v", got)
		}
		// What an older node stored: not in the set until the backfill.
		key := b.Options.Prefix + "{posts}:mine:7"
		if err := raw.Do(ctx, raw.B().Del().Key(key).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if got := mine(0, 10); len(got) != 0 {
			t.Fatalf("without the set: %v", got)
		}
		if n, err := c.BackfillMine(ctx); err != nil || n != 1 {
			t.Fatalf("backfill added %d %v, want the one post", n, err)
		}
		if n, err := c.BackfillMine(ctx); err != nil || n != 0 {
			t.Fatalf("backfill again added %d %v", n, err)
		}
		if got := mine(0, 10); fmt.Sprint(got) != fmt.Sprint([]uint64{ids[2]}) {
			t.Fatalf("after the backfill: %v", got)
		}
		// A stale member (an older node's delete) is skipped.
		raw.Do(ctx, raw.B().Zadd().Key(key).ScoreMember().ScoreMember(999999, "999999").Build())
		if got := mine(0, 10); fmt.Sprint(got) != fmt.Sprint([]uint64{ids[2]}) {
			t.Fatalf("with a stale member: %v", got)
		}
		raw.Do(ctx, raw.B().Zrem().Key(key).Member("999999").Build())
		// The last post gone: no key left.
		if err := c.DeletePost(ctx, ids[2], "7"); err != nil {
			t.Fatal(err)
		}
		if n, err := raw.Do(ctx, raw.B().Exists().Key(key).Build()).AsInt64(); err != nil || n != 0 {
			t.Fatalf("the author's set outlives the posts: %d %v", n, err)
		}
	})
}
