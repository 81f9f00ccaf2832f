package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// One LoginMany call answers each login as its own LoginFetch would: the
// right password logs in (its generation, its kick, its quota, its queue's
// head, its blocks, its notices), a wrong one, an unknown user and a
// banned user are refused with nothing changed, a login whose command
// fails (a wrong-typed queue left by a foreign writer) fails alone and the
// logins after it go on. Two logins of one user in one call are made in
// order. On the cluster the users fall in several slots: one call per
// slot, each login's result its own.
func TestLoginManyMixesResults(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 64)
		c.Handle("c:", func(ch, payload string) { got <- ch + " " + payload })
		now := int64(1_000_000)
		var users []string
		for i := 0; i < 6; i++ {
			id, err := c.CreateUser(ctx, "d", now) // generation 1
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Subscribe(ctx, c.UserChannel(id)); err != nil {
				t.Fatal(err)
			}
			users = append(users, id)
		}
		good, wrong, banned, broken, other, twice := users[0], users[1], users[2], users[3], users[4], users[5]
		opt := broker.StoreOptions{Cap: 10, TTLms: 60_000}
		for i := 1; i <= 3; i++ {
			if _, err := c.StoreMessage(ctx, good, []byte(fmt.Sprintf(`"n":%d`, i)), now, opt, false); err != nil {
				t.Fatal(err)
			}
		}
		q := broker.Quota{N: 5, PeriodMs: 60_000}
		if _, _, ok, err := c.TakePostQuota(ctx, good, now, q); !ok || err != nil {
			t.Fatalf("take quota: %v %v", ok, err)
		}
		if _, err := c.Block(ctx, good, other, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AddNotice(ctx, good, broker.Notice{Kind: "post_removed", Post: 1, Reason: "scam", At: now}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := c.BanUser(ctx, banned, now, "spam"); err != nil {
			t.Fatal(err)
		}
		if err := c.RawHIncr(ctx, "q", broken, "x", 1); err != nil {
			t.Fatal(err)
		}
		drain(got)
		req := broker.LoginRequest{Digest: "d", Now: now, TTLms: 60_000, Quota: q, QuotaNow: now + 1, Batch: 2}
		item := func(id, digest string) broker.LoginItem {
			r := req
			r.Digest = digest
			return broker.LoginItem{ID: id, Req: r}
		}
		items := []broker.LoginItem{item(good, "d"), item(wrong, "x"), item("424242", "d"), item(banned, "d"),
			item(banned, "x"), item(broken, "d"), item(other, "d"), item(twice, "d"), item(twice, "d")}
		res := c.LoginMany(ctx, items)
		if len(res) != len(items) {
			t.Fatalf("%d results for %d logins", len(res), len(items))
		}
		r := res[0]
		fetched, err := c.Fetch(ctx, good, 0, "", 2)
		if err != nil {
			t.Fatal(err)
		}
		if r.Err != nil || !r.OK || r.State.Gen != 2 || r.State.Receivers != 1 || r.State.Remaining != 4 ||
			r.State.Notices != 1 || !slices.Equal(r.State.Blocks, []string{other}) || len(fetched.Msgs) != 2 ||
			r.State.Fetched.Seq != fetched.Seq || strings.Join(r.State.Fetched.Msgs, "|") != strings.Join(fetched.Msgs, "|") {
			t.Fatalf("the right password: %+v; want gen 2, 1 receiver, 4 posts left, 1 notice, blocks [%s], fetch %+v", r, other, fetched)
		}
		for i, what := range []string{1: "a wrong password", 2: "an unknown user", 4: "a banned user's wrong password"} {
			if what != "" && (res[i].OK || res[i].Err != nil || res[i].State.Gen != 0) {
				t.Fatalf("%s: %+v, want refused", what, res[i])
			}
		}
		if !errors.Is(res[3].Err, broker.ErrBanned) || res[3].OK {
			t.Fatalf("a banned user: %+v, want ErrBanned", res[3])
		}
		if res[5].Err == nil || res[5].OK || errors.Is(res[5].Err, broker.ErrBanned) {
			t.Fatalf("a login whose queue is a hash: %+v, want its own error", res[5])
		}
		if !res[6].OK || res[6].Err != nil || res[6].State.Gen != 2 || res[6].State.Receivers != 1 || res[6].State.Blocks != nil {
			t.Fatalf("the login after a failed one: %+v", res[6])
		}
		if !res[7].OK || !res[8].OK || res[7].State.Gen != 2 || res[8].State.Gen != 3 {
			t.Fatalf("two logins of one user: %+v then %+v, want generations 2 then 3", res[7], res[8])
		}
		if ttl, _ := c.AccountTTL(ctx, "424242"); ttl != -2 {
			t.Fatalf("an unknown user's login made a hash (PTTL %v)", ttl)
		}
		// Kicks: one per login that passed, and the failed one's (its
		// queue's PEXPIRE works on a hash, so it kicked before its LRANGE
		// failed, as a call of its own would have); none for refusals.
		want := map[string][]string{
			c.UserChannel(good):   {"k2"},
			c.UserChannel(broken): {"k2"},
			c.UserChannel(other):  {"k2"},
			c.UserChannel(twice):  {"k2", "k3"},
		}
		for n := 5; n > 0; n-- {
			select {
			case p := <-got:
				ch, payload, _ := strings.Cut(p, " ")
				if len(want[ch]) == 0 || want[ch][0] != payload {
					t.Fatalf("publication %q, want one of %v", p, want)
				}
				want[ch] = want[ch][1:]
			case <-time.After(5 * time.Second):
				t.Fatalf("kicks missing: %v", want)
			}
		}
		select {
		case p := <-got:
			t.Fatalf("an extra publication %q", p)
		case <-time.After(50 * time.Millisecond):
		}
		// The refused logins changed nothing: the next login of each
		// makes generation 2 (wrong) and the banned one stays refused.
		if st, ok, err := c.LoginFetch(ctx, wrong, req); err != nil || !ok || st.Gen != 2 {
			t.Fatalf("after a wrong password: %+v %v %v, want generation 2", st, ok, err)
		}
	})
}

func drain(ch chan string) {
	for {
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// A LoginMany call that fails as a whole (Redis gone) fails every login it
// carried as unavailable: none is reported made.
func TestLoginManyFailsEveryLogin(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		if b.Redis == nil {
			t.Skip("needs a server to stop")
		}
		ctx := context.Background()
		opt := b.Options
		opt.Timeout = 500 * time.Millisecond
		c := brokertest.Open(t, opt)
		id, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		b.Redis.Stop()
		req := broker.LoginRequest{Digest: "d", Now: 2000, TTLms: 60_000, Batch: 4}
		res := c.LoginMany(ctx, []broker.LoginItem{{ID: id, Req: req}, {ID: "8", Req: req}, {ID: id, Req: req}})
		for i, r := range res {
			if !errors.Is(r.Err, broker.ErrUnavailable) || r.OK || r.State.Gen != 0 {
				t.Fatalf("login %d with Redis gone: %+v, want ErrUnavailable", i, r)
			}
		}
	})
}

// Logins made at once by many callers are gathered: each caller gets its
// own result (right or wrong password, in any mix), every login that
// passed made its own generation, and Redis ran fewer login calls than
// logins.
func TestConcurrentLoginsAreGathered(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		const n = 120
		ids := make([]string, n/2)
		for i := range ids {
			var err error
			if ids[i], err = c.CreateUser(ctx, fmt.Sprint("d", i), 1000); err != nil {
				t.Fatal(err)
			}
		}
		if b.Redis != nil {
			b.Redis.CLI(t, "CONFIG", "RESETSTAT")
		}
		type result struct {
			st  broker.LoginState
			ok  bool
			err error
		}
		res := make([]result, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Login i is user i/2's, with its password when i is even.
				digest := fmt.Sprint("d", i/2)
				if i%2 == 1 {
					digest = "wrong"
				}
				r := &res[i]
				r.st, r.ok, r.err = c.LoginFetch(ctx, ids[i/2], broker.LoginRequest{Digest: digest, Now: 2000, TTLms: 60_000, Batch: 4})
			}()
		}
		close(start)
		wg.Wait()
		for i, r := range res {
			switch {
			case r.err != nil:
				t.Fatalf("login %d: %v", i, r.err)
			case i%2 == 0 && (!r.ok || r.st.Gen != 2):
				t.Fatalf("login %d with its password: %+v %v, want generation 2", i, r.st, r.ok)
			case i%2 == 1 && (r.ok || r.st.Gen != 0):
				t.Fatalf("login %d with a wrong password: %+v %v, want refused", i, r.st, r.ok)
			}
		}
		if b.Redis != nil {
			stats := b.Redis.CLI(t, "INFO", "commandstats")
			if k := calls(stats, "evalsha") + calls(stats, "eval"); k < 1 || k >= n {
				t.Errorf("%d script calls for %d logins, want at least 1 and fewer than one each\n%s", k, n, stats)
			}
		}
	})
}
