package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// A removal's notice kept for an author who then deletes the account:
// the resend tells nobody, writes no key of that user again (nt, ntp),
// and drops the kept notice and its pace; the account's deletion took
// the told posts (ntp) with it. On a real redis-server and the embedded
// server (which expires no key by the clock: every key here is bounded
// by count, or goes with its owner).
func TestKeptNoticeOfDeletedAccount(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		raw := brokertest.Raw(t, b.Options.Addrs...)
		author, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		exists := func(k string) int64 {
			t.Helper()
			n, err := raw.Do(ctx, raw.B().Exists().Key(b.Options.Prefix+k).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		// A notice told earlier: ntp exists.
		if _, err := c.AddNotice(ctx, author, broker.Notice{Kind: broker.NoticePostRemoved, Post: 7, Reason: "spam", At: 1}, time.Hour); err != nil {
			t.Fatal(err)
		}
		// The next one kept: its write fails (nt is not a list).
		nt := "nt:{" + author + "}"
		if err := raw.Do(ctx, raw.B().Set().Key(b.Options.Prefix+nt).Value("x").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		id, err := c.StorePost(ctx, []byte(`"from":"`+author+`","date":1,"body":"{}"`), author, time.Now().Unix(), "test")
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now().UnixMilli()
		if r, err := c.RemoveWithNotice(ctx, id, broker.Removal{Reason: "scam", At: at, TTL: time.Hour, RetryFor: time.Millisecond}); err == nil || !r.Kept {
			t.Fatalf("removal while the notices fail: %+v %v", r, err)
		}
		if claimed, _, err := c.ClaimKeptNotice(ctx, id, at, time.Minute); err != nil || !claimed {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		if r, err := c.DeleteAccount(ctx, author, "d"); err != nil || r != broker.AccountOK {
			t.Fatalf("delete: %d %v", r, err)
		}
		if exists("ntp:{"+author+"}") != 0 || exists(nt) != 0 {
			t.Fatal("the notices' keys outlived the account")
		}
		r, found, err := c.ResendNotice(ctx, id, at+1, time.Millisecond)
		if err != nil || !found || r.Notice != 0 {
			t.Fatalf("resend to a deleted account: %+v %v %v", r, found, err)
		}
		if exists("ntp:{"+author+"}") != 0 || exists(nt) != 0 {
			t.Fatal("the resend wrote a deleted account's keys")
		}
		if n, err := c.UnsentNotices(ctx); err != nil || n != 0 {
			t.Fatalf("%d kept notices left (%v)", n, err)
		}
		if n, err := raw.Do(ctx, raw.B().Hlen().Key(b.Options.Prefix+"{posts}:unsent:next").Build()).AsInt64(); err != nil || n != 0 {
			t.Fatalf("%d paces left (%v)", n, err)
		}
	})
}
