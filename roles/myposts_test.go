package roles_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

// myPostsIDs reads the ids of a my_posts_ack and which are under review.
func myPostsIDs(t testing.TB, m msg) (ids []string, review map[string]bool) {
	t.Helper()
	if m.str("result") != "ok" {
		t.Fatalf("my_posts_ack %v", m)
	}
	review = map[string]bool{}
	list, _ := m["items"].([]any)
	for _, it := range list {
		p, _ := it.(map[string]any)
		id := fmt.Sprint(p["id"])
		ids = append(ids, id)
		if p["under_review"] == true {
			review[id] = true
		}
	}
	return ids, review
}

// my_posts end to end on two nodes of one Redis: a post published on node
// 2 is in the list asked on node 1, newest first and paged; a post hidden
// pending review is listed marked; another user's posts never are; deleted
// and expired posts leave. login_ack counts the user's posts; before a
// login the command answers not_logged_in; past the per-user budget
// rate_limited; a cursor that is no id closes 1008.
func TestMyPostsOverWebSockets(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		small := func(c *roles.Config) {
			c.Posts.MaxCatchUp = 2
			c.Posts.SubscribeRate, c.Posts.SubscribeBurst = 0.01, 12
		}
		n1, n2 := startNode(t, b.Options, small), startNode(t, b.Options, small)
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		publish := func(c *client, title string) string {
			t.Helper()
			c.send(`{"cmd":"publish","items":[{"body":"{\"title\":\"` + title + `\"}","to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`)
			m := c.expect("publish_ack")
			if m.str("result") != "ok" {
				t.Fatalf("publish: %v", m)
			}
			return fmt.Sprint(m["id"])
		}

		seller := register(t, n2.url)
		p1, p2, p3 := publish(seller, "Bike"), publish(seller, "Sofa"), publish(seller, "Lamp")
		buyer := register(t, n2.url)
		theirs := publish(buyer, "Desk")

		// Node 1 has every post (one channel, in order) before the hide.
		awaitPost(t, n1, theirs, http.StatusOK)
		// Hidden pending review: three aged reporters.
		for _, by := range []string{"91", "92", "93"} {
			var id uint64
			fmt.Sscan(p2, &id)
			if _, err := bc.ReportPost(ctx, id, broker.Report{By: by, Reason: "scam", At: 1, Aged: true}, broker.ReportBounds{HideAt: 3}); err != nil {
				t.Fatal(err)
			}
		}

		s1 := dial(t, n1.url)
		s1.send(loginFrame(seller.id, seller.pwd))
		if m := s1.expect("login_ack"); m.str("result") != "ok" || m.num("my_posts") != 3 {
			// The hide may still be on its way to node 1: counted either way.
			t.Fatalf("login_ack %v, want my_posts 3", m)
		}
		ask := func(frame string) ([]string, map[string]bool, string) {
			t.Helper()
			s1.send(frame)
			m := s1.expect("my_posts_ack")
			ids, review := myPostsIDs(t, m)
			next := ""
			if m["next"] != nil {
				next = fmt.Sprint(m["next"])
			}
			return ids, review, next
		}
		gone(t, n1, p2) // the hide reached node 1
		ids, review, next := ask(`{"cmd":"my_posts"}`)
		if fmt.Sprint(ids) != fmt.Sprint([]string{p3, p2}) || !review[p2] || review[p3] || next != p2 {
			t.Fatalf("first page %v review %v next %q, want [%s %s], %s under review", ids, review, next, p3, p2, p2)
		}
		first := ids
		ids, _, next = ask(`{"cmd":"my_posts","before":` + next + `}`)
		if fmt.Sprint(ids) != fmt.Sprint([]string{p1}) || next != "" {
			t.Fatalf("second page %v next %q, want [%s]", ids, next, p1)
		}
		for _, id := range append(first, ids...) {
			if id == theirs {
				t.Fatalf("another user's post %s listed", theirs)
			}
		}
		// The other user sees only theirs, never the marker.
		buyer.send(`{"cmd":"my_posts"}`)
		if ids, review := myPostsIDs(t, buyer.expect("my_posts_ack")); fmt.Sprint(ids) != fmt.Sprint([]string{theirs}) || len(review) != 0 {
			t.Fatalf("buyer's list %v %v", ids, review)
		}

		// Deleted (through node 2's store, as from another device): gone.
		var d1 uint64
		fmt.Sscan(p3, &d1)
		if err := bc.DeletePost(ctx, d1, seller.id); err != nil {
			t.Fatal(err)
		}
		gone(t, n1, p3)
		if ids, _, _ := ask(`{"cmd":"my_posts"}`); fmt.Sprint(ids) != fmt.Sprint([]string{p2, p1}) {
			t.Fatalf("after deleting %s: %v", p3, ids)
		}
		// Expired (the sweep's script, run as any node runs it): gone.
		if _, err := bc.ExpirePosts(ctx, time.Now().Unix()+1, 100); err != nil {
			t.Fatal(err)
		}
		gone(t, n1, p1)
		if ids, _, _ := ask(`{"cmd":"my_posts"}`); len(ids) != 0 {
			t.Fatalf("after expiry: %v", ids)
		}
		// Anonymous: a clear refusal, the connection kept.
		anon := dial(t, n1.url)
		anon.send(`{"cmd":"my_posts"}`)
		if m := anon.expect("my_posts_ack"); m.str("result") != "fail" || m.str("reason") != wire.NotLoggedIn {
			t.Fatalf("my_posts before login: %v", m)
		}
		// The per-user budget (12, shared with subscribe) runs out.
		limited := false
		for range 20 {
			s1.send(`{"cmd":"my_posts"}`)
			if m := s1.expect("my_posts_ack"); m.str("reason") == wire.RateLimited {
				limited = true
				break
			}
		}
		if !limited {
			t.Fatal("my_posts was never rate limited")
		}
		// A cursor that is no id is malformed: error and 1008.
		buyer.send(`{"cmd":"my_posts","before":"x"}`)
		if m := buyer.expect("error"); m.str("reason") != wire.BadRequest {
			t.Fatalf("a string cursor: %v", m)
		}
		if code := buyer.closed(); code != 1008 {
			t.Fatalf("closed with %d, want 1008", code)
		}
	})
}

// gone waits until node n's GET /api/posts/{id} answers 404: the hide,
// deletion or expiry of post id has reached its index.
func gone(t testing.TB, n *node, id string) { t.Helper(); awaitPost(t, n, id, http.StatusNotFound) }

// awaitPost waits until node n's GET /api/posts/{id} answers code.
func awaitPost(t testing.TB, n *node, id string, code int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		r, err := http.Get(n.base + "/api/posts/" + id)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("post %s still served by the node: %d", id, r.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
