package moderation

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// The nodes' automatic resend, two nodes on one store made to fail for
// real (the author's notice list a string: WRONGTYPE), on a clock the
// test moves: nothing is tried before First after the removal; the first
// due round tries it once, on one node only (the other finds it claimed);
// still failing, it stays kept and is not tried again before the wait
// (as long as the notice's age); once mended, the next due round sends it,
// once, with no operator's action: the author has one notice, the
// moderation log says by auto, the counters and gauges say so, and the
// operator's removal again finds nothing kept. On Redis and on the
// embedded server.
func TestResenderSendsAKeptNoticeOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b1, b2 := brokertest.Open(t, be.Options), brokertest.Open(t, be.Options)
		raw := brokertest.Raw(t, be.Options.Addrs...)
		var clock atomic.Int64
		clock.Store(time.Now().UnixMilli())
		now := func() time.Time { return time.UnixMilli(clock.Load()) }
		advance := func(d time.Duration) { clock.Add(d.Milliseconds()) }
		s1 := New(b1, 10, time.Hour, now, zaptest.NewLogger(t))
		s2 := New(b2, 10, time.Hour, now, zaptest.NewLogger(t))
		s1.noticeRetry = 50 * time.Millisecond
		cfg := ResendConfig{Every: 10 * time.Second, First: 30 * time.Second, Max: 10 * time.Minute}
		reg := prometheus.NewRegistry()
		r1, r2 := NewResender(s1, cfg, reg), NewResender(s2, cfg, nil)

		author, err := b1.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		nt := be.Options.Prefix + "nt:{" + author + "}"
		set := func(broken bool) {
			cmd := raw.B().Del().Key(nt).Build()
			if broken {
				cmd = raw.B().Set().Key(nt).Value("not a list").Build()
			}
			if err := raw.Do(ctx, cmd).Error(); err != nil {
				t.Fatal(err)
			}
		}
		vase := storeTitled(t, b1, author, "Vase")
		set(true)
		if r, err := s1.Remove(ctx, "ana", vase, RemoveRequest{Reason: "scam", Note: "deposit first"}); !isReason(err, ReasonNotTold) || !r.NoticeKept {
			t.Fatalf("a removal while the store fails: %+v %v", r, err)
		}
		round := func(r *Resender, want Round) {
			t.Helper()
			if got := r.Round(ctx); got != want {
				t.Fatalf("round at +%v: %+v, want %+v", now().Sub(time.UnixMilli(0)), got, want)
			}
		}
		round(r1, Round{Kept: 1})
		advance(29 * time.Second)
		round(r1, Round{Kept: 1})
		if v := testutil.ToFloat64(r1.oldest); v < 29 || v > 31 {
			t.Fatalf("oldest kept notice %v s old, want 29", v)
		}
		advance(2 * time.Second) // 31 s: due
		round(r1, Round{Kept: 1, Tried: 1, Failed: 1})
		round(r2, Round{Kept: 1}) // claimed by the other node
		advance(20 * time.Second) // 51 s: the wait is 31 s
		round(r1, Round{Kept: 1})
		round(r2, Round{Kept: 1})
		set(false)
		advance(11 * time.Second) // 62 s
		round(r2, Round{Kept: 1, Tried: 1, Resent: 1})
		round(r1, Round{})

		ns, err := b1.Notices(ctx, author)
		if err != nil || len(ns) != 1 || !strings.Contains(ns[0], `"title":"Vase"`) || !strings.Contains(ns[0], `"note":"deposit first"`) {
			t.Fatalf("the author's notices: %q %v", ns, err)
		}
		p, err := s1.Log(ctx, 0, 10)
		if err != nil || len(p.Entries) != 2 {
			t.Fatalf("the log: %+v %v", p, err)
		}
		if e := p.Entries[0]; e.By != AutoBy || e.Action != "resend" || e.Target != strconv.FormatUint(vase, 10) ||
			e.Result != ResultOK || e.Reason != "scam" || !strings.Contains(e.Detail, "automatic resend") {
			t.Fatalf("the log's newest entry: %+v", e)
		}
		if got := testutil.ToFloat64(r1.failed) + testutil.ToFloat64(r2.failed); got != 1 {
			t.Fatalf("%v failed tries counted, want 1", got)
		}
		if got := testutil.ToFloat64(r2.resent); got != 1 || testutil.ToFloat64(r1.resent) != 0 {
			t.Fatalf("resent counted %v and %v", testutil.ToFloat64(r1.resent), got)
		}
		if testutil.ToFloat64(r1.kept) != 0 || testutil.ToFloat64(r1.oldest) != 0 {
			t.Fatalf("gauges after: kept %v, oldest %v", testutil.ToFloat64(r1.kept), testutil.ToFloat64(r1.oldest))
		}
		if n, err := testutil.GatherAndCount(reg, "occase_notices_resent_total", "occase_notices_kept",
			"occase_notices_kept_oldest_age_seconds", "occase_notices_resend_failed_total", "occase_notices_resend_dropped_total"); err != nil || n != 5 {
			t.Fatalf("%d series registered: %v", n, err)
		}
		// The operator's resend finds nothing kept.
		if _, err := s1.Remove(ctx, "ana", vase, RemoveRequest{}); !isReason(err, ReasonPostNotFound) {
			t.Fatalf("the removal again: %v", err)
		}
	})
}

// An operator's resend and the nodes' at the same moment, many times:
// the author is told once each time (the broker's add remembers the post
// told of), whichever wins.
func TestResendManualAndAutoAtOnceTellOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		raw := brokertest.Raw(t, be.Options.Addrs...)
		var clock atomic.Int64
		clock.Store(time.Now().UnixMilli())
		now := func() time.Time { return time.UnixMilli(clock.Load()) }
		s := New(b, 10, time.Hour, now, zaptest.NewLogger(t))
		s.noticeRetry = 20 * time.Millisecond
		nodes := []*Resender{NewResender(s, ResendConfig{}, nil), NewResender(New(brokertest.Open(t, be.Options), 10, time.Hour, now, zaptest.NewLogger(t)), ResendConfig{}, nil)}
		author, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		nt := be.Options.Prefix + "nt:{" + author + "}"
		const n = 10
		for i := range n {
			id := storeTitled(t, b, author, "Lamp "+strconv.Itoa(i))
			raw.Do(ctx, raw.B().Rename().Key(nt).Newkey(nt+":aside").Build()) // keep what was told
			raw.Do(ctx, raw.B().Set().Key(nt).Value("not a list").Build())
			if _, err := s.Remove(ctx, "ana", id, RemoveRequest{Reason: "spam"}); !isReason(err, ReasonNotTold) {
				t.Fatalf("removal %d: %v", i, err)
			}
			raw.Do(ctx, raw.B().Del().Key(nt).Build())
			raw.Do(ctx, raw.B().Rename().Key(nt+":aside").Newkey(nt).Build()) // none the first time
			clock.Add(time.Minute.Milliseconds())
			var wg sync.WaitGroup
			wg.Add(3)
			go func() { defer wg.Done(); s.Remove(ctx, "bob", id, RemoveRequest{}) }()
			for _, r := range nodes {
				go func() { defer wg.Done(); r.Round(ctx) }()
			}
			wg.Wait()
			if k, err := b.UnsentNotices(ctx); err != nil || k != 0 {
				t.Fatalf("after removal %d: %d kept %v", i, k, err)
			}
		}
		ns, err := b.Notices(ctx, author)
		if err != nil || len(ns) != n {
			t.Fatalf("%d notices for %d removals: %q %v", len(ns), n, ns, err)
		}
	})
}
