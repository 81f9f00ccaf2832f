package moderation

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"go.uber.org/zap/zaptest"
)

// A removal's notice whose write fails, the store made to fail for real:
// the author's notice list replaced by a string (every write to it
// answers WRONGTYPE). A failure shorter than the retries is not seen (the
// author told once); a longer one answers author_not_told, says the
// notice is kept, and logs it so; a removal again while it still fails
// says so again; once the store is mended the removal again sends the
// kept notice (the post's title, the reason and note of the first
// removal), once, and the moderation log says who resent it. On Redis and
// on the embedded server.
func TestServiceRemoveNoticeKept(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		raw := brokertest.Raw(t, be.Options.Addrs...)
		s := New(b, 10, time.Hour, nil, zaptest.NewLogger(t))
		author, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		post := func(title string) uint64 { return storeTitled(t, b, author, title) }
		nt := be.Options.Prefix + "nt:{" + author + "}"
		breakStore := func() {
			if err := raw.Do(ctx, raw.B().Set().Key(nt).Value("not a list").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		mend := func() {
			if err := raw.Do(ctx, raw.B().Del().Key(nt).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		unsent := func() int {
			n, err := b.UnsentNotices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		lamp, vase := post("Lamp"), post("Vase")

		// Broken for a moment, mended while the notice is retried.
		breakStore()
		mended := make(chan struct{})
		time.AfterFunc(150*time.Millisecond, func() { mend(); close(mended) })
		s.noticeRetry = 5 * time.Second
		r, err := s.Remove(ctx, "ana", lamp, RemoveRequest{Reason: "spam"})
		<-mended
		if err != nil || !r.Told || r.NoticeKept || r.Resent {
			t.Fatalf("a removal while the store fails for 150 ms: %+v %v", r, err)
		}
		if ns, err := b.Notices(ctx, author); err != nil || len(ns) != 1 || !strings.Contains(ns[0], `"title":"Lamp"`) {
			t.Fatalf("the author's notices: %q %v", ns, err)
		}
		if n := unsent(); n != 0 {
			t.Fatalf("%d unsent notices after a notice sent", n)
		}

		// Broken for longer than the retries.
		breakStore()
		s.noticeRetry = 300 * time.Millisecond
		r, err = s.Remove(ctx, "ana", vase, RemoveRequest{Reason: "scam", Note: "deposit first"})
		var e *Error
		if !isReason(err, ReasonNotTold) || !r.NoticeKept || r.Told || r.Author != author {
			t.Fatalf("a removal while the store fails: %+v %v", r, err)
		}
		if e, _ = err.(*Error); !strings.Contains(e.Msg, "the notice is kept: remove post "+strconv.FormatUint(vase, 10)+" again to send it") {
			t.Fatalf("the refusal says %q", e.Msg)
		}
		if ids, err := b.PostsOf(ctx, author); err != nil || len(ids) != 0 {
			t.Fatalf("the post must be gone: %v %v", ids, err)
		}
		if n := unsent(); n != 1 {
			t.Fatalf("%d unsent notices, want the vase's", n)
		}
		p, err := s.Log(ctx, 0, 10)
		if err != nil || p.Entries[0].Result != ReasonNotTold || !strings.Contains(p.Entries[0].Detail, "notice kept to resend") {
			t.Fatalf("the log: %+v %v", p, err)
		}
		// Again, still broken: said again, still kept.
		if r, err = s.Remove(ctx, "ana", vase, RemoveRequest{}); !isReason(err, ReasonNotTold) || !r.NoticeKept || !r.Resent {
			t.Fatalf("the removal again, still failing: %+v %v", r, err)
		}
		if n := unsent(); n != 1 {
			t.Fatalf("%d unsent notices after a failed resend, want 1", n)
		}

		// Mended: the removal again sends the kept notice.
		mend()
		r, err = s.Remove(ctx, "bob", vase, RemoveRequest{})
		if err != nil || !r.Resent || !r.Told || r.Reason != "scam" || r.Author != author {
			t.Fatalf("the removal again, mended: %+v %v", r, err)
		}
		ns, err := b.Notices(ctx, author)
		if err != nil || len(ns) != 1 || !strings.Contains(ns[0], `"title":"Vase"`) || !strings.Contains(ns[0], `"reason":"scam"`) ||
			!strings.Contains(ns[0], `"note":"deposit first"`) {
			t.Fatalf("the author's notices after the resend: %q %v", ns, err)
		}
		if n := unsent(); n != 0 {
			t.Fatalf("%d unsent notices after the resend", n)
		}
		p, err = s.Log(ctx, 0, 10)
		if err != nil || p.Entries[0].By != "bob" || p.Entries[0].Result != ResultOK || !strings.Contains(p.Entries[0].Detail, "its notice resent") {
			t.Fatalf("the log after the resend: %+v %v", p.Entries[0], err)
		}
		// Nothing kept any more: the post is simply not there.
		if _, err := s.Remove(ctx, "bob", vase, RemoveRequest{Reason: "scam"}); !isReason(err, ReasonPostNotFound) {
			t.Fatalf("a third removal: %v", err)
		}
	})
}
