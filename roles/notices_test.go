package roles_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

// Notices end to end, two nodes on one Redis, the removals made through
// the broker as `occase moderate remove --reason` makes them: a session
// that never asked for notices (a v1 app) gets no frame for one, the
// chat message sent after it arriving first; the next login_ack counts
// the notice; notices lists it; once asked, a later removal is pushed as
// a notice frame; notices_seen clears them and the next login_ack has no
// count; a login with "notices":true is pushed one without asking; a
// removal without a reason makes no notice; the requests are rate
// limited and need a login.
func TestNoticesOverWebSockets(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1, n2 := startNode(t, b.Options), startNode(t, b.Options)
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		publish := func(c *client, title string) uint64 {
			t.Helper()
			c.send(`{"cmd":"publish","items":[{"body":"{\"title\":\"` + title + `\",\"msg\":\"x\"}","to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`)
			m := c.expect("publish_ack")
			if m.str("result") != "ok" {
				t.Fatalf("publish: %v", m)
			}
			return uint64(m.num("id"))
		}
		remove := func(id uint64, reason, note string) broker.Removed {
			t.Helper()
			r, err := bc.RemoveWithNotice(ctx, id, broker.Removal{Reason: reason, Note: note, At: 7000, TTL: time.Hour})
			if err != nil {
				t.Fatalf("remove %d: %v", id, err)
			}
			return r
		}

		a := register(t, n1.url)
		w := register(t, n2.url)
		p1, p2, p3 := publish(a, "Bike"), publish(a, "Sofa"), publish(a, "Lamp")
		if r := remove(p1, "scam", "asks for a deposit <b>"); r.Author != a.id || r.Notice != 1 {
			t.Fatalf("removed: %+v", r)
		}
		w.chat(a.id, "after", 1)
		if m := a.recv(); m.str("cmd") != "message" || m.str("msg") != "after" {
			t.Fatalf("a session that never asked got %v before the message sent after the notice", m)
		}

		a2 := dial(t, n2.url)
		a2.send(loginFrame(a.id, a.pwd))
		if m := a2.expect("login_ack"); m.str("result") != "ok" || m.num("notices") != 1 {
			t.Fatalf("login_ack %v, want notices 1", m)
		}
		a2.send(`{"cmd":"notices"}`)
		m := a2.expect("notices_ack")
		list, _ := m["notices"].([]any)
		if m.str("result") != "ok" || len(list) != 1 {
			t.Fatalf("notices_ack %v", m)
		}
		n, _ := list[0].(map[string]any)
		if fmt.Sprint(n["id"]) != "1" || n["kind"] != "post_removed" || fmt.Sprint(n["post"]) != fmt.Sprint(p1) ||
			n["title"] != "Bike" || n["reason"] != "scam" || n["note"] != "asks for a deposit <b>" || fmt.Sprint(n["at"]) != "7000" {
			t.Fatalf("notice %v", n)
		}

		// Asked once: the next is pushed, from whichever node.
		remove(p2, "prohibited", "")
		m = a2.expect("notice")
		if m.num("id") != 2 || m.str("title") != "Sofa" || m.str("reason") != "prohibited" || m["note"] != nil {
			t.Fatalf("pushed %v", m)
		}
		// Without a reason, as before: no notice.
		if r := remove(p3, "", ""); r.Notice != 0 {
			t.Fatalf("a removal without a reason made notice %d", r.Notice)
		}
		a2.send(`{"cmd":"notices_seen","upto":1}`)
		if m := a2.expect("notices_seen_ack"); m.str("result") != "ok" || m.num("upto") != 1 || m.num("notices") != 1 {
			t.Fatalf("notices_seen_ack %v", m)
		}
		a2.send(`{"cmd":"notices_seen","upto":2}`)
		if m := a2.expect("notices_seen_ack"); m.num("notices") != 0 {
			t.Fatalf("notices_seen_ack %v", m)
		}
		limited := false
		for range 8 {
			a2.send(`{"cmd":"notices"}`)
			if m := a2.expect("notices_ack"); m.str("reason") == wire.RateLimited {
				limited = true
				break
			}
		}
		if !limited {
			t.Fatal("notices was never rate limited")
		}
		// A malformed request is one as everywhere: an error and 1008.
		a2.send(`{"cmd":"notices_seen","upto":"1"}`)
		if m := a2.expect("error"); m.str("reason") != wire.BadRequest {
			t.Fatalf("notices_seen with a string: %v", m)
		}
		if code := a2.closed(); code != 1008 {
			t.Fatalf("closed with %d, want 1008", code)
		}

		// A login that says "notices":true is pushed them without asking.
		a3 := dial(t, n1.url)
		a3.send(`{"cmd":"login","user":"` + a.id + `","password":"` + a.pwd + `","notices":true}`)
		if m := a3.expect("login_ack"); m.str("result") != "ok" || m["notices"] != nil {
			t.Fatalf("login_ack after all were seen: %v", m)
		}
		p4 := publish(a3, "Desk")
		remove(p4, "other", "")
		if m := a3.expect("notice"); m.num("id") != 3 || m.str("title") != "Desk" || m.num("post") != int64(p4) {
			t.Fatalf("pushed to a login that opted in: %v", m)
		}
		anon := dial(t, n1.url)
		anon.send(`{"cmd":"notices"}`)
		if m := anon.expect("notices_ack"); m.str("reason") != wire.NotLoggedIn {
			t.Fatalf("notices before login: %v", m)
		}
	})
}
