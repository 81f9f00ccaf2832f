package roles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

func (c *client) reportCmd(frame string) msg {
	c.t.Helper()
	c.send(frame)
	return c.expect("report_ack")
}

func reportFrame(id int64, reason, text string) string {
	t, _ := json.Marshal(text)
	return fmt.Sprintf(`{"cmd":"report","id":%d,"reason":%q,"text":%s}`, id, reason, t)
}

// Users report a post over real WebSockets on two nodes: each reporter is
// counted once (a repeat is ok again and replaces its reason), every
// refusal is a report_ack fail naming the post on a connection that stays
// open, and the metric counts each result. The author's delete leaves the
// reports, with a snapshot, for the operators.
func TestReportEndToEnd(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		// The refusals below come from one connection: past the default
		// burst of 10.
		reportNode := func() *node {
			return startNode(t, b.Options, func(c *roles.Config) {
				c.Posts.PostsPerAddress = 50
				c.ReportBurst = 100
			})
		}
		n1, n2 := reportNode(), reportNode()
		author := register(t, n1.url)
		r1, r2 := register(t, n1.url), register(t, n2.url)
		author.send(publishFrame("[0,0,0]", "[0,0,0]"))
		id := author.expect("publish_ack").num("id")

		if m := r1.reportCmd(reportFrame(id, "scam", "asks for a deposit")); m.str("result") != "ok" || m.num("id") != id {
			t.Fatalf("report_ack %v", m)
		}
		if m := r1.reportCmd(reportFrame(id, "spam", "")); m.str("result") != "ok" || m.num("id") != id {
			t.Fatalf("a repeat: %v, want ok", m)
		}
		if m := r2.reportCmd(fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"scam"}`, id)); m.str("result") != "ok" {
			t.Fatalf("report without text from node 2: %v", m)
		}
		for _, tc := range []struct {
			name, frame, reason string
			id                  int64
		}{
			{"own post", reportFrame(id, "spam", ""), wire.BadRequest, id},
			{"unknown post", reportFrame(987654, "spam", ""), wire.NotFound, 987654},
			{"bad reason", reportFrame(id, "ugly", ""), wire.BadRequest, id},
			{"no reason", fmt.Sprintf(`{"cmd":"report","id":%d}`, id), wire.BadRequest, id},
			{"long text", reportFrame(id, "other", strings.Repeat("é", 281)), wire.BadRequest, id},
			{"control character", reportFrame(id, "other", "look \x1b[31mhere"), wire.BadRequest, id},
			{"text not a string", fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"other","text":7}`, id), wire.BadRequest, id},
			{"id a string", `{"cmd":"report","id":"7","reason":"spam"}`, wire.BadRequest, 0},
			{"no id", `{"cmd":"report","reason":"spam"}`, wire.BadRequest, 0},
		} {
			c := r1
			if tc.name == "own post" {
				c = author
			}
			m := c.reportCmd(tc.frame)
			if m.str("result") != "fail" || m.str("reason") != tc.reason || m.num("id") != tc.id {
				t.Fatalf("%s: %v, want fail %s naming post %d", tc.name, m, tc.reason, tc.id)
			}
		}
		// 280 characters are allowed, newlines too; the connection stayed open.
		if m := r1.reportCmd(reportFrame(id, "other", strings.Repeat("é", 279)+"\n")); m.str("result") != "ok" {
			t.Fatalf("a text of 280 characters: %v", m)
		}

		bc := brokertest.Open(t, b.Options)
		list, err := bc.ReportedPosts(context.Background(), 10, 5)
		if err != nil || len(list) != 1 || list[0].ID != uint64(id) || list[0].Reporters != 2 ||
			list[0].Reasons["other"] != 1 || list[0].Reasons["scam"] != 1 || list[0].Author != author.id {
			t.Fatalf("review queue %+v %v, want post %d with two reporters (other, scam)", list, err, id)
		}
		for _, want := range []struct {
			result string
			n      float64
		}{{"new", 1}, {"again", 2}, {"bad_request", 8}, {"not_found", 1}} {
			if v := metricValue(t, n1, `occase_reports_total{result="`+want.result+`"}`); v != want.n {
				t.Fatalf("occase_reports_total{result=%q} = %v, want %v", want.result, v, want.n)
			}
		}
		if v := metricValue(t, n2, `occase_reports_total{result="new"}`); v != 1 {
			t.Fatalf("node 2 counted %v new reports, want 1", v)
		}

		author.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))
		if m := author.expect("delete_ack"); m.str("result") != "ok" {
			t.Fatalf("delete: %v", m)
		}
		// The reports stay for the operators, with a snapshot of the
		// post (docs/security.md "Evidence kept when an author deletes a
		// reported listing").
		if keys, queued, err := bc.ReportKeys(context.Background(), uint64(id)); err != nil || len(keys) != 3 || keys[0] != "gone" || !queued {
			t.Fatalf("after the author's delete: report keys %v, queued %v (%v), want them kept with a snapshot", keys, queued, err)
		}
		if m := r2.reportCmd(reportFrame(id, "spam", "")); m.str("reason") != wire.NotFound {
			t.Fatalf("report of a deleted post: %v", m)
		}

		anon := dial(t, n1.url)
		anon.send(reportFrame(id, "spam", ""))
		if m := anon.expect("report_ack"); m.str("reason") != wire.NotLoggedIn {
			t.Fatalf("report before login: %v", m)
		}
	})
}

// The per-connection token bucket: the burst, then rate_limited (naming
// the post), counted in the metrics.
func TestReportRateLimited(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.ReportRate, c.ReportBurst = 0.001, 3
			c.Posts.PostsPerAddress = 50
		})
		author, me := register(t, n.url), register(t, n.url)
		author.send(publishFrame("[0,0,0]", "[0,0,0]"))
		id := author.expect("publish_ack").num("id")
		for i := range 3 {
			if m := me.reportCmd(reportFrame(id, "spam", "")); m.str("result") != "ok" {
				t.Fatalf("report %d: %v", i, m)
			}
		}
		m := me.reportCmd(reportFrame(id, "spam", ""))
		if m.str("result") != "fail" || m.str("reason") != wire.RateLimited || m.num("id") != id {
			t.Fatalf("a fourth report: %v, want rate_limited naming post %d", m, id)
		}
		if v := metricValue(t, n, `occase_reports_total{result="rate_limited"}`); v != 1 {
			t.Fatalf("rate_limited reports counted %v, want 1", v)
		}
		// Another connection has its own bucket.
		if m := author.reportCmd(reportFrame(987654, "spam", "")); m.str("reason") != wire.NotFound {
			t.Fatalf("another connection: %v", m)
		}
	})
}

// The review queue's total bound over real WebSockets: at
// --report-queue-max, a new post's report evicts a post with a single
// reporter (occase_reports_evicted_total), or, when every queued post has
// several, is acknowledged ok and not stored (result queue_full); reports
// of queued posts still count.
func TestReportQueueFullEndToEnd(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.Posts.PostsPerAddress = 50
			c.ReportBurst = 100
			c.Reports.Queue = 2
		})
		author, r1, r2 := register(t, n.url), register(t, n.url), register(t, n.url)
		var ids []int64
		for range 4 {
			author.send(publishFrame("[0,0,0]", "[0,0,0]"))
			ids = append(ids, author.expect("publish_ack").num("id"))
		}
		ok := func(c *client, id int64) {
			t.Helper()
			if m := c.reportCmd(reportFrame(id, "spam", "")); m.str("result") != "ok" || m.num("id") != id {
				t.Fatalf("report of %d: %v, want ok", id, m)
			}
		}
		ok(r1, ids[0])
		ok(r2, ids[0])
		ok(r1, ids[1]) // the queue is full: two posts
		ok(r1, ids[2]) // evicts ids[1], the one with a single reporter
		ok(r2, ids[2])
		ok(r1, ids[3]) // every queued post has two reporters: not stored
		ok(r1, ids[0]) // a repeat on a queued post

		bc := brokertest.Open(t, b.Options)
		list, err := bc.ReportedPosts(context.Background(), 10, 1)
		if err != nil || len(list) != 2 || list[0].ID != uint64(ids[2]) || list[1].ID != uint64(ids[0]) {
			t.Fatalf("review queue %+v %v, want posts %d and %d", list, err, ids[2], ids[0])
		}
		for _, id := range []int64{ids[1], ids[3]} {
			if keys, queued, err := bc.ReportKeys(context.Background(), uint64(id)); err != nil || len(keys) != 0 || queued {
				t.Fatalf("post %d: report keys %v, queued %v (%v), want none", id, keys, queued, err)
			}
		}
		for _, want := range []struct {
			metric string
			n      float64
		}{
			{`occase_reports_total{result="new"}`, 5},
			{`occase_reports_total{result="again"}`, 1},
			{`occase_reports_total{result="queue_full"}`, 1},
			{`occase_reports_evicted_total`, 1},
			{`occase_reports_queued`, 2},
			{`occase_reports_queue_max`, 2},
		} {
			if v := metricValue(t, n, want.metric); v != want.n {
				t.Fatalf("%s = %v, want %v", want.metric, v, want.n)
			}
		}
	})
}
