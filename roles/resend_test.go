package roles_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

// docs/protocol.md "Safe chat resends": a message's "cid" is the client's
// own idempotency key; the server checks its shape and forwards it as is.

// chatCid sends a chat line with a cid (a JSON value, as written).
func (c *client) chatCid(to, text, cid string, id int) {
	c.send(`{"cmd":"message","type":"chat","to":"` + to + `","msg":"` + text + `","cid":` + cid + `,"id":` + itoa(id) + `,"post_id":17,"is_sender_post":false}`)
}

// A cid reaches the receiver unchanged, live and through the offline queue
// after the receiver logs in, and the sender's server_ack echoes it.
func TestChatCidRoundTrip(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		a := register(t, n.url)
		live := register(t, n.url)
		const cid = "0f3c2a9e-7d1b:4c55.9a0e_2F6B"

		a.chatCid(live.id, "live", `"`+cid+`"`, 1)
		if m := a.expectServerAck(1, live.id); m.str("cid") != cid {
			t.Fatalf("server_ack %v, want cid %s", m, cid)
		}
		live.expectChat(a.id, "live")

		off := register(t, n.url)
		off.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n, off.id)
		a.chatCid(off.id, "queued", `"`+cid+`"`, 2)
		a.expectServerAck(2, off.id)
		off = login(t, n.url, off.id, off.pwd)
		m := off.expect("message")
		if m.str("msg") != "queued" || m.str("from") != a.id || m.str("cid") != cid {
			t.Fatalf("queued message %v, want cid %s", m, cid)
		}
	})
}

// An invalid cid is refused with bad_request (the connection stays open)
// and nothing is stored: the receiver's first message is the valid one
// sent after the refused ones.
func TestChatInvalidCidRefused(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		a := register(t, n.url)
		r := register(t, n.url)
		r.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n, r.id)
		for i, cid := range []string{`7`, `""`, `null`, `"a b"`, `"a/b"`, `"\u0041"`, `"<i>"`, `["a"]`,
			`"` + strings.Repeat("x", 65) + `"`} {
			a.chatCid(r.id, "refused", cid, 10+i)
			m := a.expect("message")
			if m.str("type") != "server_ack" || m.str("result") != "fail" || m.str("reason") != wire.BadRequest ||
				m.num("ack_id") != int64(10+i) || m["cid"] != nil {
				t.Fatalf("cid %s: %v, want fail bad_request with ack_id %d and no cid", cid, m, 10+i)
			}
		}
		a.chatCid(r.id, "kept", `"`+strings.Repeat("x", 64)+`"`, 1)
		a.expectServerAck(1, r.id)
		r = login(t, n.url, r.id, r.pwd)
		r.expectChat(a.id, "kept")
		if v := metricValue(t, n, `occase_request_errors_total{cmd="message",reason="bad_request"}`); v != 9 {
			t.Errorf("%v refusals counted, want 9", v)
		}
	})
}

// The case the cid exists for: the store of a message succeeds in Redis
// after the node gave up waiting (--redis-timeout) and answered
// unavailable; the client sends it again with the same cid and gets ok.
// The receiver gets both copies, under two msg_ids, with the one cid, and
// drops the second by (from, cid). The real server sleeps (DEBUG SLEEP
// blocks it whole) with the store's bytes in its socket, and runs the store
// when it wakes, though the node has long closed that connection.
// (CLIENT PAUSE would not do: a paused client whose connection closes is
// freed with its command unrun.)
func TestChatResendAfterUnavailableKeepsTheCid(t *testing.T) {
	r := brokertest.StartRedis(t, "--enable-debug-command", "yes")
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: 200 * time.Millisecond}
	n := startNode(t, opt)
	a := register(t, n.url)
	b := register(t, n.url)
	b.c.Close(websocket.StatusNormalClosure, "")
	waitOffline(t, n, b.id)

	// One message first, so the store script is loaded: the held call is
	// then the script itself, not an EVALSHA that finds no script.
	a.chatCid(b.id, "first", `"warm-up"`, 9)
	a.expectServerAck(9, b.id)

	const cid = `"resend-1"`
	sleepRedis(t, r, "3")
	a.chatCid(b.id, "twice on the wire", cid, 1)
	m := a.expect("message")
	if m.str("result") != "fail" || m.str("reason") != wire.Unavailable || m.str("cid") != "resend-1" {
		t.Fatalf("while Redis sleeps: %v, want fail unavailable with the cid", m)
	}
	// Answered once Redis is awake, after the held store ran.
	r.CLI(t, "PING")
	a.chatCid(b.id, "twice on the wire", cid, 2)
	if m := a.expectServerAck(2, b.id); m.str("cid") != "resend-1" {
		t.Fatalf("resend acked %v, want the cid", m)
	}

	b = login(t, n.url, b.id, b.pwd)
	b.expectChat(a.id, "first")
	first := b.expect("message")
	second := b.expect("message")
	for _, m := range []msg{first, second} {
		if m.str("msg") != "twice on the wire" || m.str("from") != a.id || m.str("cid") != "resend-1" {
			t.Fatalf("delivered %v, want the line with cid resend-1", m)
		}
	}
	if first.num("msg_id") >= second.num("msg_id") {
		t.Fatalf("msg_ids %d then %d: the copies must have distinct, increasing ids", first.num("msg_id"), second.num("msg_id"))
	}
}

// sleepRedis puts r to sleep for secs seconds (DEBUG SLEEP) and returns
// once it sleeps: when a PING on a connection of its own goes unanswered.
func sleepRedis(t *testing.T, r *brokertest.Redis, secs string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		out, err := exec.Command("redis-cli", "-u", "redis://"+r.Addr, "DEBUG", "SLEEP", secs).CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) != "OK" {
			err = fmt.Errorf("DEBUG SLEEP: %q", out)
		}
		done <- err
	}()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if _, err := rd.ReadString('\n'); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("redis did not go to sleep")
}
