package posts

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

func (n *node) hiddenHas(id uint64) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	_, ok := n.hidden[id]
	return ok
}

// since returns the frames c got after the first n.
func since(c *fakeConn, n int) []string { return c.frames()[n:] }

// A post reported by HideAt distinct aged users leaves every node's reads
// and fan-out but its author's: subscribers that asked for deletions get
// post_deleted, the author's own subscription the post marked
// under_review; a new subscribe's catch-up and the HTTP API lack it but
// for the author, whose subscribe still gets it, marked. Its edits go to
// the author alone; a dismissal brings it back to every node's reads and
// to the subscribers that asked for changes; a deletion tells the author.
// A node started while it is hidden loads it hidden.
func TestHiddenPendingReview(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		clk := newClock()
		cfg := Config{Clock: clk.Now, QuotaN: 100}
		a := startNode(t, b.Options, cfg)
		n := startNode(t, b.Options, cfg)
		srv := serve(t, n)
		author := newConn("7")
		p := a.publish(t, author, publishFrame("[0,1,2]", "[0,3,7]", 1, "10"))
		other := a.publish(t, newConn("8"), publishFrame("[0,1,2]", "[0,3,7]", 1, "20"))
		n.until(t, "both posts on the second node", func() bool { return n.has(p) && n.has(other) })

		watcher, plain, mine := newConn("20"), newConn("21"), newConn("7")
		subscribe(t, n, watcher, `{"cmd":"subscribe","deletions":true}`)
		subscribe(t, n, plain, `{"cmd":"subscribe"}`)
		subscribe(t, n, mine, `{"cmd":"subscribe","deletions":true}`)
		w0, p0, m0 := len(watcher.wait(t, 2)), len(plain.wait(t, 2)), len(mine.wait(t, 2))

		bounds := broker.ReportBounds{Reporters: 10, Details: 3, Queue: 10, HideAt: 3}
		for i, by := range []string{"1", "2", "3"} {
			done, err := a.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"scam"}`, p)), bounds)
			if err != nil || done.Hidden != (i == 2) {
				t.Fatalf("report %d: %+v %v", i+1, done, err)
			}
		}
		for _, x := range []*node{a, n} {
			x.until(t, "the post hidden", func() bool { return !x.has(p) && x.hiddenHas(p) })
		}
		if got := watcher.wait(t, w0+1)[w0]; got != fmt.Sprintf(`{"cmd":"post_deleted","id":%d}`, p) {
			t.Fatalf("watcher got %s, want post_deleted", got)
		}
		if got := mine.wait(t, m0+1)[m0]; !strings.Contains(got, `"under_review":true}]}`) || items(t, got)[0] != p {
			t.Fatalf("author got %s, want the post under review", got)
		}
		if got := since(plain, p0); len(got) != 0 {
			t.Fatalf("a subscriber without deletions got %v", got)
		}

		// Reads: neither a catch-up nor the HTTP API has it, but the
		// author's catch-up does, marked.
		fresh := newConn("22")
		subscribe(t, n, fresh, `{"cmd":"subscribe"}`)
		if got := fresh.wait(t, 2); len(got) != 2 || fmt.Sprint(items(t, got[1])) != fmt.Sprint([]uint64{other}) {
			t.Fatalf("catch-up of another user %v, want only post %d", got, other)
		}
		again := newConn("7")
		subscribe(t, n, again, `{"cmd":"subscribe"}`)
		got := again.wait(t, 3)
		if fmt.Sprint(items(t, got[1])) != fmt.Sprint([]uint64{other}) || !strings.HasSuffix(got[2], `"under_review":true}]}`) ||
			items(t, got[2])[0] != p {
			t.Fatalf("the author's catch-up %v, want post %d then its own %d under review", got, other, p)
		}
		if code, _, body := get(t, fmt.Sprintf("%s/api/posts/%d", srv.URL, p)); code != http.StatusNotFound {
			t.Fatalf("GET a hidden post: %d %s", code, body)
		}
		if _, _, body := get(t, srv.URL+"/api/posts"); strings.Contains(body, fmt.Sprintf(`"id":%d,`, p)) {
			t.Fatalf("GET /api/posts lists the hidden post: %s", body)
		}
		if _, _, body := get(t, srv.URL+"/api/posts?count=1"); !strings.Contains(body, `"count":1`) {
			t.Fatalf("count with a hidden post: %s", body)
		}

		// A node that starts now loads it hidden.
		late := startNode(t, b.Options, cfg)
		if late.has(p) || !late.hiddenHas(p) || !late.has(other) {
			t.Fatalf("a node started after the hide: has %v, hidden %v", late.has(p), late.hiddenHas(p))
		}

		// An edit while hidden reaches the author only.
		w1, m1 := len(watcher.frames()), len(mine.frames())
		if _, _, err := a.b.ChangePost(ctx, p, "7", clk.Now().Unix(), broker.PostChange{Kind: "status", Status: "sold"}); err != nil {
			t.Fatal(err)
		}
		if got := mine.wait(t, m1+1)[m1]; !strings.Contains(got, `"status":"sold","under_review":true}`) {
			t.Fatalf("author got %s, want the sold post under review", got)
		}
		n.until(t, "the change held aside", func() bool {
			n.mu.RLock()
			defer n.mu.RUnlock()
			h := n.hidden[p]
			return h != nil && strings.Contains(string(h.JSON), "sold")
		})
		if n.has(p) {
			t.Fatal("an edit brought the hidden post back")
		}

		// Dismissed: back everywhere, sent to those that asked for changes.
		if _, shown, err := a.b.DismissReports(ctx, p); err != nil || !shown {
			t.Fatalf("dismiss: %v %v", shown, err)
		}
		for _, x := range []*node{a, n, late} {
			x.until(t, "the post shown", func() bool { return x.has(p) && !x.hiddenHas(p) })
		}
		if got := watcher.wait(t, w1+1)[w1]; items(t, got)[0] != p || strings.Contains(got, "under_review") {
			t.Fatalf("watcher got %s after the dismissal, want the post", got)
		}
		if got := mine.wait(t, m1+2)[m1+1]; items(t, got)[0] != p || strings.Contains(got, "under_review") {
			t.Fatalf("author got %s after the dismissal, want the post unmarked", got)
		}
		if code, _, _ := get(t, fmt.Sprintf("%s/api/posts/%d", srv.URL, p)); code != http.StatusOK {
			t.Fatalf("GET the post shown again: %d", code)
		}

		// Hidden again, then deleted by its author: the author is told.
		for _, by := range []string{"4", "5", "6"} {
			if _, err := a.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"spam"}`, p)), bounds); err != nil {
				t.Fatal(err)
			}
		}
		n.until(t, "hidden again", func() bool { return n.hiddenHas(p) })
		// The author's own edit is acked with its copy marked.
		editor := newConn("7")
		if err := n.SetStatus(ctx, editor, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"reserved"}`, p))); err != nil {
			t.Fatal(err)
		}
		if got := editor.wait(t, 1)[0]; !strings.HasPrefix(got, `{"cmd":"set_status_ack","result":"ok"`) ||
			!strings.HasSuffix(got, `"status":"reserved","under_review":true}}`) {
			t.Fatalf("set_status_ack of a hidden post: %s", got)
		}
		m2 := len(mine.wait(t, m1+4))
		if err := a.Delete(ctx, author, req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, p))); err != nil {
			t.Fatal(err)
		}
		if got := mine.wait(t, m2+1)[m2]; got != fmt.Sprintf(`{"cmd":"post_deleted","id":%d}`, p) {
			t.Fatalf("author got %s after the deletion", got)
		}
		for _, x := range []*node{a, n, late} {
			x.until(t, "the hidden post forgotten", func() bool { return !x.hiddenHas(p) && !x.has(p) })
		}

		// Deleted by its author while hidden, it is still under review:
		// the author publishes again once an operator removed it.
		err := a.Publish(ctx, author, req(t, publishFrame("[0,1,2]", "[0,3,7]", 1, "30")))
		if we := wire.AsError(err); we == nil || we.Reason != wire.UnderReview {
			t.Fatalf("publish while a deleted hidden post is under review: %v", err)
		}
		if st := a.Stats(); st.RefusedReview != 1 {
			t.Fatalf("RefusedReview %d, want 1", st.RefusedReview)
		}
		if _, _, err := a.b.RemovePost(ctx, p); err != nil {
			t.Fatal(err)
		}

		// An account deletion deletes the author's hidden posts too.
		q := a.publish(t, author, publishFrame("[0,1,2]", "[0,3,7]", 1, "30"))
		for _, by := range []string{"4", "5", "6"} {
			if _, err := a.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"spam"}`, q)), bounds); err != nil {
				t.Fatal(err)
			}
		}
		n.until(t, "the second post hidden", func() bool { return n.hiddenHas(q) })
		if k, err := n.DeleteAllOf(ctx, "7"); err != nil || k != 1 {
			t.Fatalf("DeleteAllOf: %d %v, want the hidden post", k, err)
		}
		if c, _ := n.b.PostCount(ctx); c != 1 {
			t.Fatalf("%d posts left in Redis, want only post %d", c, other)
		}
		for _, x := range []*node{a, n, late} {
			x.until(t, "the deleted hidden post forgotten", func() bool { return !x.hiddenHas(q) })
		}
	})
}

// Only reporters whose accounts are ReportMinAge old count, each once.
func TestHideCountsAgedReporters(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, ReportMinAge: 7 * 24 * time.Hour})
		now := clk.Now()
		user := func(made time.Time) string {
			id, err := n.b.CreateUser(ctx, "digest", made.UnixMilli())
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		old1, old2 := user(now.Add(-8*24*time.Hour)), user(now.Add(-7*24*time.Hour))
		young := []string{user(now.Add(-6 * 24 * time.Hour)), user(now), user(now.Add(-time.Hour))}
		author := user(now)
		p := n.publish(t, newConn(author), publishFrame("[0,1,2]", "[0,3,7]", 1, "10"))
		bounds := broker.ReportBounds{HideAt: 3}
		report := func(by string) ReportDone {
			t.Helper()
			done, err := n.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"scam"}`, p)), bounds)
			if err != nil {
				t.Fatal(err)
			}
			return done
		}
		for _, by := range append([]string{old1, old2}, young...) {
			if d := report(by); d.Hidden {
				t.Fatalf("hidden with two aged reporters and %d young ones", len(young))
			}
		}
		// No such account: not aged (cannot happen from a session, whose
		// login checked it, but must not count).
		if d := report("999999"); d.Hidden {
			t.Fatal("a reporter without an account counted")
		}
		clk.Add(24 * time.Hour) // the first young one is 7 days old now
		if d := report(young[0]); !d.Hidden || d.Reporters != 6 {
			t.Fatalf("third aged reporter: %+v, want the post hidden", d)
		}
	})
}
