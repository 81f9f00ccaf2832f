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

// A post's removal is told once: a second notice of the same post (a
// resend whose drop failed, two resends at once) returns the first one's
// id and stores and publishes nothing, even after the author cleared it;
// another post's notice is a new one. The kept notices are listed and
// claimed for the nodes' resend: one claim per wait, none once sent.
func TestNoticeToldOnceAndClaimed(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		raw := brokertest.Raw(t, b.Options.Addrs...)
		author, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := broker.Notice{Kind: broker.NoticePostRemoved, Post: 41, Reason: "spam", At: 1}
		first, err := c.AddNotice(ctx, author, n, time.Hour)
		if err != nil || first < 1 {
			t.Fatalf("first notice: %d %v", first, err)
		}
		count := func() int {
			l, err := c.Notices(ctx, author)
			if err != nil {
				t.Fatal(err)
			}
			return len(l)
		}
		if id, err := c.AddNotice(ctx, author, n, time.Hour); id != first || err != nil || count() != 1 {
			t.Fatalf("the same post again: id %d (first %d) %v, %d notices", id, first, err, count())
		}
		if _, err := c.NoticesSeen(ctx, author, uint64(first)); err != nil {
			t.Fatal(err)
		}
		if id, err := c.AddNotice(ctx, author, n, time.Hour); id != first || err != nil || count() != 0 {
			t.Fatalf("the same post after it was cleared: id %d %v, %d notices", id, err, count())
		}
		n.Post = 42
		if id, err := c.AddNotice(ctx, author, n, time.Hour); id != first+1 || err != nil || count() != 1 {
			t.Fatalf("another post: id %d %v, %d notices", id, err, count())
		}
		ntp := b.Options.Prefix + "ntp:{" + author + "}"
		if ttl, err := raw.Do(ctx, raw.B().Pttl().Key(ntp).Build()).AsInt64(); err != nil || ttl <= 0 || ttl > time.Hour.Milliseconds() {
			t.Fatalf("the told posts' lifetime: %d %v", ttl, err)
		}
		// Bounded: the newest MaxToldPosts are remembered.
		for i := range broker.MaxToldPosts + 5 {
			n.Post = uint64(100 + i)
			if _, err := c.AddNotice(ctx, author, n, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if l, err := raw.Do(ctx, raw.B().Zcard().Key(ntp).Build()).AsInt64(); err != nil || l != broker.MaxToldPosts {
			t.Fatalf("%d told posts remembered, want %d (%v)", l, broker.MaxToldPosts, err)
		}

		// A notice kept (its write failing), listed and claimed.
		nt := b.Options.Prefix + "nt:{" + author + "}"
		if err := raw.Do(ctx, raw.B().Set().Key(nt).Value("x").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		id, err := c.StorePost(ctx, []byte(`"from":"`+author+`","date":1,"body":"{\"title\":\"Bike\"}"`), author, time.Now().Unix(), "test")
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now().UnixMilli()
		if r, err := c.RemoveWithNotice(ctx, id, broker.Removal{Reason: "scam", At: at, TTL: time.Hour, RetryFor: time.Millisecond}); err == nil || !r.Kept {
			t.Fatalf("removal while the notices fail: %+v %v", r, err)
		}
		kept, err := c.KeptNotices(ctx)
		if err != nil || len(kept) != 1 || kept[0] != (broker.KeptNotice{Post: id, Author: author, At: at, Exp: at + time.Hour.Milliseconds()}) {
			t.Fatalf("kept notices: %+v %v", kept, err)
		}
		claim := func(now int64) (bool, bool) {
			t.Helper()
			claimed, found, err := c.ClaimKeptNotice(ctx, id, now, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return claimed, found
		}
		if cl, f := claim(at); !cl || !f {
			t.Fatalf("first claim: %v %v", cl, f)
		}
		if cl, f := claim(at + 59_000); cl || !f {
			t.Fatalf("a claim within the wait: %v %v", cl, f)
		}
		if cl, f := claim(at + 60_000); !cl || !f {
			t.Fatalf("a claim after the wait: %v %v", cl, f)
		}
		raw.Do(ctx, raw.B().Del().Key(nt).Build())
		if r, found, err := c.ResendNotice(ctx, id, at, time.Millisecond); !found || err != nil || r.Notice < 1 {
			t.Fatalf("resend mended: %+v %v %v", r, found, err)
		}
		if cl, f := claim(at + 10*60_000); cl || f {
			t.Fatalf("a claim once sent: %v %v", cl, f)
		}
		next := b.Options.Prefix + "{posts}:unsent:next"
		if n, err := raw.Do(ctx, raw.B().Hlen().Key(next).Build()).AsInt64(); err != nil || n != 0 {
			t.Fatalf("%d paces left once sent (%v)", n, err)
		}
	})
}
