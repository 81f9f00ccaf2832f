package presence

import (
	"context"
	"fmt"
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
}

func (p *peer) add(e string) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
	p.ch <- e
}
func (p *peer) Signal(f []byte)  { p.add("signal " + string(f)) }
func (p *peer) Notify()          { p.add("notify") }
func (p *peer) Kick(gen int64)   { p.add("kick") }
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
		q := &peer{ch: make(chan string, 16)}
		if _, err := h2.Attach(ctx, "5", q); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := h2.Kick(ctx, "5", 3); n != 1 {
			t.Fatalf("kick reached %d other nodes, want 1", n)
		}
		want("kick")
		// Node 1 still subscribed but without a live peer: it answers a
		// kick with a release by itself, so the login need not time out.
		h1.Detach(ctx, "5", p)
		h1.b.Subscribe(ctx, h1.b.UserChannel("5"))
		if n, _, _ := h2.Kick(ctx, "5", 4); n != 1 {
			t.Fatalf("kick reached %d other nodes, want 1", n)
		}
		got := map[string]int{}
		for n := 0; n < 3; n++ {
			select {
			case e := <-q.ch:
				got[e]++
			case <-time.After(5 * time.Second):
				t.Fatalf("node 2's peer saw only %v", got)
			}
		}
		// Its own two kicks come back to it too; the session ignores kicks
		// of its own generation.
		if got["released"] != 1 || got["kick"] != 2 {
			t.Fatalf("node 2's peer saw %v, want kick and released", got)
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
