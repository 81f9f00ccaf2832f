package posts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

// fakeConn records the frames a connection was sent, in order.
type fakeConn struct {
	user string
	addr string // Client(): "" (no per-address budget) unless a test sets it
	mu   sync.Mutex
	got  []string
	sig  chan struct{}
}

func newConn(user string) *fakeConn {
	return &fakeConn{user: user, sig: make(chan struct{}, 1)}
}

func (c *fakeConn) User() string { return c.user }

func (c *fakeConn) SendLive(frame []byte) bool { return c.Send(frame) }

func (c *fakeConn) Send(frame []byte) bool {
	c.mu.Lock()
	c.got = append(c.got, string(frame))
	c.mu.Unlock()
	select {
	case c.sig <- struct{}{}:
	default:
	}
	return true
}

func (c *fakeConn) SendPersistent(frame []byte) bool { return c.Send(frame) }

func (c *fakeConn) Client() string { return c.addr }

func (c *fakeConn) frames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

// wait returns once the connection holds at least n frames.
func (c *fakeConn) wait(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if f := c.frames(); len(f) >= n {
			return f
		}
		select {
		case <-c.sig:
		case <-deadline:
			t.Fatalf("user %s: %d frames after 10 s, want %d: %v", c.user, len(c.frames()), n, c.frames())
		}
	}
}

// clock is an injected clock that tests move by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// node is one running Service, as one occase node runs it.
type node struct {
	*Service
	b       *broker.Client
	applied chan struct{}
}

// startNode starts a Service on backend b and waits for its first load.
func startNode(t testing.TB, opt broker.Options, cfg Config) *node {
	t.Helper()
	bc := brokertest.Open(t, opt)
	s, err := New(cfg, bc, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Service: s, b: bc, applied: make(chan struct{}, 1)}
	s.applied = func() {
		select {
		case n.applied <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.ready:
	case err := <-done:
		t.Fatalf("Run ended before loading: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the index did not load")
	}
	return n
}

// until waits, event by event, for cond to hold on node n.
func (n *node) until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-n.applied:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (n *node) has(id uint64) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	_, ok := n.x.byID[id]
	return ok
}

func (n *node) size() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.x.len()
}

func publishFrame(loc, prod string, features int, ranges string) string {
	return `{"cmd":"publish","items":[{"body":"{\"msg\":\"hi\"}","to":[[` + loc + `],[` + prod + `]],"features":` +
		itoa(features) + `,"range_values":[` + ranges + `]}]}`
}

func itoa(i int) string { return strconv.Itoa(i) }

// publish publishes through n on behalf of c and returns the acked id.
func (n *node) publish(t testing.TB, c *fakeConn, frame string) uint64 {
	t.Helper()
	before := len(c.frames())
	if err := n.Publish(context.Background(), c, req(t, frame)); err != nil {
		t.Fatalf("publish %s: %v", frame, err)
	}
	f := c.frames()
	if len(f) <= before {
		t.Fatal("publish sent no ack")
	}
	var ack struct {
		Cmd, Result string
		ID          uint64
	}
	if err := json.Unmarshal([]byte(f[before]), &ack); err != nil || ack.Cmd != "publish_ack" || ack.Result != "ok" {
		t.Fatalf("first frame after publish: %s", f[before])
	}
	return ack.ID
}

// items decodes a post frame's ids.
func items(t testing.TB, frame string) []uint64 {
	t.Helper()
	var m struct {
		Cmd   string
		Items []struct{ ID uint64 }
	}
	if err := json.Unmarshal([]byte(frame), &m); err != nil || m.Cmd != "post" {
		t.Fatalf("not a post frame: %s", frame)
	}
	ids := make([]uint64, len(m.Items))
	for i, it := range m.Items {
		ids[i] = it.ID
	}
	return ids
}

func reason(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Reason
	}
	return "none"
}

// beyondTheBound starts two nodes of cfg, the second (n) bounded to three
// posts (MaxPosts), has seller "7" publish six posts (mine, oldest first)
// and user "8" one (other) through a, and waits until n holds the newest:
// the start of the tests of My listings beyond a node's bound.
func beyondTheBound(t *testing.T, opt broker.Options, cfg Config) (a, n *node, seller *fakeConn, mine []uint64, other uint64) {
	t.Helper()
	a = startNode(t, opt, cfg)
	small := cfg
	small.MaxPosts = 3
	n = startNode(t, opt, small)
	seller = newConn("7")
	for i := range 6 {
		mine = append(mine, a.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, fmt.Sprint(10+i))))
	}
	other = a.publish(t, newConn("8"), publishFrame("[0,1,2]", "[0,3,7]", 1, "99"))
	n.until(t, "the newest posts on the small node", func() bool { return n.has(other) && n.has(mine[5]) })
	return a, n, seller, mine, other
}
