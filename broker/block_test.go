package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// A blocked sender's messages are refused by the store script, alone and
// gathered (StoreMany), with nothing stored nor counted against its
// share; others' messages, and a requeued reply, are stored as before;
// unblocking lets the sender through again. On a real server, the
// embedded one and a cluster (the block set shares the recipient's slot).
func TestBlockRefusesSender(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		now := time.Now().UnixMilli()
		var u [3]string
		for i := range u {
			id, err := c.CreateUser(ctx, "d", now)
			if err != nil {
				t.Fatal(err)
			}
			u[i] = id
		}
		me, pest, friend := u[0], u[1], u[2]
		opt := func(from string) broker.StoreOptions {
			return broker.StoreOptions{Cap: 10, SenderShare: 5, TTLms: 60_000, From: from}
		}
		msg := func(from string) []byte { return []byte(fmt.Sprintf(`"from":%q,"msg":"hi"`, from)) }
		if n, err := c.Block(ctx, me, pest, 2); err != nil || n != 1 {
			t.Fatalf("block: %d %v, want 1 block", n, err)
		}
		if _, err := c.Store(ctx, me, msg(pest), now, opt(pest), true); !errors.Is(err, broker.ErrBlocked) {
			t.Fatalf("a blocked sender's message: %v, want ErrBlocked", err)
		}
		reqs := []broker.StoreReq{{To: me, Members: msg(friend), Now: now, Opt: opt(friend), Notify: true},
			{To: me, Members: msg(pest), Now: now, Opt: opt(pest), Notify: true},
			{To: pest, Members: msg(me), Now: now, Opt: opt(me), Notify: true}}
		_, errs := c.StoreMany(ctx, reqs)
		if errs[0] != nil || !errors.Is(errs[1], broker.ErrBlocked) || errs[2] != nil {
			t.Fatalf("gathered: %v, want stored, ErrBlocked, stored (blocking is one way)", errs)
		}
		if n, _ := c.QueueLen(ctx, me); n != 1 {
			t.Fatalf("the blocker's queue holds %d, want the friend's message alone", n)
		}
		if n, _ := c.QueuedFrom(ctx, me, pest); n != 0 {
			t.Fatalf("the blocked sender counts %d in the queue, want 0", n)
		}
		// A requeued reply (the user's own, accepted already) is never refused.
		rq := opt(pest)
		rq.Requeue = true
		if _, err := c.Store(ctx, me, msg(pest), now, rq, false); err != nil {
			t.Fatalf("a requeued frame: %v", err)
		}
		if ids, err := c.Blocks(ctx, me); err != nil || !slices.Equal(ids, []string{pest}) {
			t.Fatalf("blocks %v %v, want [%s]", ids, err, pest)
		}
		if n, err := c.Unblock(ctx, me, pest); err != nil || n != 0 {
			t.Fatalf("unblock: %d %v", n, err)
		}
		if _, err := c.Store(ctx, me, msg(pest), now, opt(pest), true); err != nil {
			t.Fatalf("after unblock: %v", err)
		}
		_, errs = c.StoreMany(ctx, reqs[:2])
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("gathered after unblock: %v", errs)
		}
		if ids, _ := c.Blocks(ctx, me); len(ids) != 0 {
			t.Fatalf("blocks after unblock: %v", ids)
		}
		if n, err := c.Unblock(ctx, me, pest); err != nil || n != 0 {
			t.Fatalf("unblock again: %d %v, want nothing to do", n, err)
		}
	})
}

// The cap refuses a block beyond it, but not one of an id blocked
// already; blocks come back sorted by value; a gone account cannot block.
func TestBlockCap(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		me, err := c.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"100", "9"} {
			if _, err := c.Block(ctx, me, id, 2); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Block(ctx, me, "11", 2); !errors.Is(err, broker.ErrTooManyBlocks) {
			t.Fatalf("a block past the cap: %v, want ErrTooManyBlocks", err)
		}
		if n, err := c.Block(ctx, me, "9", 2); err != nil || n != 2 {
			t.Fatalf("blocking a blocked id again: %d %v, want 2 and no refusal", n, err)
		}
		if ids, _ := c.Blocks(ctx, me); !slices.Equal(ids, []string{"9", "100"}) {
			t.Fatalf("blocks %v, want [9 100]", ids)
		}
		if _, err := c.Block(ctx, "424242", "9", 2); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("a block by a missing account: %v, want ErrNoUser", err)
		}
		if ok, _ := c.UserExists(ctx, "424242"); ok {
			t.Fatal("a missing account exists")
		}
		if d, _ := c.BlockKeyTTL(ctx, "424242"); d != -2 {
			t.Fatalf("a missing account's block set: pttl %d, want none", d)
		}
	})
}

// The block set lives and dies with the account: with an account
// lifetime it expires with the account's hash, and a login (which moves
// the account's expiry) moves it too and reads the blocks; without one
// neither expires.
func TestBlocksExpireWithAccount(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		opt := b.Options
		opt.AccountTTL = time.Hour
		c := brokertest.Open(t, opt)
		now := time.Now().UnixMilli()
		me, err := c.CreateUser(ctx, "d", now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Block(ctx, me, "7", 10); err != nil {
			t.Fatal(err)
		}
		if ms, _ := c.BlockKeyTTL(ctx, me); ms <= int64(59*time.Minute/time.Millisecond) || ms > int64(time.Hour/time.Millisecond) {
			t.Fatalf("the block set expires in %d ms, want the account's hour", ms)
		}
		forever := brokertest.Open(t, b.Options)
		st, ok, err := forever.LoginFetch(ctx, me, broker.LoginRequest{Digest: "d", Now: now, TTLms: 60_000, Batch: 8})
		if err != nil || !ok || !slices.Equal(st.Blocks, []string{"7"}) {
			t.Fatalf("login: %+v %v %v, want blocks [7]", st, ok, err)
		}
		if ms, _ := c.BlockKeyTTL(ctx, me); ms != -1 {
			t.Fatalf("after a login without a lifetime the block set expires in %d ms, want never", ms)
		}
		if d, _ := c.AccountTTL(ctx, me); d != -1 {
			t.Fatalf("account expiry %v, want never", d)
		}
		if _, ok, err := c.LoginFetch(ctx, me, broker.LoginRequest{Digest: "d", Now: now, TTLms: 60_000}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if ms, _ := c.BlockKeyTTL(ctx, me); ms <= int64(59*time.Minute/time.Millisecond) {
			t.Fatalf("after a login the block set expires in %d ms, want an hour", ms)
		}
		// A user who blocks nobody reads none, and its queue as before.
		other, _ := c.CreateUser(ctx, "d", now)
		if _, err := c.Store(ctx, other, []byte(`"from":"7","msg":"x"`), now, broker.StoreOptions{Cap: 5, TTLms: 60_000, From: "7"}, false); err != nil {
			t.Fatal(err)
		}
		st, ok, err = c.LoginFetch(ctx, other, broker.LoginRequest{Digest: "d", Now: now, TTLms: 60_000, Batch: 8})
		if err != nil || !ok || st.Blocks != nil || len(st.Fetched.Msgs) != 1 {
			t.Fatalf("login of a user who blocks nobody: %+v %v %v", st, ok, err)
		}
		// With blocks and a queue, both come back apart.
		if _, err := c.Store(ctx, me, []byte(`"from":"8","msg":"x"`), now, broker.StoreOptions{Cap: 5, TTLms: 60_000, From: "8"}, false); err != nil {
			t.Fatal(err)
		}
		st, _, _ = c.LoginFetch(ctx, me, broker.LoginRequest{Digest: "d", Now: now, TTLms: 60_000, Batch: 8})
		if !slices.Equal(st.Blocks, []string{"7"}) || len(st.Fetched.Msgs) != 1 {
			t.Fatalf("login with blocks and a message: %+v", st)
		}
	})
}
