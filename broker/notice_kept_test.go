package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// A removal's notice across two slots ({posts} and the author's), on a
// real store made to fail (the author's notice list a string: WRONGTYPE):
// the post is removed and the notice kept in the posts' slot; a resend
// while it still fails keeps it; once mended the resend writes it and
// forgets it; a kept notice past its lifetime is dropped unsent. On
// Redis, the embedded server and a Redis Cluster.
func TestRemoveWithNoticeKept(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		raw := brokertest.Raw(t, b.Options.Addrs...)
		author, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		nt := b.Options.Prefix + "nt:{" + author + "}"
		set := func(broken bool) {
			cmd := raw.B().Del().Key(nt).Build()
			if broken {
				cmd = raw.B().Set().Key(nt).Value("x").Build()
			}
			if err := raw.Do(ctx, cmd).Error(); err != nil {
				t.Fatal(err)
			}
		}
		kept := func() int {
			n, err := c.UnsentNotices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		store := func() uint64 {
			id, err := c.StorePost(ctx, []byte(`"from":"`+author+`","date":1,"body":"{\"title\":\"Bike\"}"`), author, time.Now().Unix(), "test")
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		now := time.Now().UnixMilli()
		rm := broker.Removal{Reason: "spam", Note: "n", At: now, TTL: time.Hour, RetryFor: 200 * time.Millisecond}
		id := store()
		set(true)
		r, err := c.RemoveWithNotice(ctx, id, rm)
		if err == nil || !r.Kept || r.Notice != 0 || r.Author != author {
			t.Fatalf("removal while the notices fail: %+v %v", r, err)
		}
		if _, err := c.PostOwner(ctx, id); err != broker.ErrPostNotFound {
			t.Fatalf("the post is still there: %v", err)
		}
		if n := kept(); n != 1 {
			t.Fatalf("%d kept notices, want 1", n)
		}
		if r, found, err := c.ResendNotice(ctx, id, now, 100*time.Millisecond); !found || err == nil || !r.Kept {
			t.Fatalf("resend while it fails: %+v %v %v", r, found, err)
		}
		set(false)
		r, found, err := c.ResendNotice(ctx, id, now, 100*time.Millisecond)
		if !found || err != nil || r.Notice < 1 || r.Reason != "spam" || r.Author != author {
			t.Fatalf("resend mended: %+v %v %v", r, found, err)
		}
		if l, err := c.Notices(ctx, author); err != nil || len(l) != 1 {
			t.Fatalf("notices: %q %v", l, err)
		}
		if _, found, err := c.ResendNotice(ctx, id, now, 0); found || err != nil || kept() != 0 {
			t.Fatalf("resend once more: %v %v, %d kept", found, err, kept())
		}
		// Past its lifetime: dropped, not sent.
		id = store()
		set(true)
		if _, err := c.RemoveWithNotice(ctx, id, rm); err == nil {
			t.Fatal("the notice was written into a string")
		}
		set(false)
		if _, found, err := c.ResendNotice(ctx, id, now+2*time.Hour.Milliseconds(), 0); found || err != nil || kept() != 0 {
			t.Fatalf("a kept notice past its lifetime: %v %v, %d kept", found, err, kept())
		}
		if l, _ := c.Notices(ctx, author); len(l) != 0 { // the list the string replaced is gone
			t.Fatalf("an expired notice was sent: %q", l)
		}

		// The bound: full of living kept notices, a removal goes on
		// without keeping its own; full of expired ones, they make room.
		fill := func(exp int64) {
			cmd := raw.B().Hset().Key(b.Options.Prefix + "{posts}:unsent").FieldValue()
			for i := range broker.MaxUnsentNotices {
				cmd = cmd.FieldValue(fmt.Sprint(1_000_000+i), fmt.Sprintf(`{"exp":%d,"author":"x","ttl":1,"notice":{}}`, exp))
			}
			if err := raw.Do(ctx, cmd.Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		fill(now + time.Hour.Milliseconds())
		id = store()
		set(true)
		if r, err := c.RemoveWithNotice(ctx, id, rm); err == nil || r.Kept || kept() != broker.MaxUnsentNotices {
			t.Fatalf("a removal with the kept notices full: %+v %v, %d kept", r, err, kept())
		}
		fill(now - 1)
		id = store()
		if r, err := c.RemoveWithNotice(ctx, id, rm); err == nil || !r.Kept || kept() != 1 {
			t.Fatalf("a removal with the kept notices full of expired ones: %+v %v, %d kept", r, err, kept())
		}
	})
}
