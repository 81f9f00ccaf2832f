package broker_test

import (
	"context"
	"errors"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// The list of bans on a real redis-server, the embedded server and a Redis
// Cluster (the list has its own slot): bans are listed newest first with
// the time and note of the user's hash, in pages; a renewed ban moves to
// the top; an unban takes its entry off; an account that went while
// banned leaves a stale entry that a ban's pruning of the oldest entries
// or a listing cleans; the list keeps at most BanListMax entries, the ban
// dropped from it still holding.
func TestBanList(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		opt := b.Options
		opt.BanListMax = 4
		c := brokertest.Open(t, opt)
		users := make([]string, 6)
		for i := range users {
			id, err := c.CreateUser(ctx, "d", 1000)
			if err != nil {
				t.Fatal(err)
			}
			users[i] = id
		}
		ids := func(l []broker.BanEntry) []string {
			var out []string
			for _, e := range l {
				out = append(out, e.User)
			}
			return out
		}
		want := func(got []broker.BanEntry, w ...string) {
			t.Helper()
			if g := ids(got); len(g) != len(w) || (len(w) > 0 && g[0] != w[0]) || (len(w) > 1 && g[len(g)-1] != w[len(w)-1]) {
				t.Fatalf("listed %v, want %v", g, w)
			}
			for i := range w {
				if got[i].User != w[i] {
					t.Fatalf("listed %v, want %v", ids(got), w)
				}
			}
		}

		if l, cleaned, total, err := c.Bans(ctx, 0, 10); err != nil || len(l) != 0 || cleaned != 0 || total != 0 {
			t.Fatalf("empty list: %v %d %d %v", l, cleaned, total, err)
		}
		for i, u := range users[:3] {
			if _, err := c.BanUser(ctx, u, int64(2000+i), "note "+u); err != nil {
				t.Fatal(err)
			}
		}
		l, _, total, err := c.Bans(ctx, 0, 10)
		if err != nil || total != 3 {
			t.Fatalf("bans: %v %d %v", l, total, err)
		}
		want(l, users[2], users[1], users[0])
		if l[0].At != 2002 || l[0].Note != "note "+users[2] || l[2].At != 2000 {
			t.Fatalf("entries: %+v", l)
		}
		// Pages: the next starts at offset + len(page).
		p1, _, _, _ := c.Bans(ctx, 0, 2)
		p2, _, _, _ := c.Bans(ctx, len(p1), 2)
		want(p1, users[2], users[1])
		want(p2, users[0])
		if pg, err := c.ListBans(ctx, 0, 2); err != nil || pg.Next != 2 || pg.Total != 3 || len(pg.Bans) != 2 {
			t.Fatalf("page one: %+v %v", pg, err)
		}
		if pg, err := c.ListBans(ctx, 2, 2); err != nil || pg.Next != 0 || len(pg.Bans) != 1 {
			t.Fatalf("the last page: %+v %v", pg, err)
		}

		// A renewed ban moves up, with its new note.
		if was, err := c.BanUser(ctx, users[0], 3000, ""); err != nil || !was {
			t.Fatalf("renew: %v %v", was, err)
		}
		l, _, _, _ = c.Bans(ctx, 0, 10)
		want(l, users[0], users[2], users[1])
		if l[0].Note != "" || l[0].At != 3000 {
			t.Fatalf("renewed entry: %+v", l[0])
		}

		// Unban takes the entry off; a second unban is harmless.
		if was, err := c.UnbanUser(ctx, users[2]); err != nil || !was {
			t.Fatalf("unban: %v %v", was, err)
		}
		if was, err := c.UnbanUser(ctx, users[2]); err != nil || was {
			t.Fatalf("second unban: %v %v", was, err)
		}
		l, _, total, _ = c.Bans(ctx, 0, 10)
		want(l, users[0], users[1])
		if total != 2 {
			t.Fatalf("total %d after the unban", total)
		}

		// An account gone while banned (expired, or deleted) is stale: the
		// oldest entries are pruned at the next ban.
		if r, err := c.DeleteAccount(ctx, users[1], "d"); err != nil || r != broker.AccountOK {
			t.Fatalf("delete: %d %v", r, err)
		}
		if _, err := c.BanUser(ctx, users[3], 4000, ""); err != nil {
			t.Fatal(err)
		}
		l, cleaned, total, _ := c.Bans(ctx, 0, 10)
		want(l, users[3], users[0])
		if cleaned != 0 || total != 2 {
			t.Fatalf("the ban did not prune the gone account: cleaned %d total %d", cleaned, total)
		}
		// And a listing cleans what it meets.
		if r, _ := c.DeleteAccount(ctx, users[3], "d"); r != broker.AccountOK {
			t.Fatal("delete")
		}
		l, cleaned, total, _ = c.Bans(ctx, 0, 10)
		want(l, users[0])
		if cleaned != 1 || total != 1 {
			t.Fatalf("listing: cleaned %d total %d", cleaned, total)
		}
		if _, err := c.BanUser(ctx, "999999", 5000, ""); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("an unknown user: %v", err)
		}

		// The bound: at most 4 entries, the oldest dropped from the list;
		// its ban holds.
		more := []string{users[4], users[5]}
		for _, n := range []string{"a", "b", "c"} {
			id, _ := c.CreateUser(ctx, n, 1000)
			more = append(more, id)
		}
		for i, u := range more {
			if _, err := c.BanUser(ctx, u, int64(6000+i), ""); err != nil {
				t.Fatal(err)
			}
		}
		l, _, total, _ = c.Bans(ctx, 0, 10)
		if total != 4 || len(l) != 4 || l[0].User != more[4] || l[3].User != more[1] {
			t.Fatalf("bounded list: %v total %d", ids(l), total)
		}
		if ban, err := c.BanOf(ctx, users[0]); err != nil || ban.At != 3000 {
			t.Fatalf("a ban dropped from the list must hold: %+v %v", ban, err)
		}
	})
}

// A ban whose list write fails (here: a Redis user that may not touch
// the {bans} keys, as a real server's ACL makes it) holds, and says
// ErrBanNotListed; so does an unban; a rerun by a client that may write
// the list lists it, and a listing cleans an entry whose unban failed to
// take it off.
func TestBanNotListed(t *testing.T) {
	r := brokertest.StartRedis(t)
	prefix := brokertest.Prefix()
	ctx := context.Background()
	admin := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: prefix})
	limited := r.Limited(t, prefix, "nolist", prefix+"u:*", prefix+"pd:*")
	id, err := admin.CreateUser(ctx, "d", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := limited.BanUser(ctx, id, 2000, "n"); !errors.Is(err, broker.ErrBanNotListed) {
		t.Fatalf("ban without the list: %v, want ErrBanNotListed", err)
	}
	if ban, err := admin.BanOf(ctx, id); err != nil || ban.At != 2000 {
		t.Fatalf("the ban must hold: %+v %v", ban, err)
	}
	if l, _, total, _ := admin.Bans(ctx, 0, 10); len(l) != 0 || total != 0 {
		t.Fatalf("listed: %v", l)
	}
	if was, err := admin.BanUser(ctx, id, 3000, "n"); err != nil || !was {
		t.Fatalf("the rerun: %v %v", was, err)
	}
	if l, _, _, _ := admin.Bans(ctx, 0, 10); len(l) != 1 || l[0].User != id {
		t.Fatalf("listed after the rerun: %v", l)
	}
	if was, err := limited.UnbanUser(ctx, id); !errors.Is(err, broker.ErrBanNotListed) || !was {
		t.Fatalf("unban without the list: %v %v", was, err)
	}
	if l, cleaned, total, err := admin.Bans(ctx, 0, 10); err != nil || len(l) != 0 || cleaned != 1 || total != 0 {
		t.Fatalf("the listing after a failed unban: %v cleaned %d total %d %v", l, cleaned, total, err)
	}
}
