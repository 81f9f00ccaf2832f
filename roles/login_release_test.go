package roles_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

// hold stops the first hook call it is armed for (of its user, when one is
// given) until opened.
type hold struct {
	user    string
	armed   atomic.Bool
	fired   atomic.Bool
	entered chan struct{}
	release chan struct{}
	opened  sync.Once
}

func newHold(t *testing.T) *hold {
	h := &hold{entered: make(chan struct{}), release: make(chan struct{})}
	// Nothing stays held once the test is over (the nodes' shutdowns
	// call the hooks too).
	t.Cleanup(h.open)
	return h
}

// arm makes the next call of user ("": any) the one held.
func (h *hold) arm(user string) {
	h.user = user
	h.armed.Store(true)
}

// at is the hook.
func (h *hold) at(user string) {
	if !h.armed.Load() || (h.user != "" && user != h.user) || !h.fired.CompareAndSwap(false, true) {
		return
	}
	close(h.entered)
	<-h.release
}

func (h *hold) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

func (h *hold) open() { h.opened.Do(func() { close(h.release) }) }

// event is a frame a client got, or (m nil) how its connection ended.
type event struct {
	m    msg
	code websocket.StatusCode
}

// stream reads c on a goroutine of its own, without deadlines (an expired
// read would close the connection), so that a test can wait for a frame
// that must not come.
func (c *client) stream() <-chan event {
	ch := make(chan event, 64)
	go func() {
		for {
			_, b, err := c.c.Read(context.Background())
			if err != nil {
				ch <- event{code: websocket.CloseStatus(err)}
				return
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			var m msg
			if dec.Decode(&m) != nil {
				m = msg{"cmd": "non-JSON " + string(b)}
			}
			ch <- event{m: m}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan event) event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("nothing came")
	}
	return event{}
}

// A newer login waits for one release per other node that holds its
// user's channel. Each node must answer once, when everything it held of
// the user has handed back, however many of its connections the kick
// reached: here node A holds the user's live session and a wrong-password
// attempt at the user whose script is in flight, and node C holds either
// another such attempt or an older session still handing back (it owes
// the kick of the login that replaced it and the newer one). The newer
// login, on node B, must not start while A's session has not handed back,
// even once everything else has answered: two answers from A (the
// attempt's and the session's), or two from C (one per kick), used to let
// it start early.
func TestOneReleasePerNodePerKick(t *testing.T) {
	for _, on := range []string{"attempt", "older session"} {
		t.Run("C holds an "+on, func(t *testing.T) {
			brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
				testOneReleasePerNodePerKick(t, b, on == "older session")
			})
		})
	}
}

func testOneReleasePerNodePerKick(t *testing.T, b brokertest.Backend, olderOnC bool) {
	// A's own login waits no longer than this for C (whose older session
	// is held); B's login waits for the releases alone.
	na := startNode(t, b.Options, func(c *roles.Config) { c.DisplaceTimeout = 200 * time.Millisecond })
	nb := startNode(t, b.Options, func(c *roles.Config) { c.DisplaceTimeout = time.Minute })
	nc := startNode(t, b.Options)
	aLeave, aLogin, cLeave, cLogin := newHold(t), newHold(t), newHold(t), newHold(t)
	// A shutdown held after posts.Leave is before its detach: the session
	// has not handed back, its node not answered.
	na.srv.AfterPostsLeave(aLeave.at)
	nc.srv.AfterPostsLeave(cLeave.at)
	na.srv.BeforeLoginScript(func() { aLogin.at("") })
	nc.srv.BeforeLoginScript(func() { cLogin.at("") })

	sender := register(t, nb.url)
	var u, older *client
	if olderOnC {
		// The user's older session on C is replaced by a login on A, and
		// its shutdown held: A's login starts after its displace timeout,
		// as if C had died.
		older = register(t, nc.url)
		cLeave.arm(older.id)
		u = login(t, na.url, older.id, older.pwd)
		cLeave.wait(t, "the older session's shutdown on C")
	} else {
		u = register(t, na.url)
	}
	for i := 0; i < 3; i++ {
		sender.chat(u.id, fmt.Sprint("m", i), i)
		sender.expectServerAck(i, u.id)
		u.expectChat(sender.id, fmt.Sprint("m", i))
	}

	// Wrong-password attempts at u, attached, their scripts not run yet.
	aLogin.arm("")
	wa := dial(t, na.url)
	wa.send(`{"cmd":"login","user":"` + u.id + `","password":"wrong-password-a"}`)
	aLogin.wait(t, "the attempt on A")
	var wc *client
	if !olderOnC {
		cLogin.arm("")
		wc = dial(t, nc.url)
		wc.send(`{"cmd":"login","user":"` + u.id + `","password":"wrong-password-c"}`)
		cLogin.wait(t, "the attempt on C")
	}

	// The newer login on B: its kick reaches A's session, whose
	// shutdown is held before it hands back.
	aLeave.arm(u.id)
	newer := dial(t, nb.url)
	events := newer.stream()
	newer.send(`{"cmd":"login","user":"` + u.id + `","password":"` + u.pwd + `"}`)
	aLeave.wait(t, "the kick of A's session")

	// Everything but A's session lets go: the attempts fail, C's older
	// session finishes its shutdown.
	aLogin.open()
	if m := wa.expect("login_ack"); m.str("result") != "fail" || m.str("reason") != wire.BadCredentials {
		t.Fatalf("attempt on A: %v, want fail bad_credentials", m)
	}
	if code := wa.closed(); code != wire.CloseBadCredentials {
		t.Fatalf("attempt on A closed with %d, want %d", code, wire.CloseBadCredentials)
	}
	if olderOnC {
		cLeave.open()
		if code := older.closed(); code != wire.CloseReplaced {
			t.Fatalf("older session on C closed with %d, want %d", code, wire.CloseReplaced)
		}
	} else {
		cLogin.open()
		if m := wc.expect("login_ack"); m.str("result") != "fail" || m.str("reason") != wire.BadCredentials {
			t.Fatalf("attempt on C: %v, want fail bad_credentials", m)
		}
		if code := wc.closed(); code != wire.CloseBadCredentials {
			t.Fatalf("attempt on C closed with %d, want %d", code, wire.CloseBadCredentials)
		}
	}
	// What does not come: the newer login starts only once A has
	// answered, which it cannot before its session detached. (A window,
	// not a synchronisation: the correct code never answers in it; the
	// old one answered within milliseconds of the attempts' refusals.)
	select {
	case e := <-events:
		t.Fatalf("the newer login got %v (closed %d) while node A's session had not handed back", e.m, e.code)
	case <-time.After(750 * time.Millisecond):
	}

	aLeave.open()
	if code := u.closed(); code != wire.CloseReplaced {
		t.Fatalf("A's session closed with %d, want %d", code, wire.CloseReplaced)
	}
	if e := next(t, events); e.m.str("cmd") != "login_ack" || e.m.str("result") != "ok" {
		t.Fatalf("newer login got %v (closed %d), want login_ack ok", e.m, e.code)
	}
	// What A's session delivered stays delivered: the newer session's
	// first message is the next one sent, once.
	sender.chat(u.id, "after", 3)
	sender.expectServerAck(3, u.id)
	e := next(t, events)
	if e.m.str("cmd") != "message" || e.m.str("msg") != "after" || u.seen[e.m.num("msg_id")] {
		t.Fatalf("newer session got %v (closed %d), want the chat \"after\" with a new msg_id", e.m, e.code)
	}
	sender.chat(u.id, "last", 4)
	sender.expectServerAck(4, u.id)
	if e := next(t, events); e.m.str("msg") != "last" {
		t.Fatalf("newer session got %v (closed %d), want the chat \"last\" (no repeat)", e.m, e.code)
	}
}
