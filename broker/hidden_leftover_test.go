package broker_test

import (
	"context"
	"slices"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// An id left in the hidden set without its queue entry (an older node's
// dismissal during a rolling upgrade) leaves the set with its post, on
// a deletion (the author's or an operator's removal) and on expiry: the
// scripts took it out only when the post was queued, so the id stayed
// for ever, out of every operator's sight, and the hidden set was no
// longer bounded by the queue.
func TestHiddenLeftoverGoesWithPost(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{HideAt: 1}
		plant := func(date int64) uint64 {
			t.Helper()
			p := storeTestPost(t, c, "7", date)
			if r, err := c.ReportPost(ctx, p, broker.Report{By: "1", Reason: "scam", At: 1, Aged: true}, bounds); err != nil || !r.Hidden {
				t.Fatalf("report: %+v %v", r, err)
			}
			if err := c.RawDropReports(ctx, p); err != nil {
				t.Fatal(err)
			}
			return p
		}
		deleted, expired := plant(100), plant(50)
		if err := c.DeletePost(ctx, deleted, "7"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExpirePosts(ctx, 60, 10); err != nil {
			t.Fatal(err)
		}
		ids, err := c.HiddenPosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ids, deleted) || slices.Contains(ids, expired) {
			t.Fatalf("hidden set %v after deleting %d and expiring %d", ids, deleted, expired)
		}
	})
}
