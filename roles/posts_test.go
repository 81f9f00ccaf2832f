package roles_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

func postsNode(t *testing.T, b brokertest.Backend, quota int) *node {
	return startNode(t, b.Options, func(c *roles.Config) {
		c.Posts.QuotaN = quota
		// Every test user connects from 127.0.0.1.
		c.Posts.PostsPerAddress = max(quota, 50)
		c.Posts.Menu = posts.DemoMenu()
	})
}

func publishFrame(loc, prod string) string {
	return `{"cmd":"publish","items":[{"body":"{\"msg\":\"Golf, 2016\"}","to":[[` + loc + `],[` + prod + `]],"features":4,"range_values":[27000,2016,150000]}]}`
}

func postIDs(t *testing.T, m msg) []int64 {
	t.Helper()
	its, ok := m["items"].([]any)
	if !ok {
		t.Fatalf("post frame without items: %v", m)
	}
	var ids []int64
	for _, it := range its {
		n, _ := it.(map[string]any)["id"].(json.Number).Int64()
		ids = append(ids, n)
	}
	return ids
}

// Two nodes on one Redis, over real WebSockets: a subscriber on node 2 gets
// what is published on node 1; the publisher gets its ack before its own
// post; catch-up after subscribe_ack; delete by the author only, seen on
// both nodes; remaining_posts in login_ack.
func TestPostsAcrossNodesOverWebSockets(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1, n2 := postsNode(t, b, 5), postsNode(t, b, 5)
		a := register(t, n1.url)
		c := register(t, n2.url)
		c.send(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0,"ranges":[]}`)
		c.expect("subscribe_ack")

		// Pipelined: subscribe then publish, no waiting in between.
		a.send(`{"cmd":"subscribe"}`)
		a.send(publishFrame("[0,0,0]", "[0,0,0]"))
		a.expect("subscribe_ack")
		ack := a.expect("publish_ack")
		id := ack.num("id")
		if ack.str("result") != "ok" || id < 1 || ack.num("date") == 0 || ack.num("remaining_posts") != 4 {
			t.Fatalf("publish_ack %v", ack)
		}
		echo := a.expect("post")
		if ids := postIDs(t, echo); len(ids) != 1 || ids[0] != id {
			t.Fatalf("echo %v", echo)
		}
		got := c.expect("post")
		item := got["items"].([]any)[0].(map[string]any)
		if item["from"] != a.id || item["body"] != `{"msg":"Golf, 2016"}` {
			t.Fatalf("subscriber on node 2 got %v", got)
		}

		// A late subscriber on node 2 gets the catch-up after its ack.
		d := register(t, n2.url)
		d.send(`{"cmd":"subscribe","last_post_id":0}`)
		d.expect("subscribe_ack")
		if ids := postIDs(t, d.expect("post")); len(ids) != 1 || ids[0] != id {
			t.Fatalf("catch-up %v", ids)
		}

		// Someone else cannot delete it; the author can; it is gone for all.
		c.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))
		if m := c.expect("delete_ack"); m.str("result") != "fail" || m.str("reason") != wire.NotOwner {
			t.Fatalf("delete by another user: %v", m)
		}
		a.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))
		if m := a.expect("delete_ack"); m.str("result") != "ok" {
			t.Fatalf("delete by the author: %v", m)
		}
		// The deletion broadcast and a new post travel the same channel,
		// so once node 2 delivers the next post it has dropped the first.
		a.send(publishFrame("[0,0,0]", "[0,0,1]"))
		id2 := a.expect("publish_ack").num("id")
		if ids := postIDs(t, c.expect("post")); ids[0] != id2 {
			t.Fatalf("second post %v", ids)
		}
		e := register(t, n2.url)
		e.send(`{"cmd":"subscribe"}`)
		e.expect("subscribe_ack")
		if ids := postIDs(t, e.expect("post")); len(ids) != 1 || ids[0] != id2 {
			t.Fatalf("catch-up after delete %v, want only %d", ids, id2)
		}

		// The HTTP read API of node 2 agrees.
		resp, err := http.Get(n2.base + "/api/posts")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), fmt.Sprintf(`"id":%d,`, id2)) || strings.Contains(string(body), fmt.Sprintf(`"id":%d,`, id)) {
			t.Fatalf("GET /api/posts: %s", body)
		}

		// Node 2's metrics count its live post and its three subscribers.
		rec := httptest.NewRecorder()
		n2.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{"occase_posts_live 1\n", "occase_posts_subscriptions 3\n", "occase_posts_skipped_total 0\n"} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("metrics lack %q", want)
			}
		}

		// login_ack reports the quota left (5 - 2 publishes).
		l := dial(t, n2.url)
		l.send(`{"cmd":"login","user":"` + a.id + `","password":"` + a.pwd + `"}`)
		if m := l.expect("login_ack"); m.num("remaining_posts") != 3 {
			t.Fatalf("login_ack %v", m)
		}
	})
}

// A pipelined burst of publishes gets one ack per publish, in order, with
// increasing ids; an invalid value fails the request and the connection
// stays; a malformed publish closes it with 1008.
func TestPostsBurstAndBadInputOverWebSockets(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := postsNode(t, b, 1000)
		a := register(t, n1.url)
		const burst = 500
		for i := 0; i < burst; i++ {
			a.send(publishFrame("[1,0,0]", "[2,0,0]"))
		}
		var last int64
		for i := 0; i < burst; i++ {
			m := a.expect("publish_ack")
			if m.str("result") != "ok" || m.num("id") <= last {
				t.Fatalf("ack %d: %v after id %d", i, m, last)
			}
			last = m.num("id")
		}
		// Outside the menu: a failed reply, the connection stays.
		a.send(publishFrame("[9,0,0]", "[2,0,0]"))
		if m := a.expect("publish_ack"); m.str("result") != "fail" || m.str("reason") != wire.BadRequest {
			t.Fatalf("code outside the menu: %v", m)
		}
		a.send(`{"cmd":"subscribe","channels":[[-1],[]]}`)
		if m := a.expect("subscribe_ack"); m.str("result") != "fail" {
			t.Fatalf("negative hash: %v", m)
		}
		a.send(`{"cmd":"subscribe","last_post_id":` + fmt.Sprint(last-1) + `}`)
		a.expect("subscribe_ack")
		if ids := postIDs(t, a.expect("post")); len(ids) != 1 || ids[0] != last {
			t.Fatalf("catch-up above %d: %v", last-1, ids)
		}
		// Two items: the request cannot be understood; error, then 1008.
		a.send(`{"cmd":"publish","items":[{"body":"","to":[[[0,0,0]],[[0,0,0]]]},{"body":"","to":[[[0,0,0]],[[0,0,0]]]}]}`)
		if m := a.expect("error"); m.str("reason") != wire.BadRequest {
			t.Fatalf("two items: %v", m)
		}
		if code := a.closed(); code != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %d, want 1008", code)
		}
	})
}
