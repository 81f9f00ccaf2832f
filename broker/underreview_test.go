package broker_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Under review: while an author has a post hidden pending review, live
// or deleted by them while hidden, the store script refuses their
// publishes (nothing stored, no id taken); other authors publish. Every
// way a hidden id goes releases it: a dismissal, a removal (of a live
// post or of a kept copy), the expiry, the last reporter's account
// deletion, the author's account erasure; a second hidden post keeps the
// author waiting until it goes too; an id an older node un-hid leaves the
// set at the next publish. On a real server, the embedded one and a
// cluster.
func TestUnderReview(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{HideAt: 1}
		hideID := func(id uint64, by string) uint64 {
			t.Helper()
			r, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "scam", At: 1, Aged: true}, bounds)
			if err != nil || !r.Hidden {
				t.Fatalf("hide %d: %+v %v", id, r, err)
			}
			return id
		}
		hide := func(owner string, date int64, by string) uint64 {
			t.Helper()
			return hideID(storeTestPost(t, c, owner, date), by)
		}
		store := func(owner string) error {
			t.Helper()
			_, err := c.StorePost(ctx, []byte(`"from":"`+owner+`","body":"again","date":500`), owner, 500, "x")
			return err
		}
		refused := func(owner, when string, ids ...uint64) {
			t.Helper()
			seq, _ := c.PostSeq(ctx)
			n, _ := c.PostCount(ctx)
			if err := store(owner); !errors.Is(err, broker.ErrUnderReview) {
				t.Fatalf("%s: publish by %s: %v, want ErrUnderReview", when, owner, err)
			}
			if seq2, _ := c.PostSeq(ctx); seq2 != seq {
				t.Fatalf("%s: a refused publish took an id", when)
			}
			if n2, _ := c.PostCount(ctx); n2 != n {
				t.Fatalf("%s: a refused publish stored a post", when)
			}
			if got, err := c.UnderReview(ctx, owner); err != nil || !slices.Equal(got, ids) {
				t.Fatalf("%s: under review %v %v, want %v", when, got, err, ids)
			}
		}
		released := func(owner, when string) {
			t.Helper()
			if err := store(owner); err != nil {
				t.Fatalf("%s: publish by %s: %v", when, owner, err)
			}
			if n, err := c.ReviewSetLen(ctx, owner); err != nil || n != 0 {
				t.Fatalf("%s: %s's review set holds %d (%v)", when, owner, n, err)
			}
		}

		p := hide("7", 100, "a")
		refused("7", "a hidden post", p)
		released("8", "another author")
		if _, _, err := c.DismissReports(ctx, p); err != nil {
			t.Fatal(err)
		}
		released("7", "after the dismissal")

		// Deleted by its author while hidden: still under review, until
		// an operator removes (or dismisses) the copy.
		q := hide("7", 100, "a2")
		if kept, err := c.DeleteOwnPost(ctx, q, "7"); err != nil || !kept {
			t.Fatalf("delete: %v %v", kept, err)
		}
		refused("7", "a hidden post deleted by its author", q)
		if _, _, err := c.RemovePost(ctx, q); err != nil {
			t.Fatal(err)
		}
		released("7", "after the copy's removal")
		q2 := hide("7", 100, "a3")
		c.DeleteOwnPost(ctx, q2, "7")
		c.DismissReports(ctx, q2)
		released("7", "after the copy's dismissal")

		// Two hidden: the first dismissed, the second still holds.
		r, s := storeTestPost(t, c, "7", 100), storeTestPost(t, c, "7", 100)
		hideID(r, "b")
		hideID(s, "c")
		refused("7", "two hidden posts", r, s)
		c.DismissReports(ctx, r)
		refused("7", "one of two dismissed", s)
		if _, _, err := c.RemovePost(ctx, s); err != nil { // a live post's removal
			t.Fatal(err)
		}
		released("7", "after the second's removal")

		// The expiry, and the last reporter's account deletion.
		old := hide("7", 50, "d")
		refused("7", "before the expiry", old)
		if n, err := c.ExpirePosts(ctx, 60, 100); err != nil || n != 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		released("7", "after the expiry")
		u := hide("7", 100, "e")
		refused("7", "before its reporter's account went", u)
		if _, err := c.ForgetReporter(ctx, "e"); err != nil {
			t.Fatal(err)
		}
		released("7", "after its only reporter's account went")

		// The author's account erasure: a live hidden post deleted as an
		// account deletion deletes it (no copy), and a copy.
		v, w := storeTestPost(t, c, "9", 100), storeTestPost(t, c, "9", 100)
		hideID(v, "f")
		hideID(w, "g")
		c.DeleteOwnPost(ctx, w, "9")
		refused("9", "before the account deletion", v, w)
		if err := c.DeletePost(ctx, v, "9"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.EraseEvidenceOf(ctx, "9"); err != nil {
			t.Fatal(err)
		}
		if n, err := c.ReviewSetLen(ctx, "9"); err != nil || n != 0 {
			t.Fatalf("the erased account's review set holds %d (%v)", n, err)
		}

		// An older node's dismissal took the id out of the hidden set
		// only: the next publish drops it and goes through.
		x := hide("7", 100, "h")
		if err := c.RawUnhide(ctx, x); err != nil {
			t.Fatal(err)
		}
		if n, _ := c.ReviewSetLen(ctx, "7"); n != 1 {
			t.Fatalf("the stale set holds %d, want 1", n)
		}
		released("7", "after an older node's dismissal")
	})
}

// An id an older node's dismissal left hidden but out of the queue (no
// operator would ever see it) does not keep its author from publishing.
func TestUnderReviewNotQueued(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		p := storeTestPost(t, c, "7", 100)
		if r, err := c.ReportPost(ctx, p, broker.Report{By: "1", Reason: "scam", At: 1, Aged: true}, broker.ReportBounds{HideAt: 1}); err != nil || !r.Hidden {
			t.Fatalf("report: %+v %v", r, err)
		}
		if err := c.RawDropReports(ctx, p); err != nil {
			t.Fatal(err)
		}
		if ids, _ := c.UnderReview(ctx, "7"); len(ids) != 0 {
			t.Fatalf("under review %v, want none", ids)
		}
		storeTestPost(t, c, "7", 100)
		if n, _ := c.ReviewSetLen(ctx, "7"); n != 0 {
			t.Fatalf("the stale set holds %d", n)
		}
	})
}
