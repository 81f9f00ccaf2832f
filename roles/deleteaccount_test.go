package roles_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

func deleteFrame(pwd string) string {
	return `{"cmd":"delete_account","password":"` + pwd + `"}`
}

// apiPosts is node n's GET /api/posts body.
func apiPosts(t *testing.T, n *node) string {
	t.Helper()
	resp, err := http.Get(n.base + "/api/posts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Account deletion end to end, two nodes on one Redis: a wrong password
// is refused with nothing deleted and the connection open; the right one
// is acknowledged, then the connection closes with 4007; the user's posts
// are gone from both nodes' /api/posts and a subscriber with deletions on
// the other node gets post_deleted for each; the id cannot log in; a
// message to it is refused not_found; a message the user had sent waits
// for its recipient still; its report of another's post is gone; nothing
// of the user is left in Redis.
func TestDeleteAccountOverWebSockets(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1, n2 := postsNode(t, b, 5), postsNode(t, b, 5)
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()

		// c is offline when a writes to it: a's message waits in c's queue.
		c := register(t, n2.url)
		c.c.CloseNow()
		a := register(t, n1.url)
		a.chat(c.id, "kept", 1)
		a.expectServerAck(1, c.id)
		var ids []int64
		for i := range 2 {
			a.send(publishFrame("[0,0,0]", fmt.Sprintf("[0,0,%d]", i)))
			ids = append(ids, a.expect("publish_ack").num("id"))
		}
		s := register(t, n2.url)
		s.send(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0,"ranges":[],"deletions":true}`)
		s.expect("subscribe_ack")
		for got := 0; got < 2; {
			got += len(postIDs(t, s.expect("post")))
		}
		bob := register(t, n2.url)
		bob.send(publishFrame("[0,0,0]", "[0,0,2]"))
		bobPost := bob.expect("publish_ack").num("id")
		if ids := postIDs(t, s.expect("post")); len(ids) != 1 || ids[0] != bobPost {
			t.Fatalf("bob's post live: %v", ids)
		}
		// a reports bob's post: the report goes with a's account.
		a.send(fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"spam","text":"a's own words"}`, bobPost))
		if m := a.expect("report_ack"); m.str("result") != "ok" {
			t.Fatalf("report: %v", m)
		}

		// A wrong password: refused, nothing deleted, the connection stays.
		a.send(deleteFrame("not-the-password"))
		if m := a.expect("delete_account_ack"); m.str("result") != "fail" || m.str("reason") != wire.BadCredentials {
			t.Fatalf("wrong password: %v", m)
		}
		if _, ok, _ := bc.PasswordDigest(ctx, a.id); !ok {
			t.Fatal("a refused deletion removed the account")
		}
		if body := apiPosts(t, n1); !strings.Contains(body, fmt.Sprintf(`"id":%d,`, ids[0])) {
			t.Fatalf("a refused deletion removed posts: %s", body)
		}
		a.send(`{"cmd":"delete","id":999999}`)
		if m := a.expect("delete_ack"); m.str("reason") != wire.NotFound {
			t.Fatalf("the connection after a wrong password: %v", m)
		}

		a.send(deleteFrame(a.pwd))
		if m := a.expect("delete_account_ack"); m.str("result") != "ok" {
			t.Fatalf("delete_account: %v", m)
		}
		if code := a.closed(); code != wire.CloseAccountDeleted {
			t.Fatalf("closed with %d, want %d", code, wire.CloseAccountDeleted)
		}

		// The subscriber on node 2 is told of each post; then node 2's
		// index has dropped them (it applies a deletion before it tells).
		gone := map[int64]bool{}
		for len(gone) < 2 {
			gone[s.expect("post_deleted").num("id")] = true
		}
		for _, id := range ids {
			if !gone[id] {
				t.Fatalf("post_deleted for %v, want %v", gone, ids)
			}
		}
		for _, n := range []*node{n1, n2} {
			if body := apiPosts(t, n); strings.Contains(body, `"from":"`+a.id+`"`) || !strings.Contains(body, fmt.Sprintf(`"id":%d,`, bobPost)) {
				t.Fatalf("after the deletion, want the deleted user's posts gone and bob's kept: %s", body)
			}
		}
		l := dial(t, n2.url)
		l.send(`{"cmd":"login","user":"` + a.id + `","password":"` + a.pwd + `"}`)
		if m := l.expect("login_ack"); m.str("result") != "fail" || m.str("reason") != wire.BadCredentials {
			t.Fatalf("login of a deleted account: %v", m)
		}
		bob.chat(a.id, "too late", 1)
		if m := bob.expect("message"); m.str("result") != "fail" || m.str("reason") != wire.NotFound {
			t.Fatalf("message to a deleted id: %v", m)
		}
		if n, err := bc.QueueLen(ctx, a.id); err != nil || n != 0 {
			t.Fatalf("the deleted user's queue: %d %v", n, err)
		}
		if _, ok, _ := bc.PasswordDigest(ctx, a.id); ok {
			t.Fatal("the credentials outlived the deletion")
		}
		c2 := login(t, n1.url, c.id, c.pwd)
		c2.expectChat(a.id, "kept")
		if list, err := bc.ReportedPosts(ctx, 10, 10); err != nil || len(list) != 0 {
			t.Fatalf("the deleted user's report outlived the account: %+v %v", list, err)
		}

		rec := httptest.NewRecorder()
		n1.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{"occase_accounts_deleted_total 1\n",
			`occase_connection_closes_total{code="4007"} 1` + "\n",
			`occase_request_errors_total{cmd="delete_account",reason="bad_credentials"} 1` + "\n"} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("metrics of node 1 lack %q", want)
			}
		}
	})
}

// The deletion's announcement reaches every node: a live session of the
// user on another node (one a displacement did not end: here the account
// is deleted through the broker, as another node's delete_account does)
// closes with 4007. Not logged in: not_logged_in; attempts past the burst:
// rate_limited.
func TestDeleteAccountClosesSessionsOnOtherNodes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1, n2 := startNode(t, b.Options), startNode(t, b.Options)
		bc := brokertest.Open(t, b.Options)

		anon := dial(t, n1.url)
		anon.send(deleteFrame("x"))
		if m := anon.expect("delete_account_ack"); m.str("result") != "fail" || m.str("reason") != wire.NotLoggedIn {
			t.Fatalf("delete_account before login: %v", m)
		}

		// A burst of deleteAccountBurst attempts, then rate_limited
		// before the password is even checked.
		w := register(t, n1.url)
		for i := range 4 {
			w.send(deleteFrame("wrong"))
			m := w.expect("delete_account_ack")
			if want := map[bool]string{true: wire.BadCredentials, false: wire.RateLimited}[i < 3]; m.str("reason") != want {
				t.Fatalf("attempt %d: %v, want %s", i+1, m, want)
			}
		}

		a := register(t, n2.url)
		if r, err := bc.DeleteAccount(context.Background(), a.id, n1.srv.Digest(a.pwd)); err != nil || r != broker.AccountOK {
			t.Fatalf("DeleteAccount: %d %v", r, err)
		}
		if code := a.closed(); code != wire.CloseAccountDeleted {
			t.Fatalf("the live session on node 2 closed with %d, want %d", code, wire.CloseAccountDeleted)
		}
		waitOffline(t, n2, a.id)
	})
}

// Redis goes down between the deletion of the user's posts and the
// script that deletes the account: the command answers unavailable and
// the account is whole (it may log in; its posts are gone); once Redis is
// back, a retry finishes the deletion: on the same connection (a real
// redis-server, killed and restarted with its data kept on disk), or
// after a new login (the embedded server, answering every command with
// an error meanwhile).
func TestDeleteAccountRetryAfterRedisFailure(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		r := brokertest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
		testDeleteRetry(t, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second}, r.Stop, r.Restart, false)
	})
	t.Run("embedded", func(t *testing.T) {
		m, err := broker.StartEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		testDeleteRetry(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix(), Timeout: time.Second},
			func() { m.SetError("LOADING the dataset is being loaded (test)") }, func() { m.SetError("") }, true)
	})
}

func testDeleteRetry(t *testing.T, opt broker.Options, down, up func(), relogin bool) {
	n := startNode(t, opt, func(c *roles.Config) { c.Posts.QuotaN = 5; c.Posts.PostsPerAddress = 50 })
	var once sync.Once
	n.srv.AfterAccountPosts(func() { once.Do(down) })
	a := register(t, n.url)
	a.send(publishFrame("[0,0,0]", "[0,0,0]"))
	a.expect("publish_ack")

	a.send(deleteFrame(a.pwd))
	if m := a.expect("delete_account_ack"); m.str("result") != "fail" || m.str("reason") != wire.Unavailable {
		t.Fatalf("delete_account with Redis down: %v", m)
	}
	up()
	bc := brokertest.Open(t, opt)
	if st, err := bc.AccountCheck(context.Background(), a.id, n.srv.Digest(a.pwd)); err != nil || st != broker.AccountOK {
		t.Fatalf("the account after a failed deletion: %d %v, want whole", st, err)
	}
	if body := apiPosts(t, n); strings.Contains(body, `"from":"`+a.id+`"`) {
		t.Fatalf("the posts pass before the failure did not delete: %s", body)
	}
	if relogin {
		// The account is whole: it logs in (displacing the first
		// connection), and the new connection retries.
		l := login(t, n.url, a.id, a.pwd)
		if code := a.closed(); code != wire.CloseReplaced {
			t.Fatalf("the first connection closed with %d, want %d", code, wire.CloseReplaced)
		}
		a = l
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the retry did not succeed after Redis came back")
		}
		a.send(deleteFrame(a.pwd))
		m := a.expect("delete_account_ack")
		if m.str("result") == "ok" {
			break
		}
		if m.str("reason") != wire.Unavailable && m.str("reason") != wire.RateLimited {
			t.Fatalf("retry: %v", m)
		}
		time.Sleep(200 * time.Millisecond) // Redis restarting: a backoff, not a synchronisation
	}
	if code := a.closed(); code != wire.CloseAccountDeleted {
		t.Fatalf("closed with %d after the retry", code)
	}
	if st, err := bc.AccountCheck(context.Background(), a.id, n.srv.Digest(a.pwd)); err != nil || st != broker.AccountGone {
		t.Fatalf("after the retry: %d %v, want gone", st, err)
	}
}

// Another node deletes the account while this connection's deletion is
// between its posts and its script (the same user twice, or a reply lost
// and retried): the script finds no account, the connection is answered
// ok and closed with 4007 (not by the announcement, before its ack), and
// only the node that deleted counts it.
func TestDeleteAccountRacingAnotherDeletion(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := postsNode(t, b, 5)
		bc := brokertest.Open(t, b.Options)
		a := register(t, n.url)
		var once sync.Once
		n.srv.AfterAccountPosts(func() {
			once.Do(func() {
				if r, err := bc.DeleteAccount(context.Background(), a.id, n.srv.Digest(a.pwd)); err != nil || r != broker.AccountOK {
					t.Errorf("DeleteAccount from elsewhere: %d %v", r, err)
				}
			})
		})
		a.send(deleteFrame(a.pwd))
		if m := a.expect("delete_account_ack"); m.str("result") != "ok" {
			t.Fatalf("delete_account: %v", m)
		}
		if code := a.closed(); code != wire.CloseAccountDeleted {
			t.Fatalf("closed with %d", code)
		}
		rec := httptest.NewRecorder()
		n.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if !strings.Contains(rec.Body.String(), "occase_accounts_deleted_total 0\n") {
			t.Error("the account was counted by a node whose script found it gone")
		}
	})
}
