package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// One StoreMany call answers each message as its own Store would: stored
// ones in order with chained ids, a full queue's and an unknown user's
// refused, a wrong-typed queue (a foreign writer) failing that message
// alone; and each stored message is carried on its recipient's channel.
func TestStoreManyMixesResults(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 64)
		c.Handle("c:", func(ch, payload string) { got <- ch + " " + payload })
		now := time.Now().UnixMilli()
		var users []string
		for i := 0; i < 4; i++ {
			id, err := c.CreateUser(ctx, "d", now)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Subscribe(ctx, c.UserChannel(id)); err != nil {
				t.Fatal(err)
			}
			users = append(users, id)
		}
		full, ok, other, broken := users[0], users[1], users[2], users[3]
		opt := broker.StoreOptions{Cap: 3, TTLms: 60000, From: "7", SenderShare: 2}
		// full holds its cap already, from others.
		for i := 0; i < 3; i++ {
			o := opt
			o.From = fmt.Sprint(10 + i)
			if _, err := c.Store(ctx, full, []byte(fmt.Sprintf(`"from":"%d","n":%d`, 10+i, i)), now, o, false); err != nil {
				t.Fatal(err)
			}
		}
		// broken's queue is a hash: every push to it fails.
		if err := c.RawHIncr(ctx, "q", broken, "x", 1); err != nil {
			t.Fatal(err)
		}
		req := func(to string, n int) broker.StoreReq {
			return broker.StoreReq{To: to, Members: []byte(fmt.Sprintf(`"from":"7","n":%d`, n)), Now: now, Opt: opt, Notify: true}
		}
		reqs := []broker.StoreReq{req(ok, 1), req(full, 2), req(broken, 3), req(ok, 4), req("404", 5), req(other, 6), req(ok, 7)}
		sts, errs := c.StoreMany(ctx, reqs)
		if len(sts) != len(reqs) || len(errs) != len(reqs) {
			t.Fatalf("%d results for %d messages", len(sts), len(reqs))
		}
		if !errors.Is(errs[1], broker.ErrQueueFull) {
			t.Fatalf("message to a full queue: %v, want ErrQueueFull", errs[1])
		}
		if errs[2] == nil || errors.Is(errs[2], broker.ErrQueueFull) {
			t.Fatalf("message to a wrong-typed queue: %v, want its own error", errs[2])
		}
		if !errors.Is(errs[4], broker.ErrNoUser) {
			t.Fatalf("message to an unknown user: %v, want ErrNoUser", errs[4])
		}
		if errs[0] != nil || errs[3] != nil || errs[5] != nil {
			t.Fatalf("stored messages failed: %v %v %v", errs[0], errs[3], errs[5])
		}
		// ok's second message was refused by the sender's share (2): the
		// first two to ok were stored, in order, chained.
		if !errors.Is(errs[6], broker.ErrSenderShare) {
			t.Fatalf("third message to ok: %v, want ErrSenderShare", errs[6])
		}
		if sts[0].Prev != 0 || sts[3].Prev != sts[0].ID || sts[3].ID <= sts[0].ID {
			t.Fatalf("ok's messages %+v then %+v, want chained ids", sts[0], sts[3])
		}
		want := map[string][]string{
			c.UserChannel(ok):    {fmt.Sprintf("n0 %s", broker.StoredFrame(sts[0].ID, reqs[0].Members)), fmt.Sprintf("n%d %s", sts[0].ID, broker.StoredFrame(sts[3].ID, reqs[3].Members))},
			c.UserChannel(other): {fmt.Sprintf("n0 %s", broker.StoredFrame(sts[5].ID, reqs[5].Members))},
		}
		for i := 0; i < 3; i++ {
			select {
			case p := <-got:
				var ch string
				for k := range want {
					if len(p) > len(k) && p[:len(k)+1] == k+" " {
						ch = k
					}
				}
				if ch == "" || len(want[ch]) == 0 || p[len(ch)+1:] != want[ch][0] {
					t.Fatalf("publication %q, want one of %v", p, want)
				}
				want[ch] = want[ch][1:]
			case <-time.After(5 * time.Second):
				t.Fatalf("carried messages missing: %v", want)
			}
		}
		select {
		case p := <-got:
			t.Fatalf("an extra publication %q", p)
		case <-time.After(50 * time.Millisecond):
		}
		// What was refused or failed left nothing behind.
		for _, u := range []struct {
			id         string
			want, from int64
		}{{full, 3, 0}, {ok, 2, 2}, {other, 1, 1}} {
			if n, _ := c.QueueLen(ctx, u.id); n != u.want {
				t.Fatalf("user %s holds %d, want %d", u.id, n, u.want)
			}
			if n, _ := c.QueuedFrom(ctx, u.id, "7"); n != u.from {
				t.Fatalf("user %s counts %d from 7, want %d", u.id, n, u.from)
			}
		}
	})
}

// A StoreMany call that fails as a whole (Redis gone) fails every message
// it carried as unavailable: none is reported stored.
func TestStoreManyFailsEveryMessage(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		if b.Redis == nil {
			t.Skip("needs a server to stop")
		}
		ctx := context.Background()
		opt := b.Options
		opt.Timeout = 500 * time.Millisecond
		c := brokertest.Open(t, opt)
		now := time.Now().UnixMilli()
		id, err := c.CreateUser(ctx, "d", now)
		if err != nil {
			t.Fatal(err)
		}
		b.Redis.Stop()
		so := broker.StoreOptions{Cap: 10, TTLms: 60000, From: "7"}
		reqs := []broker.StoreReq{{To: id, Members: []byte(`"from":"7"`), Now: now, Opt: so}, {To: id, Members: []byte(`"from":"7"`), Now: now, Opt: so}, {To: "8", Members: []byte(`"from":"7"`), Now: now, Opt: so}}
		sts, errs := c.StoreMany(ctx, reqs)
		for i := range reqs {
			if !errors.Is(errs[i], broker.ErrUnavailable) || sts[i].ID != 0 {
				t.Fatalf("message %d with Redis gone: %+v, %v; want ErrUnavailable", i, sts[i], errs[i])
			}
		}
	})
}

// With WaitReplicas, a gathered call is acknowledged once the replicas
// have it (WAIT on its connection), each message with its own result.
func TestStoreManyWaitsForReplicas(t *testing.T) {
	ctx := context.Background()
	s := brokertest.StartSentinel(t, 2)
	c := brokertest.Open(t, broker.Options{Sentinels: []string{s.Addr}, MasterName: s.Name,
		Prefix: brokertest.Prefix(), WaitReplicas: 1, Timeout: 2 * time.Second})
	now := time.Now().UnixMilli()
	u, err := c.CreateUser(ctx, "d", now)
	if err != nil {
		t.Fatal(err)
	}
	opt := broker.StoreOptions{Cap: 10, TTLms: 60000, From: "7"}
	reqs := []broker.StoreReq{{To: u, Members: []byte(`"from":"7","n":1`), Now: now, Opt: opt},
		{To: "404", Members: []byte(`"from":"7","n":2`), Now: now, Opt: opt},
		{To: u, Members: []byte(`"from":"7","n":3`), Now: now, Opt: opt}}
	sts, errs := c.StoreMany(ctx, reqs)
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], broker.ErrNoUser) || sts[2].Prev != sts[0].ID {
		t.Fatalf("results %+v %v", sts, errs)
	}
	msgs, err := c.FetchMessages(ctx, u, 0, "", 10)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("queue %v (%v), want the two stored", msgs, err)
	}
}
