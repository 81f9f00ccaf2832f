package broker_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Evidence kept: the author's delete of a queued post removes it for
// everyone (the deletion is broadcast) but leaves its reports, queue
// entry and hidden mark, with a snapshot the queue lists marked deleted
// by its author, hidden ones first; its bytes stay counted. A dismissal,
// an operator's removal, the author's account erasure, the last
// reporter's account deletion and the queue's eviction each drop the
// snapshot with the reports; a deleted post is never shown again. On a
// real server, the embedded one and a cluster.
func TestEvidenceKept(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 64)
		c.Handle(broker.PostsChannel, func(_, payload string) { got <- payload })
		if err := c.Subscribe(ctx, c.Key(broker.PostsChannel)); err != nil {
			t.Fatal(err)
		}
		// next waits for the broadcasts want, then checks that nothing
		// else but the test's own publishes came before a marker published after them (on a cluster
		// the marker may overtake a script's message: hence the wait).
		next := func(want ...string) []string {
			t.Helper()
			var out []string
			deadline := time.After(5 * time.Second)
			for len(out) < len(want) {
				select {
				case m := <-got:
					if strings.HasPrefix(m, `{"op":"post",`) {
						continue // the test's own publishes
					}
					if !slices.Contains(want, m) {
						t.Fatalf("broadcast %s, want %v", m, want)
					}
					out = append(out, m)
				case <-deadline:
					return out
				}
			}
			if _, err := c.Publish(ctx, c.Key(broker.PostsChannel), "marker"); err != nil {
				t.Fatal(err)
			}
			for {
				select {
				case m := <-got:
					if m == "marker" {
						return out
					}
					if !strings.HasPrefix(m, `{"op":"post",`) {
						out = append(out, m)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no marker")
				}
			}
		}
		del := func(id uint64) string { return `{"op":"del","ids":[` + strconv.FormatUint(id, 10) + `]}` }
		bounds := broker.ReportBounds{Reporters: 10, Details: 3, HideAt: 2, Queue: 10}
		rep := func(id uint64, by string) broker.ReportResult {
			t.Helper()
			r, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "scam", At: 1000, Text: "asks for a deposit", Aged: true}, bounds)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		keys := func(id uint64) []string {
			t.Helper()
			k, queued, err := c.ReportKeys(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if queued {
				k = append(k, "queued")
			}
			for i, s := range k {
				k[i] = strings.TrimPrefix(s, "{posts}:")
				if j := strings.LastIndexByte(k[i], ':'); j > 0 {
					k[i] = k[i][:j]
				}
			}
			slices.Sort(k)
			return k
		}
		// budget checks that the byte count is the posts' and the
		// snapshots' total, as a rebuild from nothing would make it.
		budget := func(when string) {
			t.Helper()
			n, counted, err := c.PostBytes(ctx)
			if err != nil || !counted {
				t.Fatalf("%s: byte count %d %v %v", when, n, counted, err)
			}
			var want int64
			if err := c.ScanPosts(ctx, func(p string) { want += int64(len(p)) }); err != nil {
				t.Fatal(err)
			}
			list, err := c.ReportedPosts(ctx, 100, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list {
				if p.DeletedByAuthor {
					want += int64(len(`{"author":"","post":}`) + len(p.Author) + len(p.Post))
				}
			}
			if n != want {
				t.Fatalf("%s: byte count %d, want %d", when, n, want)
			}
		}

		hidden := storeTestPost(t, c, "7", 100)
		reported := storeTestPost(t, c, "7", 100)
		plain := storeTestPost(t, c, "7", 100)
		rep(hidden, "1")
		if !rep(hidden, "2").Hidden {
			t.Fatal("not hidden by two aged reporters")
		}
		rep(reported, "3")
		next(`{"op":"hide","ids":[` + strconv.FormatUint(hidden, 10) + `]}`)
		wantPost, err := c.ReportedPosts(ctx, 10, 3)
		if err != nil || len(wantPost) != 2 || wantPost[0].ID != hidden {
			t.Fatalf("queue %+v %v", wantPost, err)
		}

		if _, err := c.DeleteOwnPost(ctx, hidden, "8"); !errors.Is(err, broker.ErrNotOwner) {
			t.Fatalf("another user's delete: %v", err)
		}
		for _, tc := range []struct {
			id   uint64
			kept bool
		}{{hidden, true}, {reported, true}, {plain, false}} {
			if kept, err := c.DeleteOwnPost(ctx, tc.id, "7"); err != nil || kept != tc.kept {
				t.Fatalf("author's delete of %d: kept %v %v, want %v", tc.id, kept, err, tc.kept)
			}
			if m := next(del(tc.id)); !slices.Equal(m, []string{del(tc.id)}) {
				t.Fatalf("author's delete of %d broadcast %v, want the deletion", tc.id, m)
			}
		}
		if k := keys(hidden); !slices.Equal(k, []string{"gone", "hidden", "queued", "rby", "rlast"}) {
			t.Fatalf("the hidden post deleted by its author left %v, want its reports, queue entry, hidden mark and snapshot", k)
		}
		if k := keys(reported); !slices.Equal(k, []string{"gone", "queued", "rby", "rlast"}) {
			t.Fatalf("the reported post deleted by its author left %v", k)
		}
		noReportKeys(t, c, plain, "an unreported post deleted by its author")
		if n, _ := c.PostCount(ctx); n != 0 {
			t.Fatalf("%d posts left in the store", n)
		}
		budget("after the deletes")
		// Gone for everyone: a report, an edit, a second delete find no post.
		if _, err := c.ReportPost(ctx, reported, broker.Report{By: "4", Reason: "spam", At: 1}, bounds); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("report of a deleted post: %v", err)
		}
		if _, err := c.DeleteOwnPost(ctx, reported, "7"); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		list, err := c.ReportedPosts(ctx, 10, 3)
		if err != nil || len(list) != 2 {
			t.Fatalf("queue %+v %v", list, err)
		}
		for i, want := range wantPost {
			p := list[i]
			if p.ID != want.ID || !p.DeletedByAuthor || p.Author != "7" || p.Post != want.Post || p.Hidden != want.Hidden ||
				p.Reporters != want.Reporters || len(p.Latest) != len(want.Latest) {
				t.Fatalf("queue entry %d: %+v, want %+v marked deleted by its author", i, p, want)
			}
		}
		if a, post, found, err := c.Evidence(ctx, reported); err != nil || !found || a != "7" || post != wantPost[1].Post {
			t.Fatalf("Evidence: %q %q %v %v", a, post, found, err)
		}

		// Dismissing the hidden one: nothing is shown (a deletion again,
		// which no client hears), its reporters are distrusted.
		if n, shown, err := c.DismissReports(ctx, hidden); err != nil || n != 2 || shown {
			t.Fatalf("dismiss: %d %v %v, want 2 reporters, not shown", n, shown, err)
		}
		if m := next(del(hidden)); !slices.Equal(m, []string{del(hidden)}) {
			t.Fatalf("dismissal broadcast %v, want only the deletion again", m)
		}
		noReportKeys(t, c, hidden, "after the dismissal")
		if d, _ := c.Distrusted(ctx, "1"); !d {
			t.Fatal("a reporter of a dismissed hide is not distrusted")
		}
		budget("after the dismissal")

		// An operator's removal of a snapshot: its author and reporters,
		// no broadcast (it was not hidden).
		if a, n, err := c.RemovePost(ctx, reported); err != nil || a != "7" || n != 1 {
			t.Fatalf("remove: %q %d %v", a, n, err)
		}
		if m := next(); len(m) != 0 {
			t.Fatalf("removing a deleted post broadcast %v", m)
		}
		noReportKeys(t, c, reported, "after the removal")
		if _, _, err := c.RemovePost(ctx, reported); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("second removal: %v", err)
		}
		// With a notice: the author's account is gone here (none was
		// made), so nobody is told, and the snapshot goes all the same.
		withNotice := storeTestPost(t, c, "7", 100)
		rep(withNotice, "3")
		c.DeleteOwnPost(ctx, withNotice, "7")
		next(del(withNotice))
		r, err := c.RemoveWithNotice(ctx, withNotice, broker.Removal{Reason: "scam", At: 1, TTL: time.Hour})
		if err != nil || !r.DeletedByAuthor || r.Author != "7" || r.Reporters != 1 || r.Notice != 0 {
			t.Fatalf("remove with a notice: %+v %v", r, err)
		}
		noReportKeys(t, c, withNotice, "after the removal with a notice")

		// The author's account erasure drops its snapshots, hidden or
		// not, and leaves another author's.
		mine, other := storeTestPost(t, c, "7", 100), storeTestPost(t, c, "9", 100)
		rep(mine, "5")
		rep(mine, "6")
		rep(other, "5")
		c.DeleteOwnPost(ctx, mine, "7")
		c.DeleteOwnPost(ctx, other, "9")
		hideMine := `{"op":"hide","ids":[` + strconv.FormatUint(mine, 10) + `]}`
		next(hideMine, del(mine), del(other))
		if n, err := c.EraseEvidenceOf(ctx, "7"); err != nil || n != 1 {
			t.Fatalf("erase: %d %v, want 1", n, err)
		}
		if m := next(del(mine)); !slices.Equal(m, []string{del(mine)}) {
			t.Fatalf("erasing a hidden snapshot broadcast %v", m)
		}
		noReportKeys(t, c, mine, "after its author's account erasure")
		if k := keys(other); !slices.Contains(k, "gone") {
			t.Fatalf("another author's snapshot went: %v", k)
		}
		// Its only reporter's account deletion leaves nothing to review.
		if _, err := c.ForgetReporter(ctx, "5"); err != nil {
			t.Fatal(err)
		}
		noReportKeys(t, c, other, "after its only reporter's account went")
		budget("at the end")
	})
}

// The queue's bound holds with snapshots: a snapshot with one reporter
// is evicted like any such entry, its snapshot with it; a hidden one
// never is.
func TestEvidenceQueueBound(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{Reporters: 10, Details: 3, Queue: 2, HideAt: 1}
		rep := func(id uint64, by string, aged bool) broker.ReportResult {
			t.Helper()
			r, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "spam", At: 1, Aged: aged}, bounds)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a, h := storeTestPost(t, c, "7", 100), storeTestPost(t, c, "7", 100)
		rep(a, "1", false)
		if !rep(h, "1", true).Hidden {
			t.Fatal("not hidden")
		}
		for _, id := range []uint64{a, h} {
			if kept, err := c.DeleteOwnPost(ctx, id, "7"); err != nil || !kept {
				t.Fatalf("delete %d: %v %v", id, kept, err)
			}
		}
		n1 := storeTestPost(t, c, "8", 100)
		if r := rep(n1, "2", false); r.Evicted != a {
			t.Fatalf("a new report evicted %d, want the snapshot %d", r.Evicted, a)
		}
		noReportKeys(t, c, a, "after its eviction")
		n2 := storeTestPost(t, c, "8", 100)
		rep(n2, "3", false) // evicts n1, not the hidden snapshot
		if k, queued, err := c.ReportKeys(ctx, h); err != nil || !queued || !slices.Contains(k, "gone") {
			t.Fatalf("the hidden snapshot: %v %v %v, want it kept", k, queued, err)
		}
		if n, _ := c.ReportQueueLen(ctx); n != 2 {
			t.Fatalf("queue holds %d, want its bound 2", n)
		}
	})
}
