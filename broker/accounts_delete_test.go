package broker_test

import (
	"context"
	"errors"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Account deletion on a real redis-server, the embedded server and a
// Redis Cluster (the script removes every per-user key in the user's
// slot): a wrong digest changes nothing; the right one removes the
// credentials, the queue and its counts, the push devices and counts and
// the post quota; messages the deleted user sent to others stay theirs; a
// message to the deleted id is refused as to an unknown one; a second
// deletion finds nothing (AccountGone).
func TestDeleteAccount(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		const day = int64(86400000)
		gone, err := c.CreateUser(ctx, "dg", 1000)
		if err != nil {
			t.Fatal(err)
		}
		other, err := c.CreateUser(ctx, "do", 1000)
		if err != nil {
			t.Fatal(err)
		}
		opt := broker.StoreOptions{Cap: 100, TTLms: day, Push: true}
		if _, err := c.AddPushDevice(ctx, gone, "f:1", `{}`, 10, day); err != nil {
			t.Fatal(err)
		}
		opt.From = other
		if _, err := c.Store(ctx, gone, []byte(`"from":"`+other+`","msg":"to gone"`), 2000, opt, false); err != nil {
			t.Fatal(err)
		}
		opt.From = gone
		if _, err := c.Store(ctx, other, []byte(`"from":"`+gone+`","msg":"from gone"`), 2000, opt, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Block(ctx, gone, "424242", 10); err != nil {
			t.Fatal(err)
		}
		q := broker.Quota{N: 5, PeriodMs: day}
		if _, _, ok, err := c.TakePostQuota(ctx, gone, 2000, q); err != nil || !ok {
			t.Fatalf("take quota: %v %v", ok, err)
		}

		if _, err := c.AddNotice(ctx, gone, broker.Notice{Kind: broker.NoticePostRemoved, Post: 1, Reason: "spam", At: 2000}, 0); err != nil {
			t.Fatal(err)
		}
		for _, f := range []func(context.Context, string, string) (int, error){c.AccountCheck, c.DeleteAccount} {
			if r, err := f(ctx, gone, "wrong"); err != nil || r != broker.AccountWrongPassword {
				t.Fatalf("wrong digest: %d %v", r, err)
			}
		}
		if r, err := c.AccountCheck(ctx, gone, "dg"); err != nil || r != broker.AccountOK {
			t.Fatalf("check: %d %v", r, err)
		}
		if n, _ := c.QueueLen(ctx, gone); n != 1 {
			t.Fatalf("a refused deletion changed the queue: %d", n)
		}

		if r, err := c.DeleteAccount(ctx, gone, "dg"); err != nil || r != broker.AccountOK {
			t.Fatalf("delete: %d %v", r, err)
		}
		if _, ok, err := c.PasswordDigest(ctx, gone); err != nil || ok {
			t.Fatalf("the credentials outlived the deletion: %v %v", ok, err)
		}
		if n, err := c.QueueLen(ctx, gone); err != nil || n != 0 {
			t.Fatalf("queue after deletion: %d %v", n, err)
		}
		if d, err := c.PushDevices(ctx, gone); err != nil || len(d) != 0 {
			t.Fatalf("push devices after deletion: %v %v", d, err)
		}
		if n, count, err := c.LoadPush(ctx, gone, other); err != nil || n != 0 || len(count) != 0 {
			t.Fatalf("push counts after deletion: %d %v %v", n, count, err)
		}
		if ids, err := c.Blocks(ctx, gone); err != nil || len(ids) != 0 {
			t.Fatalf("blocks after deletion: %v %v", ids, err)
		}
		if l, err := c.Notices(ctx, gone); err != nil || len(l) != 0 {
			t.Fatalf("notices after deletion: %v %v", l, err)
		}
		if r, err := c.PostQuotaRemaining(ctx, gone, 3000, q); err != nil || r != 5 {
			t.Fatalf("post quota after deletion: %d %v", r, err)
		}
		opt.From = other
		if _, err := c.Store(ctx, gone, []byte(`"from":"`+other+`","msg":"late"`), 3000, opt, false); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("a message to the deleted id: %v, want ErrNoUser", err)
		}
		if n, _ := c.QueueLen(ctx, gone); n != 0 {
			t.Fatalf("a refused message made a queue: %d", n)
		}
		if n, _ := c.QueueLen(ctx, other); n != 1 {
			t.Fatalf("the deleted user's message to another user: queue %d, want 1", n)
		}
		for _, f := range []func(context.Context, string, string) (int, error){c.AccountCheck, c.DeleteAccount} {
			if r, err := f(ctx, gone, "dg"); err != nil || r != broker.AccountGone {
				t.Fatalf("after deletion: %d %v, want AccountGone", r, err)
			}
		}
		if _, ok, err := c.LoginFetch(ctx, gone, broker.LoginRequest{Digest: "dg", Now: 4000, TTLms: day}); err != nil || ok {
			t.Fatalf("login after deletion: %v %v", ok, err)
		}
		if _, ok, _ := c.PasswordDigest(ctx, other); !ok {
			t.Fatal("the other user's account went too")
		}
		// On the real server, nothing at all is left under the user's hash
		// tag: a per-user key added later and not listed in accountKeys
		// fails here.
		if b.Redis != nil {
			if left := keysTagged(t, b.Redis.Addr, gone); len(left) > 0 {
				t.Fatalf("keys left under {%s} after the deletion: %v", gone, left)
			}
		}
	})
}

// keysTagged lists the keys of the Redis at addr that carry user id's hash
// tag.
func keysTagged(t *testing.T, addr, id string) []string {
	t.Helper()
	rc := brokertest.Raw(t, addr)
	var out []string
	ctx := context.Background()
	for cursor := uint64(0); ; {
		e, err := rc.Do(ctx, rc.B().Scan().Cursor(cursor).Match("*{"+id+"}*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return out
		}
	}
}
