package roles_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

// expectChat reads the next frame and checks it is the chat line text from
// from, with a fresh msg_id; it returns the msg_id.
func (c *client) expectChat(from, text string) int64 {
	c.t.Helper()
	m := c.expect("message")
	if m.str("from") != from || m.str("msg") != text || m.str("type") != "chat" {
		c.t.Fatalf("got %v, want chat %q from %s", m, text, from)
	}
	id := m.num("msg_id")
	if id <= 0 || c.seen[id] {
		c.t.Fatalf("msg_id %d missing or repeated in %v", id, m)
	}
	c.seen[id] = true
	return id
}

func (c *client) expectServerAck(ackID int, to string) msg {
	c.t.Helper()
	m := c.expect("message")
	if m.str("type") != "server_ack" || m.str("result") != "ok" || m.num("ack_id") != int64(ackID) ||
		m.str("from") != to || m.num("post_id") != 17 || m["is_sender_post"] != true || m.num("msg_id") <= 0 {
		c.t.Fatalf("server_ack %v, want ok ack_id %d from %s post_id 17 is_sender_post true", m, ackID, to)
	}
	return m
}

func TestChatSameNodeOfflineAndAcrossNodes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := startNode(t, b.Options)
		n2 := startNode(t, b.Options)
		a := register(t, n1.url)
		bb := register(t, n1.url)

		// Same node: the server overwrites a forged "from", keeps unknown
		// fields byte for byte.
		a.send(`{"cmd":"message","type":"chat","to":"` + bb.id + `","from":"666","msg":"hi","id":1,"post_id":17,"is_sender_post":false,"extra":{"k":[1,2.50]}}`)
		a.expectServerAck(1, bb.id)
		m := bb.expect("message")
		if m.str("from") != a.id || m.str("msg") != "hi" || fmt.Sprint(m["extra"]) != "map[k:[1 2.50]]" {
			t.Fatalf("delivered %v", m)
		}

		// Offline: c registers on n2 and leaves; a sends three; c logs in
		// on n1 and gets them after login_ack, oldest first.
		c := register(t, n2.url)
		c.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n2, c.id)
		for i := 1; i <= 3; i++ {
			a.chat(c.id, fmt.Sprint("off", i), 10+i)
			a.expectServerAck(10+i, c.id)
		}
		c = login(t, n1.url, c.id, c.pwd)
		var last int64
		for i := 1; i <= 3; i++ {
			id := c.expectChat(a.id, fmt.Sprint("off", i))
			if id <= last {
				t.Fatalf("msg_id %d after %d: out of order", id, last)
			}
			last = id
		}

		// Across nodes: d online on n2 gets a's messages from n1 live, in
		// order, and answers.
		d := register(t, n2.url)
		for i := 0; i < 50; i++ {
			a.chat(d.id, fmt.Sprint("x", i), i)
		}
		for i := 0; i < 50; i++ {
			a.expectServerAck(i, d.id)
		}
		for i := 0; i < 50; i++ {
			d.expectChat(a.id, fmt.Sprint("x", i))
		}
		d.send(`{"cmd":"message","type":"app_ack_read","to":"` + a.id + `","post_id":17,"is_sender_post":true}`)
		d.expect("message")
		m = a.expect("message")
		if m.str("type") != "app_ack_read" || m.str("from") != d.id {
			t.Fatalf("receipt %v", m)
		}

		// Unknown recipient, too large, reserved type: fail replies, the
		// connection stays.
		a.send(`{"cmd":"message","to":"987654","id":99}`)
		if m := a.expect("message"); m.str("result") != "fail" || m.str("reason") != wire.NotFound || m.num("ack_id") != 99 {
			t.Fatalf("to unknown user: %v", m)
		}
		a.send(`{"cmd":"message","type":"server_ack","to":"` + d.id + `"}`)
		if m := a.expect("message"); m.str("reason") != wire.BadRequest {
			t.Fatalf("spoofed server_ack: %v", m)
		}
		a.chat(d.id, "still here", 100)
		a.expectServerAck(100, d.id)
		d.expectChat(a.id, "still here")
	})
}

// waitOffline waits until user id is no longer connected to n (its session
// has been torn down after the client closed).
func waitOffline(t *testing.T, n *node, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.srv.Online(id) {
		if time.Now().After(deadline) {
			t.Fatalf("user %s still online", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewerLoginDisplacesOlderAcrossNodes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := startNode(t, b.Options)
		n2 := startNode(t, b.Options)
		a := register(t, n1.url)
		u := register(t, n1.url)
		// Queue many messages while u is online on n1, then log in on n2
		// at once: whatever n1 had not written must reach n2, exactly once
		// by msg_id, and the old connection closes with 4001.
		const total = 200
		for i := 0; i < total; i++ {
			a.chat(u.id, fmt.Sprint("m", i), i)
		}
		got := map[string]bool{}
		// Read a few on the old connection first.
		for i := 0; i < 5; i++ {
			m := u.expect("message")
			got[m.str("msg")] = true
			u.seen[m.num("msg_id")] = true
		}
		u2 := login(t, n2.url, u.id, u.pwd)
		for {
			m, err := u.tryRecv(5 * time.Second)
			if err != nil {
				if code := websocket.CloseStatus(err); code != wire.CloseReplaced {
					t.Fatalf("old connection ended with %v, want close %d", err, wire.CloseReplaced)
				}
				break
			}
			if m.str("cmd") == "message" && !u.seen[m.num("msg_id")] {
				u.seen[m.num("msg_id")] = true
				got[m.str("msg")] = true
			}
		}
		for i := 0; i < total; i++ {
			a.expectServerAck(i, u.id)
		}
		u2.seen = u.seen
		for len(got) < total {
			m, err := u2.tryRecv(5 * time.Second)
			if err != nil {
				t.Fatalf("only %d of %d messages arrived: %v", len(got), total, err)
			}
			if id := m.num("msg_id"); !u2.seen[id] {
				u2.seen[id] = true
				got[m.str("msg")] = true
			}
		}
		// Still one login: a third on n1 displaces n2's.
		u3 := login(t, n1.url, u.id, u.pwd)
		if code := u2.closed(); code != wire.CloseReplaced {
			t.Fatalf("second login closed with %d", code)
		}
		a.chat(u.id, "latest", 1000)
		a.expectServerAck(1000, u.id)
		u3.expectChat(a.id, "latest")
	})
}

// A full offline queue refuses the next message (queue_full) and every
// acknowledged one is delivered at login; one sender hits its share while
// another still gets through; once delivered, the sender may send again.
func TestOfflineQueueIsBoundedNeverEvicted(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) { c.Chat.QueueCap, c.Chat.QueueSenderShare = 4, 3 })
		a := register(t, n.url)
		c := register(t, n.url)
		u := register(t, n.url)
		u.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n, u.id)
		refused := func(from *client, id int) {
			t.Helper()
			from.chat(u.id, "refused", id)
			m := from.expect("message")
			if m.str("type") != "server_ack" || m.str("result") != "fail" || m.str("reason") != wire.QueueFull || m.num("ack_id") != int64(id) {
				t.Fatalf("got %v, want server_ack fail queue_full", m)
			}
		}
		for i := 1; i <= 3; i++ {
			a.chat(u.id, fmt.Sprint("a", i), i)
			a.expectServerAck(i, u.id)
		}
		refused(a, 4)         // a's share
		c.chat(u.id, "c1", 1) // another sender still gets through
		c.expectServerAck(1, u.id)
		refused(c, 2) // now the whole queue is full
		if v := metricValue(t, n, `occase_chat_refused_total{limit="sender_share"}`); v != 1 {
			t.Fatalf("sender_share refusals %v, want 1", v)
		}
		if v := metricValue(t, n, `occase_chat_refused_total{limit="queue"}`); v != 1 {
			t.Fatalf("queue refusals %v, want 1", v)
		}
		u = login(t, n.url, u.id, u.pwd)
		for i := 1; i <= 3; i++ {
			u.expectChat(a.id, fmt.Sprint("a", i))
		}
		u.expectChat(c.id, "c1")
		// Delivered: once the node has removed them from Redis, the queue
		// and a's share are free again.
		bc := brokertest.Open(t, b.Options)
		brokertest.Poll(t, 5*time.Second, "the delivered messages are removed", func() bool {
			n, err := bc.QueueLen(context.Background(), u.id)
			return err == nil && n == 0
		})
		a.chat(u.id, "again", 10)
		a.expectServerAck(10, u.id)
		u.expectChat(a.id, "again")
	})
}

func TestPresence(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := startNode(t, b.Options)
		n2 := startNode(t, b.Options)
		a := register(t, n1.url)
		same := register(t, n1.url)
		other := register(t, n2.url)
		for _, to := range []*client{same, other} {
			a.send(`{"cmd":"presence","to":"` + to.id + `","type":"writing","post_id":17,"from":"forged"}`)
			m := to.expect("presence")
			if m.str("from") != a.id || m.str("type") != "writing" || m.num("post_id") != 17 {
				t.Fatalf("presence %v", m)
			}
		}
		// No reply to the sender, nothing stored for an offline user.
		off := register(t, n1.url)
		off.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n1, off.id)
		a.send(`{"cmd":"presence","to":"` + off.id + `","type":"writing"}`)
		a.chat(same.id, "after", 1)
		a.expectServerAck(1, same.id) // the first frame a sees: presence had no reply
		off = login(t, n1.url, off.id, off.pwd)
		if m, err := off.tryRecv(300 * time.Millisecond); err == nil {
			t.Fatalf("presence was stored: %v", m)
		}
	})
}

// Simultaneous logins of one user on two nodes: exactly one connection
// survives, every other one is closed with 4001, and chat reaches the
// survivor.
func TestConcurrentLoginsLeaveOne(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := startNode(t, b.Options)
		n2 := startNode(t, b.Options)
		a := register(t, n1.url)
		u := register(t, n1.url)
		const k = 6
		conns := []*client{u}
		for i := 0; i < k; i++ {
			url := n1.url
			if i%2 == 1 {
				url = n2.url
			}
			conns = append(conns, dial(t, url))
		}
		for _, c := range conns[1:] {
			c.send(`{"cmd":"login","user":"` + u.id + `","password":"` + u.pwd + `"}`)
		}
		// One reader per connection, without deadlines (an expired read
		// would close the client's own connection).
		type event struct {
			i    int
			m    msg
			code websocket.StatusCode
		}
		events := make(chan event, 64)
		for i, c := range conns {
			go func() {
				for {
					m, err := c.tryRecv(time.Minute)
					if err != nil {
						events <- event{i: i, code: websocket.CloseStatus(err)}
						return
					}
					events <- event{i: i, m: m}
				}
			}()
		}
		closed := map[int]bool{}
		timeout := time.After(20 * time.Second)
		for len(closed) < k {
			select {
			case e := <-events:
				if e.m == nil {
					if e.code != wire.CloseReplaced {
						t.Fatalf("connection %d closed with %d, want %d", e.i, e.code, wire.CloseReplaced)
					}
					closed[e.i] = true
				}
			case <-timeout:
				t.Fatalf("only %d of %d older connections were closed", len(closed), k)
			}
		}
		a.chat(u.id, "to the one", 1)
		a.expectServerAck(1, u.id)
		for {
			select {
			case e := <-events:
				if e.m == nil {
					t.Fatalf("connection %d closed with %d: no survivor", e.i, e.code)
				}
				if e.m.str("msg") == "to the one" {
					if closed[e.i] {
						t.Fatal("a closed connection got the message")
					}
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the survivor got nothing")
			}
		}
	})
}

// A login reads the first batch of its queue in the script that announces
// it, and its mailbox starts from that read: a queue longer than a batch
// still arrives whole, after login_ack, in order, each message once; and a
// message sent while the user is logged in arrives after them.
func TestLoginStartsFromItsOwnReadOfTheQueue(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := startNode(t, b.Options)
		a := register(t, n1.url)
		c := register(t, n1.url)
		c.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n1, c.id)
		const n = 70 // more than a fetch batch (64)
		for i := 0; i < n; i++ {
			a.chat(c.id, fmt.Sprint("off", i), i)
			a.expectServerAck(i, c.id)
		}
		c = login(t, n1.url, c.id, c.pwd)
		var last int64
		for i := 0; i < n; i++ {
			id := c.expectChat(a.id, fmt.Sprint("off", i))
			if id <= last {
				t.Fatalf("msg_id %d after %d: out of order", id, last)
			}
			last = id
		}
		a.chat(c.id, "live", 100)
		a.expectServerAck(100, c.id)
		c.expectChat(a.id, "live")
	})
}
