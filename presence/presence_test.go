package presence

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"go.uber.org/zap/zaptest"
)

func TestChannelUser(t *testing.T) {
	tests := []struct {
		ch, want string
		ok       bool
	}{
		{"occase:c:{42}", "42", true},
		{"p:x:c:{7}", "7", true},
		{"occase:c:{42", "", false},
		{"occase:q:{42}", "", false},
	}
	for _, tt := range tests {
		got, ok := channelUser(tt.ch)
		if got != tt.want || ok != tt.ok {
			t.Errorf("channelUser(%q) = %q, %v", tt.ch, got, ok)
		}
	}
}

type peer struct {
	mu     sync.Mutex
	events []string
	ch     chan string
	ans    Answer // what it says to a kick (Owes: an older session)
}

func (p *peer) add(e string) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
	p.ch <- e
}
func (p *peer) Signal(f []byte) { p.add("signal " + string(f)) }
func (p *peer) Notify()         { p.add("notify") }
func (p *peer) Kick(gen int64) Answer {
	p.add("kick")
	return p.ans
}
func (p *peer) Released(g int64) { p.add("released") }

func TestRouting(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c1 := brokertest.Open(t, b.Options)
		c2 := brokertest.Open(t, b.Options)
		h1 := New(c1, zaptest.NewLogger(t))
		h2 := New(c2, zaptest.NewLogger(t))
		p := &peer{ch: make(chan string, 16)}
		if _, err := h1.Attach(ctx, "5", p); err != nil {
			t.Fatal(err)
		}
		want := func(e string) {
			t.Helper()
			select {
			case got := <-p.ch:
				if got != e {
					t.Fatalf("got %q, want %q", got, e)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no %q", e)
			}
		}
		// From the other node: through the channel; malformed ones dropped.
		if err := h2.Signal(ctx, "5", []byte(`{"from":"1"}`)); err != nil {
			t.Fatal(err)
		}
		want(`signal {"from":"1"}`)
		c2.Publish(ctx, c2.UserChannel("5"), "pnot json")
		c2.Publish(ctx, c2.UserChannel("5"), "n")
		want("notify")
		// A login on node 2 (attach, then kick): node 1's peer is kicked.
		q := &peer{ch: make(chan string, 16), ans: Own}
		if _, err := h2.Attach(ctx, "5", q); err != nil {
			t.Fatal(err)
		}
		if n, _ := kick(ctx, h2, "5", 3); n != 1 {
			t.Fatalf("kick reached %d other nodes, want 1", n)
		}
		want("kick")
		// Node 1 answers once its peer let go (detached); then, still
		// subscribed but without a live peer, it answers a kick with a
		// release by itself, so the login need not time out.
		h1.Detach(ctx, "5", p)
		h1.b.Subscribe(ctx, h1.b.UserChannel("5"))
		if n, _ := kick(ctx, h2, "5", 4); n != 1 {
			t.Fatalf("kick reached %d other nodes, want 1", n)
		}
		got := map[string]int{}
		for n := 0; n < 4; n++ {
			select {
			case e := <-q.ch:
				got[e]++
			case <-time.After(5 * time.Second):
				t.Fatalf("node 2's peer saw only %v", got)
			}
		}
		// Its own two kicks come back to it too; the session ignores kicks
		// of its own generation.
		if got["released"] != 2 || got["kick"] != 2 {
			t.Fatalf("node 2's peer saw %v, want 2 kicks and 2 releases", got)
		}
	})
}

type carrier struct{ peer }

func (c *carrier) Carry(prev, id int64, frame string) {
	c.add(fmt.Sprintf("carry %d %d %s", prev, id, frame))
}

// A carried chat message goes to a peer that takes it as it is; a peer
// that does not, or a payload that is not what the store script
// publishes, gets a notify (it fetches the queue).
func TestCarriedMessages(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c1 := brokertest.Open(t, b.Options)
		c2 := brokertest.Open(t, b.Options)
		h1 := New(c1, zaptest.NewLogger(t))
		p := &carrier{peer{ch: make(chan string, 16)}}
		q := &peer{ch: make(chan string, 16)}
		for _, x := range []Peer{p, q} {
			if _, err := h1.Attach(ctx, "5", x); err != nil {
				t.Fatal(err)
			}
		}
		want := func(ch chan string, e string) {
			t.Helper()
			select {
			case got := <-ch:
				if got != e {
					t.Fatalf("got %q, want %q", got, e)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no %q", e)
			}
		}
		// A peer that takes no carried messages (as every node before them
		// did, for any 'n') fetches instead: nodes of both kinds deliver
		// during a rolling upgrade.
		c2.Publish(ctx, c2.UserChannel("5"), `n7 {"msg_id":9,"from":"1"}`)
		want(p.ch, `carry 7 9 {"msg_id":9,"from":"1"}`)
		want(q.ch, "notify")
		for _, bad := range []string{"n", `n7{"msg_id":9,"from":"1"}`, `nx {"msg_id":9,"from":"1"}`, `n7 {"id":9}`, `n7 {"msg_id":9}`} {
			c2.Publish(ctx, c2.UserChannel("5"), bad)
			want(p.ch, "notify")
			want(q.ch, "notify")
		}
	})
}

// kickNode attaches peers of user "5" to a hub on one node, sends a kick
// of generation gen from a second node, and returns the first hub once
// the kick reached them, with its answers counted in *answers (under
// the hub's lock, as the hub makes them).
func kickNode(t *testing.T, b brokertest.Backend, gen int64, peers ...*peer) (*Hub, *int) {
	t.Helper()
	ctx := context.Background()
	h1 := New(brokertest.Open(t, b.Options), zaptest.NewLogger(t))
	h2 := New(brokertest.Open(t, b.Options), zaptest.NewLogger(t))
	answers := new(int)
	h1.answer = func(string, int64) { *answers++ }
	for _, p := range peers {
		if _, err := h1.Attach(ctx, "5", p); err != nil {
			t.Fatal(err)
		}
	}
	login := &peer{ch: make(chan string, 16), ans: Own}
	if _, err := h2.Attach(ctx, "5", login); err != nil {
		t.Fatal(err)
	}
	if n, _ := kick(ctx, h2, "5", gen); n < 1 {
		t.Fatalf("kick reached %d other nodes, want at least 1", n)
	}
	for _, p := range peers {
		select {
		case <-p.ch:
		case <-time.After(5 * time.Second):
			t.Fatal("the kick did not reach a peer")
		}
	}
	return h1, answers
}

// count reads *answers once the hub is done with what it is doing.
func count(h *Hub, answers *int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return *answers
}

// A node holding the user's live session and a login attempt not checked
// yet answers a newer login's kick once, after the live session let go,
// whatever order the two leave in (the attempt failing first is what an
// attacker timing a wrong password gets).
func TestKickAnsweredOncePerNode(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		live := &peer{ch: make(chan string, 16)}
		attempt := &peer{ch: make(chan string, 16)}
		h, answers := kickNode(t, b, 9, live, attempt)
		h.Detach(ctx, "5", attempt) // its password check failed
		if n := count(h, answers); n != 0 {
			t.Fatalf("%d releases before the live session let go, want 0", n)
		}
		h.Detach(ctx, "5", live) // handed back
		if n := count(h, answers); n != 1 {
			t.Fatalf("%d releases, want 1", n)
		}
		if len(h.gathers) != 0 {
			t.Fatalf("gathers left behind: %v", h.gathers)
		}
	})
}

// Two older sessions on one node kicked at once: one release, after both.
func TestKickOfTwoOlderSessionsAnsweredOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		s1 := &peer{ch: make(chan string, 16)}
		s2 := &peer{ch: make(chan string, 16)}
		h, answers := kickNode(t, b, 9, s1, s2)
		h.Detach(ctx, "5", s2)
		if n := count(h, answers); n != 0 {
			t.Fatalf("%d releases after one of two let go, want 0", n)
		}
		h.Detach(ctx, "5", s1)
		if n := count(h, answers); n != 1 {
			t.Fatalf("%d releases, want 1", n)
		}
	})
}

// A peer that owes the kick nothing (a newer session) does not hold the
// node's answer; one that is not checked yet and then learns a generation
// not older than the kick's (Claim) stops holding it.
func TestKickNotHeldByNewerPeers(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		newer := &peer{ch: make(chan string, 16), ans: Clear}
		h, answers := kickNode(t, b, 9, newer)
		if n := count(h, answers); n != 1 {
			t.Fatalf("%d releases from a node holding only a newer session, want 1", n)
		}
		attempt := &peer{ch: make(chan string, 16)}
		h, answers = kickNode(t, b, 9, attempt)
		if n, done := h.Claim("5", attempt, 12); n != 0 {
			t.Fatalf("claim: %d local peers owe, want 0", n)
		} else {
			<-done
		}
		if n := count(h, answers); n != 1 {
			t.Fatalf("%d releases after the attempt learnt it is newer, want 1", n)
		}
	})
}

// The node where the login runs answers its own kick to no one: the login
// waits for its older local sessions through Claim, whether the kick came
// through the channel before or after.
func TestClaimWaitsForLocalOlderSessions(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		h := New(brokertest.Open(t, b.Options), zaptest.NewLogger(t))
		answers := new(int)
		h.answer = func(string, int64) { *answers++ }
		old := &peer{ch: make(chan string, 16)}
		login := &peer{ch: make(chan string, 16), ans: Own}
		for _, p := range []*peer{old, login} {
			if _, err := h.Attach(ctx, "5", p); err != nil {
				t.Fatal(err)
			}
		}
		n, done := h.Claim("5", login, 4)
		if n != 1 {
			t.Fatalf("claim: %d local peers owe, want 1", n)
		}
		select {
		case <-done:
			t.Fatal("done before the older session let go")
		default:
		}
		// The kick comes through the channel too: no second wait, no release.
		if _, err := kick(ctx, h, "5", 4); err != nil {
			t.Fatal(err)
		}
		<-old.ch   // Claim's kick
		<-login.ch // the channel's (old got it too)
		h.Detach(ctx, "5", old)
		<-done
		if n := count(h, answers); n != 0 {
			t.Fatalf("%d releases of the login's own kick, want 0", n)
		}
		h.Detach(ctx, "5", login)
		if len(h.gathers) != 0 {
			t.Fatalf("gathers left behind: %v", h.gathers)
		}
	})
}

// kick announces a login of generation gen of user from h's node, as the
// login script does (broker.LoginFetch): it returns how many other nodes
// hold the user's channel (h's node is subscribed too and counts once).
func kick(ctx context.Context, h *Hub, user string, gen int64) (others int64, err error) {
	n, err := h.b.Publish(ctx, h.b.UserChannel(user), "k"+strconv.FormatInt(gen, 10))
	return max(n-1, 0), err
}

// genPeer records the generations of the releases it hears.
type genPeer struct {
	*peer
	gens chan int64
}

func (p *genPeer) Released(g int64) { p.gens <- g }

// A peer that owes two kicks (a login after another while it was still
// handing back) makes its node answer each kick once, naming the kick
// (r-<gen>): a login counts only the answer to its own kick, so the answer
// to the older one cannot stand in for another node's.
func TestEachKickAnsweredWithItsGeneration(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		h1 := New(brokertest.Open(t, b.Options), zaptest.NewLogger(t))
		h2 := New(brokertest.Open(t, b.Options), zaptest.NewLogger(t))
		old := &peer{ch: make(chan string, 16)}
		if _, err := h1.Attach(ctx, "5", old); err != nil {
			t.Fatal(err)
		}
		login := &genPeer{peer: &peer{ch: make(chan string, 16), ans: Own}, gens: make(chan int64, 16)}
		if _, err := h2.Attach(ctx, "5", login); err != nil {
			t.Fatal(err)
		}
		for _, gen := range []int64{2, 3} {
			if n, err := kick(ctx, h2, "5", gen); err != nil || n != 1 {
				t.Fatalf("kick %d reached %d other nodes (%v), want 1", gen, n, err)
			}
			select {
			case <-old.ch:
			case <-time.After(5 * time.Second):
				t.Fatalf("kick %d did not reach the older peer", gen)
			}
		}
		// Both kicks are in h1's hands once its lock is free after the
		// second: none answered while the peer is there.
		h1.mu.Lock()
		gathered := len(h1.gathers["5"])
		h1.mu.Unlock()
		if gathered != 2 {
			t.Fatalf("%d kicks gathered, want 2", gathered)
		}
		h1.Detach(ctx, "5", old)
		got := map[int64]int{}
		for len(got) < 2 {
			select {
			case g := <-login.gens:
				got[g]++
			case <-time.After(5 * time.Second):
				t.Fatalf("releases heard: %v, want r-2 and r-3", got)
			}
		}
		if got[-2] != 1 || got[-3] != 1 {
			t.Fatalf("releases heard: %v, want one answer to each kick (-2, -3)", got)
		}
	})
}

type noticer struct{ peer }

func (n *noticer) Notice(f []byte) { n.add("notice " + string(f)) }

// A notice ('o' and a JSON object) goes to a peer that takes notices and
// to no other; one that is not a whole JSON object with its id first is
// dropped (the session splices it into its own frame).
func TestNoticesRouted(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		h := New(c, zaptest.NewLogger(t))
		n := &noticer{peer{ch: make(chan string, 16)}}
		p := &peer{ch: make(chan string, 16)}
		for _, x := range []Peer{n, p} {
			if _, err := h.Attach(ctx, "9", x); err != nil {
				t.Fatal(err)
			}
		}
		c.Publish(ctx, c.UserChannel("9"), `onot json`)
		c.Publish(ctx, c.UserChannel("9"), `o{}`)                    // would make {"cmd":"notice",}
		c.Publish(ctx, c.UserChannel("9"), `o{"id":1,"kind":"post_`) // cut
		c.Publish(ctx, c.UserChannel("9"), `o{"kind":"x"}{"id":2}`)
		c.Publish(ctx, c.UserChannel("9"), `o{"id":1,"kind":"post_removed"}`)
		c.Publish(ctx, c.UserChannel("9"), "n") // a barrier: both peers get it
		for _, x := range []*peer{&n.peer, p} {
			var got []string
			for len(got) == 0 || got[len(got)-1] != "notify" {
				select {
				case e := <-x.ch:
					got = append(got, e)
				case <-time.After(5 * time.Second):
					t.Fatalf("saw only %v", got)
				}
			}
			want := []string{"notify"}
			if x == &n.peer {
				want = []string{`notice {"id":1,"kind":"post_removed"}`, "notify"}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	})
}
