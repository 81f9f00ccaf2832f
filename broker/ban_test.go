package broker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Bans on a real redis-server, the embedded server and a Redis Cluster: an
// unknown id is refused with ErrNoUser and nothing made; a ban stores its
// time and note, announces 'b' on the user's channel, and refuses the
// right password's login with ErrBanned having changed nothing (no new
// generation, no kick) while a wrong password is only wrong; the account,
// its queue and its expiry are kept; a second ban replaces time and note;
// an unban lets the next login in.
func TestBanUser(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 16)
		c.Handle("c:", func(ch, payload string) { got <- payload })
		const day = int64(86400000)

		if _, err := c.BanUser(ctx, "999999", 1000, "x"); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("ban of an unknown id: %v, want ErrNoUser", err)
		}
		if _, err := c.UnbanUser(ctx, "999999"); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("unban of an unknown id: %v, want ErrNoUser", err)
		}
		if _, err := c.BanOf(ctx, "999999"); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("ban of an unknown id read: %v, want ErrNoUser", err)
		}
		if _, ok, _ := c.PasswordDigest(ctx, "999999"); ok {
			t.Fatal("a ban of an unknown id made an account")
		}
		if _, err := c.BanUser(ctx, "1", 1000, strings.Repeat("n", broker.MaxBanNote+1)); err == nil {
			t.Fatal("a note over MaxBanNote was taken")
		}

		id, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		sender, _ := c.CreateUser(ctx, "s", 1000)
		login := func(digest string) (broker.LoginState, bool, error) {
			return c.LoginFetch(ctx, id, broker.LoginRequest{Digest: digest, Now: 2000, TTLms: day, Batch: 10})
		}
		st, ok, err := login("d")
		if err != nil || !ok || st.Gen != 2 {
			t.Fatalf("login before the ban: %+v %v %v", st, ok, err)
		}
		if _, err := c.Store(ctx, id, []byte(`"from":"`+sender+`","msg":"kept"`), 2000,
			broker.StoreOptions{Cap: 100, TTLms: day, From: sender}, false); err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(ctx, c.UserChannel(id)); err != nil {
			t.Fatal(err)
		}
		if ban, err := c.BanOf(ctx, id); err != nil || ban != (broker.Ban{}) {
			t.Fatalf("ban of a user never banned: %+v %v", ban, err)
		}

		if ok, err := c.AddPushDevice(ctx, id, "dev1", `{"kind":"test"}`, 10, day); err != nil || !ok {
			t.Fatalf("push device: %v %v", ok, err)
		}
		if ok, err := c.AddPushDevice(ctx, sender, "dev2", `{"kind":"test"}`, 10, day); err != nil || !ok {
			t.Fatalf("push device: %v %v", ok, err)
		}
		if already, err := c.BanUser(ctx, id, 5000, "spam"); err != nil || already {
			t.Fatalf("ban: %v %v", already, err)
		}
		expectPayload(t, got, "b")
		if ban, err := c.BanOf(ctx, id); err != nil || ban != (broker.Ban{At: 5000, Note: "spam"}) {
			t.Fatalf("the ban stored: %+v %v", ban, err)
		}
		if d, err := c.PushDevices(ctx, id); err != nil || len(d) != 0 {
			t.Fatalf("the banned user's push devices: %v %v, want none", d, err)
		}
		if d, err := c.PushDevices(ctx, sender); err != nil || len(d) != 1 {
			t.Fatalf("another user's push devices: %v %v, want kept", d, err)
		}
		if _, ok, err := login("d"); !errors.Is(err, broker.ErrBanned) || ok {
			t.Fatalf("login of a banned user: %v %v, want ErrBanned", ok, err)
		}
		if _, ok, err := login("wrong"); err != nil || ok {
			t.Fatalf("a wrong password of a banned user: %v %v, want only refused", ok, err)
		}
		select {
		case p := <-got:
			t.Fatalf("a refused login published %q", p)
		case <-time.After(100 * time.Millisecond):
		}
		if n, err := c.QueueLen(ctx, id); err != nil || n != 1 {
			t.Fatalf("the banned user's queue: %d %v, want kept", n, err)
		}
		if ttl, err := c.AccountTTL(ctx, id); err != nil || ttl != -1 {
			t.Fatalf("the banned account's expiry: %v %v, want none (no --account-ttl) as before", ttl, err)
		}

		// A second ban replaces the time and the note (and announces again);
		// one without a note drops the old one.
		if already, err := c.BanUser(ctx, id, 6000, ""); err != nil || !already {
			t.Fatalf("second ban: %v %v", already, err)
		}
		expectPayload(t, got, "b")
		if ban, _ := c.BanOf(ctx, id); ban != (broker.Ban{At: 6000}) {
			t.Fatalf("the renewed ban: %+v", ban)
		}

		if was, err := c.UnbanUser(ctx, id); err != nil || !was {
			t.Fatalf("unban: %v %v", was, err)
		}
		if was, err := c.UnbanUser(ctx, id); err != nil || was {
			t.Fatalf("second unban: %v %v", was, err)
		}
		if ban, _ := c.BanOf(ctx, id); ban != (broker.Ban{}) {
			t.Fatalf("after the unban: %+v", ban)
		}
		// The refused logins made no generation: this one is the next.
		st, ok, err = login("d")
		if err != nil || !ok || st.Gen != 3 || len(st.Fetched.Msgs) != 1 {
			t.Fatalf("login after the unban: %+v %v %v", st, ok, err)
		}
		expectPayload(t, got, "k3")
	})
}

// A ban keeps the account's lifetime: with --account-ttl the hash expires
// that long after the last login, ban and all (the id is not given out
// again).
func TestBanKeepsAccountExpiry(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		opt := b.Options
		opt.AccountTTL = time.Hour
		c := brokertest.Open(t, opt)
		id, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.BanUser(ctx, id, 2000, "n"); err != nil {
			t.Fatal(err)
		}
		if ttl, err := c.AccountTTL(ctx, id); err != nil || ttl <= 0 || ttl > time.Hour {
			t.Fatalf("the banned account's expiry: %v %v, want the account's own", ttl, err)
		}
	})
}

// PostsOf finds a user's posts from the owner hash, and only theirs.
func TestPostsOf(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		var mine []uint64
		for i := range 5 {
			owner := "70"
			if i%2 == 1 {
				owner = "71"
			}
			id, err := c.StorePost(ctx, []byte(`"from":"`+owner+`","date":1`), owner, time.Now().Unix(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if owner == "70" {
				mine = append(mine, id)
			}
		}
		ids, err := c.PostsOf(ctx, "70")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, mine) {
			t.Fatalf("PostsOf: %v, want %v", ids, mine)
		}
		if ids, err := c.PostsOf(ctx, "72"); err != nil || len(ids) != 0 {
			t.Fatalf("PostsOf a user with no posts: %v %v", ids, err)
		}
	})
}

func expectPayload(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case p := <-got:
		if p != want {
			t.Fatalf("payload %q, want %q", p, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q announced", want)
	}
}
