package roles_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/roles"
)

// docs/security.md "A kept notice is resent by the nodes", end to end:
// two db nodes on one store, the author logged in to one over a real
// WebSocket and asking for notices. A removal while the author's notice
// list cannot be written (a string: WRONGTYPE) keeps its notice; the
// nodes try it and fail; once the store is mended, the notice is pushed
// to the author's open session, once, with nobody doing anything, and
// the moderation log says the nodes sent it. On Redis and on the
// embedded server.
func TestKeptNoticeResentByTheNodes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		pace := func(c *roles.Config) {
			c.NoticeResend = moderation.ResendConfig{Every: 50 * time.Millisecond, First: 200 * time.Millisecond, Max: 400 * time.Millisecond}
		}
		n1, n2 := startNode(t, b.Options, pace), startNode(t, b.Options, pace)
		bc := brokertest.Open(t, b.Options)
		raw := brokertest.Raw(t, b.Options.Addrs...)
		ctx := context.Background()

		a := register(t, n1.url)
		a.send(`{"cmd":"notices"}`)
		if m := a.expect("notices_ack"); m.str("result") != "ok" {
			t.Fatalf("notices_ack %v", m)
		}
		a.send(`{"cmd":"publish","items":[{"body":"{\"title\":\"Bike\",\"msg\":\"x\"}","to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`)
		m := a.expect("publish_ack")
		if m.str("result") != "ok" {
			t.Fatalf("publish: %v", m)
		}
		post := uint64(m.num("id"))

		nt := b.Options.Prefix + "nt:{" + a.id + "}"
		if err := raw.Do(ctx, raw.B().Set().Key(nt).Value("not a list").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		r, err := bc.RemoveWithNotice(ctx, post, broker.Removal{Reason: "prohibited", Note: "no bikes", At: time.Now().UnixMilli(),
			TTL: time.Hour, RetryFor: 20 * time.Millisecond})
		if err == nil || !r.Kept {
			t.Fatalf("a removal while the notices fail: %+v %v", r, err)
		}
		sum := func(name string) float64 { return metricValue(t, n1, name) + metricValue(t, n2, name) }
		brokertest.Poll(t, 10*time.Second, "a failed try", func() bool { return sum("occase_notices_resend_failed_total") >= 1 })
		if k := metricValue(t, n1, "occase_notices_kept"); k != 1 {
			t.Fatalf("occase_notices_kept %v, want 1", k)
		}
		if err := raw.Do(ctx, raw.B().Del().Key(nt).Build()).Error(); err != nil {
			t.Fatal(err)
		}

		m = a.expect("notice")
		if uint64(m.num("post")) != post || m.str("reason") != "prohibited" || m.str("note") != "no bikes" || m.str("title") != "Bike" {
			t.Fatalf("the notice pushed: %v", m)
		}
		// Both nodes have looked again since (they see nothing kept), and
		// nothing else came: the next frame answers the next request.
		brokertest.Poll(t, 10*time.Second, "the nodes' rounds", func() bool {
			return metricValue(t, n1, "occase_notices_kept") == 0 && metricValue(t, n2, "occase_notices_kept") == 0
		})
		a.send(`{"cmd":"notices"}`)
		m = a.expect("notices_ack")
		if l, _ := m["notices"].([]any); len(l) != 1 {
			t.Fatalf("notices_ack %v, want the one notice", m)
		}
		if got := sum("occase_notices_resent_total"); got != 1 {
			t.Fatalf("%v resent counted, want 1", got)
		}
		lines, _, err := bc.ModLog(ctx, 0, 1)
		if err != nil || len(lines) != 1 || !strings.Contains(lines[0], `"by":"auto"`) || !strings.Contains(lines[0], `"action":"resend"`) {
			t.Fatalf("the moderation log: %q %v", lines, err)
		}
	})
}
