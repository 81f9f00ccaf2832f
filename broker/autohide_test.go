package broker_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// The report that brings a post's aged reporters to HideAt hides it: the
// id joins the hidden set and {"op":"hide"} goes out on the posts
// channel, in the report's script. Young reporters and repeats do not
// count; a dismissal shows the post again ({"op":"show"}); a deletion,
// an expiry and the last reporter's account deletion take the id out of
// the set. On a real server, the embedded one and a cluster.
func TestAutoHide(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 64)
		c.Handle(broker.PostsChannel, func(_, payload string) { got <- payload })
		if err := c.Subscribe(ctx, c.Key(broker.PostsChannel)); err != nil {
			t.Fatal(err)
		}
		expect := func(want string) {
			t.Helper()
			deadline := time.After(5 * time.Second)
			for {
				select {
				case m := <-got:
					if m == want {
						return
					}
				case <-deadline:
					t.Fatalf("no broadcast %s", want)
				}
			}
		}
		none := func(what string) {
			t.Helper()
			// A message published before a PING reaches the subscriber
			// first: publish a marker and see it before anything else.
			if _, err := c.Publish(ctx, c.Key(broker.PostsChannel), "marker"); err != nil {
				t.Fatal(err)
			}
			for m := range got {
				if m == "marker" {
					return
				}
				if strings.HasPrefix(m, `{"op":"hide",`) || strings.HasPrefix(m, `{"op":"show",`) {
					t.Fatalf("%s: unexpected %s", what, m)
				}
			}
		}
		bounds := broker.ReportBounds{Reporters: 10, Details: 3, HideAt: 3}
		rep := func(id uint64, by string, aged bool) broker.ReportResult {
			t.Helper()
			r, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "scam", At: 1000, Aged: aged}, bounds)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		hidden := func() []uint64 {
			t.Helper()
			ids, err := c.HiddenPosts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(ids)
			return ids
		}
		p := storeTestPost(t, c, "7", 100)
		// Two aged, three young, one aged repeat: two aged reporters.
		for _, r := range []struct {
			by   string
			aged bool
		}{{"1", true}, {"2", false}, {"3", false}, {"4", false}, {"1", true}, {"5", true}} {
			if res := rep(p, r.by, r.aged); res.Hidden {
				t.Fatalf("hidden by %+v with fewer than 3 aged reporters", r)
			}
		}
		none("below the threshold")
		if len(hidden()) != 0 {
			t.Fatalf("hidden set %v below the threshold", hidden())
		}
		// A young reporter's repeat as aged counts once (the account
		// aged meanwhile): the third aged reporter hides the post.
		if res := rep(p, "2", true); !res.Hidden || !res.Again || res.Reporters != 5 {
			t.Fatalf("third aged reporter: %+v, want hidden", res)
		}
		expect(`{"op":"hide","ids":[` + strconv.FormatUint(p, 10) + `]}`)
		if h := hidden(); !slices.Equal(h, []uint64{p}) {
			t.Fatalf("hidden set %v, want [%d]", h, p)
		}
		// Hidden once: more reports announce nothing more.
		if res := rep(p, "6", true); res.Hidden {
			t.Fatalf("a report of a hidden post hid it again: %+v", res)
		}
		none("a report of a hidden post")
		list, err := c.ReportedPosts(ctx, 10, 1)
		if err != nil || len(list) != 1 || !list[0].Hidden || list[0].Reasons["scam"] != 6 || len(list[0].Reasons) != 1 {
			t.Fatalf("queue %+v %v: want the post, hidden, 6 scam reports", list, err)
		}

		// Hidden posts come first in the queue, whatever their counts.
		q := storeTestPost(t, c, "8", 100)
		for i := range 8 {
			rep(q, "x"+strconv.Itoa(i), false)
		}
		if list, err := c.ReportedPosts(ctx, 1, 1); err != nil || len(list) != 1 || list[0].ID != p {
			t.Fatalf("queue of 1 %+v %v: want the hidden post %d first", list, err, p)
		}
		if list, err := c.ReportedPosts(ctx, 10, 1); err != nil || len(list) != 2 || list[0].ID != p || list[1].ID != q || list[1].Hidden {
			t.Fatalf("queue %+v %v: want hidden %d, then %d", list, err, p, q)
		}

		n, shown, err := c.DismissReports(ctx, p)
		if err != nil || n != 6 || !shown {
			t.Fatalf("dismiss: %d %v %v, want 6 reporters, shown", n, shown, err)
		}
		expect(`{"op":"show","ids":[` + strconv.FormatUint(p, 10) + `]}`)
		noReportKeys(t, c, p, "after the dismissal")
		if _, shown, _ := c.DismissReports(ctx, q); shown {
			t.Fatal("a post never hidden was shown")
		}
		none("dismissing a post never hidden")

		// Reports after a dismissal count from zero again, and the
		// reporters that hid it no longer count (TestAutoHideDistrust).
		for _, by := range []string{"a", "b"} {
			if rep(p, by, true).Hidden {
				t.Fatal("hidden again by two reports")
			}
		}
		if !rep(p, "c", true).Hidden {
			t.Fatal("not hidden again by three new reports")
		}

		// Every way a post goes takes it out of the hidden set.
		hideNew := func(owner string) uint64 {
			id := storeTestPost(t, c, owner, 100)
			for _, by := range []string{"a", "b", "c"} {
				rep(id, by, true)
			}
			return id
		}
		if err := c.DeletePost(ctx, p, "7"); err != nil {
			t.Fatal(err)
		}
		noReportKeys(t, c, p, "after its deletion")
		old := hideNew("9")
		if n, err := c.ExpirePosts(ctx, 100, 100); err != nil || n < 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		noReportKeys(t, c, old, "after its expiry")
		alone := storeTestPost(t, c, "9", 200)
		bounds.HideAt = 1
		if !rep(alone, "a", true).Hidden {
			t.Fatal("not hidden at a threshold of 1")
		}
		if _, err := c.ForgetReporter(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		expect(`{"op":"show","ids":[` + strconv.FormatUint(alone, 10) + `]}`)
		noReportKeys(t, c, alone, "after its only reporter's account went")
		if h := hidden(); len(h) != 0 {
			t.Fatalf("hidden set %v left", h)
		}
	})
}

// Concurrent reports that cross the threshold together hide the post
// once: the count and the hide are one script.
func TestAutoHideOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		p := storeTestPost(t, c, "7", 100)
		bounds := broker.ReportBounds{Reporters: 100, HideAt: 5}
		var wg sync.WaitGroup
		var mu sync.Mutex
		hid := 0
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := c.ReportPost(ctx, p, broker.Report{By: strconv.Itoa(100 + i), Reason: "spam", At: 1, Aged: true}, bounds)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Hidden {
					mu.Lock()
					hid++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if hid != 1 {
			t.Fatalf("%d reports hid the post, want exactly 1", hid)
		}
	})
}

func TestAccountMade(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		id, err := c.CreateUser(ctx, "digest", 1_700_000_000_000)
		if err != nil {
			t.Fatal(err)
		}
		if made, ok, err := c.AccountMade(ctx, id); err != nil || !ok || made != 1_700_000_000_000 {
			t.Fatalf("AccountMade: %d %v %v", made, ok, err)
		}
		if _, ok, err := c.AccountMade(ctx, "999999"); err != nil || ok {
			t.Fatalf("AccountMade of no account: ok %v %v", ok, err)
		}
	})
}

// A dismissal of a hidden post puts the reporters that counted toward the
// hide on the distrust set: their reports no longer count, so the same
// accounts cannot hide the next post; reporters that were not aged, and
// dismissals of posts never hidden, mark nobody; an account deletion
// takes the user off the set.
func TestAutoHideDistrust(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{Reporters: 10, HideAt: 2}
		rep := func(id uint64, by string, aged bool) broker.ReportResult {
			t.Helper()
			r, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "spam", At: 1, Aged: aged}, bounds)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		distrusted := func(user string) bool {
			t.Helper()
			d, err := c.Distrusted(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		// Never hidden: the dismissal marks nobody.
		calm := storeTestPost(t, c, "7", 100)
		rep(calm, "1", true)
		if _, shown, _ := c.DismissReports(ctx, calm); shown || distrusted("1") {
			t.Fatal("a dismissal of a post never hidden marked its reporter")
		}
		p := storeTestPost(t, c, "7", 100)
		rep(p, "young", false)
		rep(p, "1", true)
		if !rep(p, "2", true).Hidden {
			t.Fatal("not hidden")
		}
		if _, shown, err := c.DismissReports(ctx, p); err != nil || !shown {
			t.Fatalf("dismiss: %v %v", shown, err)
		}
		if !distrusted("1") || !distrusted("2") || distrusted("young") {
			t.Fatalf("distrusted: 1 %v, 2 %v, young %v; want the two aged reporters only",
				distrusted("1"), distrusted("2"), distrusted("young"))
		}
		next := storeTestPost(t, c, "7", 100)
		rep(next, "1", true)
		if rep(next, "2", true).Hidden {
			t.Fatal("the reporters of a dismissed hide hid another post")
		}
		if rep(next, "3", true).Hidden {
			t.Fatal("one trusted aged reporter hid the post")
		}
		if !rep(next, "4", true).Hidden {
			t.Fatal("two trusted aged reporters did not hide the post")
		}
		if _, err := c.ForgetReporter(ctx, "1"); err != nil || distrusted("1") {
			t.Fatalf("after the account's deletion: distrusted %v %v", distrusted("1"), err)
		}
	})
}
