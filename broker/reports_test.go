package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/redis/rueidis"
)

func storeTestPost(t *testing.T, c *broker.Client, owner string, date int64) uint64 {
	t.Helper()
	id, err := c.StorePost(context.Background(), []byte(fmt.Sprintf(`"from":%q,"body":"bike","date":%d`, owner, date)), owner, date, "x")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func noReportKeys(t *testing.T, c *broker.Client, id uint64, when string) {
	t.Helper()
	keys, queued, err := c.ReportKeys(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 || queued {
		t.Fatalf("%s: post %d left report keys %v, in the queue %v", when, id, keys, queued)
	}
}

// Reports are counted once per reporter (a repeat replaces the reason and
// text), refused for an unknown post and for one's own, capped, listed
// most reported first, and dismissed. On a real server, the embedded one
// and a cluster (every key in the {posts} slot).
func TestReportPost(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{Reporters: 3, Details: 2}
		p1 := storeTestPost(t, c, "7", 100)
		p2 := storeTestPost(t, c, "8", 100)
		rep := func(id uint64, by, reason, text string) (broker.ReportResult, error) {
			return c.ReportPost(ctx, id, broker.Report{By: by, Reason: reason, At: 1000, Text: text}, bounds)
		}
		if _, err := rep(99, "1", "spam", ""); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("report of an unknown post: %v", err)
		}
		if _, err := rep(p1, "7", "spam", ""); !errors.Is(err, broker.ErrOwnPost) {
			t.Fatalf("report of one's own post: %v", err)
		}
		noReportKeys(t, c, p1, "after refusals")
		if r, err := rep(p1, "1", "spam", "same ad ten times"); err != nil || r != (broker.ReportResult{Reporters: 1}) {
			t.Fatalf("first report: %+v %v", r, err)
		}
		if r, err := rep(p1, "1", "scam", `asks for a "deposit"`); err != nil || r != (broker.ReportResult{Reporters: 1, Again: true}) {
			t.Fatalf("repeat: %+v %v, want counted once", r, err)
		}
		for i, by := range []string{"2", "3"} {
			if r, err := rep(p1, by, "scam", ""); err != nil || r.Reporters != i+2 {
				t.Fatalf("report by %s: %+v %v", by, r, err)
			}
		}
		if r, err := rep(p1, "4", "spam", "one too many"); err != nil || r != (broker.ReportResult{Reporters: 3, Capped: true}) {
			t.Fatalf("past the cap: %+v %v", r, err)
		}
		// A repeat by a counted reporter still changes its reason at the cap.
		if r, err := rep(p1, "2", "offensive", ""); err != nil || !r.Again || r.Reporters != 3 {
			t.Fatalf("repeat at the cap: %+v %v", r, err)
		}
		if _, err := rep(p2, "1", "prohibited", "\x01ctl <b>"); err != nil {
			t.Fatal(err)
		}
		list, err := c.ReportedPosts(ctx, 10, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != p1 || list[1].ID != p2 {
			t.Fatalf("queue %+v, want %d then %d", list, p1, p2)
		}
		got := list[0]
		if got.Author != "7" || got.Reporters != 3 || got.Reasons["scam"] != 2 || got.Reasons["offensive"] != 1 ||
			!strings.Contains(got.Post, `"body":"bike"`) {
			t.Fatalf("reported post %+v", got)
		}
		// Two details kept, newest first, one per reporter.
		if len(got.Latest) != 2 {
			t.Fatalf("details %q, want 2", got.Latest)
		}
		var d0, d1 broker.Report
		if json.Unmarshal([]byte(got.Latest[0]), &d0) != nil || json.Unmarshal([]byte(got.Latest[1]), &d1) != nil {
			t.Fatalf("details are not JSON: %q", got.Latest)
		}
		if d0.By != "2" || d0.Reason != "offensive" || d1.By != "3" || d1.At != 1000 {
			t.Fatalf("details %+v %+v", d0, d1)
		}
		var d broker.Report
		if json.Unmarshal([]byte(list[1].Latest[0]), &d) != nil || d.Text != "\x01ctl <b>" {
			t.Fatalf("a text with a control character: %q", list[1].Latest)
		}
		// The repeat replaced reporter 1's entry: it is there once, with
		// its newest reason and text.
		all, _ := c.ReportedPosts(ctx, 1, 20)
		n1 := 0
		for _, e := range all[0].Latest {
			if strings.HasPrefix(e, `{"by":"1",`) {
				n1++
			}
		}
		if n1 > 1 {
			t.Fatalf("reporter 1 listed %d times: %q", n1, all[0].Latest)
		}

		if n, shown, err := c.DismissReports(ctx, p1); err != nil || n != 3 || shown {
			t.Fatalf("dismiss: %d %v %v", n, shown, err)
		}
		noReportKeys(t, c, p1, "after dismiss")
		if n, shown, err := c.DismissReports(ctx, p1); err != nil || n != 0 || shown {
			t.Fatalf("dismiss again: %d %v %v", n, shown, err)
		}
		if list, _ := c.ReportedPosts(ctx, 10, 5); len(list) != 1 || list[0].ID != p2 {
			t.Fatalf("queue after dismiss %+v", list)
		}
		if n, _ := c.PostCount(ctx); n != 2 {
			t.Fatalf("dismiss removed a post: %d left", n)
		}
	})
}

// The review queue is bounded in total: when it is full, a report of a
// post not in it yet evicts the lowest entry if that has one reporter
// (the oldest post among such: ids compared as numbers, 9 before 10, not
// as the sorted set's strings), its report keys with it, and is not
// stored if every entry has two reporters or more; a report of a post in
// the queue always counts. On a real server, the embedded one and a
// cluster.
func TestReportQueueBound(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{Reporters: 5, Details: 2, Queue: 3}
		rep := func(id uint64, by string) broker.ReportResult {
			t.Helper()
			r, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "spam", At: 1000, Text: "x"}, bounds)
			if err != nil {
				t.Fatalf("report of %d by %s: %v", id, by, err)
			}
			return r
		}
		queueLen := func(want int) {
			t.Helper()
			if n, err := c.ReportQueueLen(ctx); err != nil || n != want {
				t.Fatalf("queue holds %d (%v), want %d", n, err, want)
			}
		}
		// Posts until two ids cross a power of ten (9 and 10 on a fresh
		// prefix): the sorted set orders "10" before "9".
		var ids []uint64
		for {
			ids = append(ids, storeTestPost(t, c, "7", 100))
			if n := len(ids); n > 1 && len(fmt.Sprint(ids[n-1])) > len(fmt.Sprint(ids[n-2])) {
				break
			}
			if len(ids) > 200 {
				t.Fatal("no power of ten crossed")
			}
		}
		older, newer := ids[len(ids)-2], ids[len(ids)-1]
		several := ids[0]
		fresh1, fresh2 := storeTestPost(t, c, "7", 100), storeTestPost(t, c, "7", 100)

		rep(several, "1")
		rep(several, "2")
		rep(newer, "1")
		rep(older, "1")
		queueLen(3)

		// Full: a new post's first report evicts the oldest single report.
		if r := rep(fresh1, "1"); r != (broker.ReportResult{Reporters: 1, Evicted: older}) {
			t.Fatalf("report into the full queue: %+v, want post %d evicted", r, older)
		}
		noReportKeys(t, c, older, "after its eviction")
		queueLen(3)
		if keys, queued, _ := c.ReportKeys(ctx, fresh1); len(keys) != 2 || !queued {
			t.Fatalf("the new report: keys %v queued %v", keys, queued)
		}

		// A post in the queue always counts, full or not.
		if r := rep(newer, "2"); r != (broker.ReportResult{Reporters: 2}) {
			t.Fatalf("second reporter of a queued post: %+v", r)
		}
		if r := rep(fresh1, "3"); r != (broker.ReportResult{Reporters: 2}) {
			t.Fatalf("second reporter of a queued post: %+v", r)
		}
		queueLen(3)

		// Every entry has two reporters: a new post's report is not stored.
		if r := rep(fresh2, "1"); r != (broker.ReportResult{QueueFull: true}) {
			t.Fatalf("report into a queue of several-reporter posts: %+v", r)
		}
		noReportKeys(t, c, fresh2, "after a report into the full queue")
		queueLen(3)
		// Its evicted predecessor too stays out, as a new post would.
		if r := rep(older, "9"); !r.QueueFull {
			t.Fatalf("report of the evicted post: %+v, want queue full", r)
		}
		// A repeat and a third reporter of queued posts still count.
		if r := rep(newer, "2"); !r.Again || r.Reporters != 2 {
			t.Fatalf("repeat in the full queue: %+v", r)
		}
		if r := rep(several, "3"); r != (broker.ReportResult{Reporters: 3}) {
			t.Fatalf("third reporter in the full queue: %+v", r)
		}
		// Most reported first; ties by id as numbers, newer first.
		list, err := c.ReportedPosts(ctx, 10, 1)
		if err != nil || len(list) != 3 || list[0].ID != several || list[1].ID != fresh1 || list[2].ID != newer {
			t.Fatalf("queue %+v %v, want %d, %d, %d", list, err, several, fresh1, newer)
		}

		// Room again once an operator dismisses one.
		if n, shown, err := c.DismissReports(ctx, several); err != nil || n != 3 || shown {
			t.Fatalf("dismiss: %d %v %v", n, shown, err)
		}
		if r := rep(fresh2, "1"); r != (broker.ReportResult{Reporters: 1}) {
			t.Fatalf("report after a dismissal: %+v", r)
		}
		queueLen(3)
	})
}

// Nothing of a post's reports outlives it: the author's delete, an
// operator's removal and the expiry sweep drop the report keys and the
// queue entry in the same script as the post.
func TestReportsGoWithThePost(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 16)
		c.Handle(broker.PostsChannel, func(_, payload string) { got <- payload })
		if err := c.Subscribe(ctx, c.Key(broker.PostsChannel)); err != nil {
			t.Fatal(err)
		}
		bounds := broker.DefaultReportBounds
		report := func(id uint64) {
			t.Helper()
			for _, by := range []string{"1", "2"} {
				if _, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "spam", At: 5, Text: "x"}, bounds); err != nil {
					t.Fatal(err)
				}
			}
			if keys, queued, _ := c.ReportKeys(ctx, id); len(keys) != 2 || !queued {
				t.Fatalf("post %d reported: keys %v queued %v", id, keys, queued)
			}
		}
		deleted := storeTestPost(t, c, "7", 100)
		removed := storeTestPost(t, c, "8", 100)
		old1, old2 := storeTestPost(t, c, "9", 50), storeTestPost(t, c, "9", 60)
		plain := storeTestPost(t, c, "9", 70) // expires unreported
		live := storeTestPost(t, c, "9", 500)
		for _, id := range []uint64{deleted, removed, old1, old2, live} {
			report(id)
		}
		for range 6 {
			<-got // the posts' own broadcasts
		}

		if err := c.DeletePost(ctx, deleted, "7"); err != nil {
			t.Fatal(err)
		}
		expect(t, got, fmt.Sprintf(`{"op":"del","ids":[%d]}`, deleted))
		noReportKeys(t, c, deleted, "after the author's delete")

		author, n, err := c.RemovePost(ctx, removed)
		if err != nil || author != "8" || n != 2 {
			t.Fatalf("remove: %q %d %v", author, n, err)
		}
		expect(t, got, fmt.Sprintf(`{"op":"del","ids":[%d]}`, removed))
		noReportKeys(t, c, removed, "after an operator's removal")
		if _, _, err := c.RemovePost(ctx, removed); !errors.Is(err, broker.ErrPostNotFound) {
			t.Fatalf("remove again: %v", err)
		}

		if n, err := c.ExpirePosts(ctx, 100, 10); err != nil || n != 3 {
			t.Fatalf("expired %d %v, want 3", n, err)
		}
		expect(t, got, fmt.Sprintf(`{"op":"del","ids":[%d,%d,%d]}`, old1, old2, plain))
		for _, id := range []uint64{old1, old2, plain} {
			noReportKeys(t, c, id, "after expiry")
		}
		// The live post's reports are untouched.
		list, err := c.ReportedPosts(ctx, 10, 1)
		if err != nil || len(list) != 1 || list[0].ID != live || list[0].Reporters != 2 {
			t.Fatalf("queue after the removals: %+v %v, want only post %d", list, err, live)
		}
	})
}

// The memory of reports at the caps, on a real server, with every text at
// its longest: one post's keys at --report-reporters and --report-details,
// and the review queue at --report-queue-max entries; docs/security.md
// "Reports" states the product as the bound of all reports.
func TestReportMemoryAtTheCaps(t *testing.T) {
	r := brokertest.StartRedis(t)
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()}
	c := brokertest.Open(t, opt)
	ctx := context.Background()
	bounds := broker.DefaultReportBounds
	id := storeTestPost(t, c, "7", 100)
	// 280 characters that each cost 4 bytes of UTF-8 (the most one may:
	// the node refuses control characters, which JSON would escape to six);
	// ids as long as a user id gets (19 digits).
	text := strings.Repeat("😀", 280)
	for i := range bounds.Reporters + 5 {
		by := fmt.Sprintf("%019d", 1_000_000_000_000_000_000+i)
		if _, err := c.ReportPost(ctx, id, broker.Report{By: by, Reason: "prohibited", At: 1_800_000_000, Text: text}, bounds); err != nil {
			t.Fatal(err)
		}
	}
	raw := brokertest.Raw(t, r.Addr)
	usage := func(k string) int64 {
		t.Helper()
		n, err := raw.Do(ctx, raw.B().MemoryUsage().Key(opt.Prefix+k).Samples(0).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", k, n)
		return n
	}
	sid := fmt.Sprint(id)
	post := usage("{posts}:rby:"+sid) + usage("{posts}:rlast:"+sid)
	t.Logf("one post's reports at the caps (%d reporters, %d details): %d bytes", bounds.Reporters, bounds.Details, post)
	if post > 16<<10 {
		t.Fatalf("one post's reports take %d bytes at the caps, over the 16 KiB docs/security.md states", post)
	}
	// The queue full, with ids of 13 digits (2^40: a trillion posts) and
	// scores as the report script writes them.
	cmds := make(rueidis.Commands, 0, bounds.Queue)
	for i := range bounds.Queue {
		cmds = append(cmds, raw.B().Zadd().Key(opt.Prefix+"{posts}:reported").ScoreMember().
			ScoreMember(float64(bounds.Reporters)+0.123456789012345, fmt.Sprint(1<<40+i)).Build())
	}
	for _, res := range raw.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			t.Fatal(err)
		}
	}
	queue := usage("{posts}:reported")
	total := int64(bounds.Queue)*post + queue
	t.Logf("all reports at the caps: %d posts x %d + the queue %d = %d bytes (%.1f MiB)",
		bounds.Queue, post, queue, total, float64(total)/(1<<20))
	if total > 100<<20 {
		t.Fatalf("all reports take %d bytes at the caps, over the 100 MiB docs/security.md states", total)
	}
}

// An account deletion forgets the user's reports: a post others report
// too counts one reporter less and keeps only their reports; a post the
// user alone reported leaves the queue with its keys; others'
// reports stay. On a real server, the embedded one and a cluster.
func TestForgetReporter(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		bounds := broker.ReportBounds{Reporters: 10, Details: 10}
		shared := storeTestPost(t, c, "7", 100)
		alone := storeTestPost(t, c, "8", 100)
		others := storeTestPost(t, c, "9", 100)
		for _, r := range []struct {
			id uint64
			by string
		}{{shared, "1"}, {shared, "2"}, {shared, "3"}, {alone, "1"}, {others, "2"}, {others, "3"}} {
			if _, err := c.ReportPost(ctx, r.id, broker.Report{By: r.by, Reason: "spam", At: 1000, Text: "by " + r.by}, bounds); err != nil {
				t.Fatal(err)
			}
		}
		n, err := c.ForgetReporter(ctx, "1")
		if err != nil || n != 2 {
			t.Fatalf("ForgetReporter: %d %v, want the 2 posts user 1 reported", n, err)
		}
		noReportKeys(t, c, alone, "after forgetting its only reporter")
		list, err := c.ReportedPosts(ctx, 10, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Fatalf("queue after forgetting user 1: %+v, want the 2 posts others report", list)
		}
		// Both have two reporters now: the queue's order is the ids' (the
		// higher first), which it is only if the shared post's score fell.
		if list[0].ID != others || list[1].ID != shared {
			t.Errorf("queue order: %d, %d, want %d then %d (equal counts)", list[0].ID, list[1].ID, others, shared)
		}
		for _, p := range list {
			if p.Reporters != 2 {
				t.Errorf("post %d: %d reporters, want 2", p.ID, p.Reporters)
			}
			for _, l := range p.Latest {
				if strings.Contains(l, `"by":"1"`) {
					t.Errorf("post %d keeps user 1's report: %s", p.ID, l)
				}
			}
			if len(p.Latest) != 2 {
				t.Errorf("post %d: %d full reports, want the other 2: %v", p.ID, len(p.Latest), p.Latest)
			}
		}
		// The counts are right for what comes next: user 1 may report
		// again (a new account would have a new id; this is the store's
		// view), and counts once.
		if r, err := c.ReportPost(ctx, shared, broker.Report{By: "4", Reason: "scam", At: 1001}, bounds); err != nil || r.Reporters != 3 {
			t.Fatalf("a report after the forgetting: %+v %v, want 3 reporters", r, err)
		}
		if n, err := c.ForgetReporter(ctx, "1"); err != nil || n != 0 {
			t.Fatalf("second ForgetReporter: %d %v, want nothing left", n, err)
		}
	})
}
