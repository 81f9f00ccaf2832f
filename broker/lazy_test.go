package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"go.uber.org/zap/zaptest"
)

// Open succeeds while Redis is down (a node restarted during an outage
// used to exit): commands fail fast as unavailable, and once Redis is up
// the client connects by itself, commands and pub/sub work.
func TestOpenWhileRedisIsDown(t *testing.T) {
	r := brokertest.StartRedis(t)
	r.Stop()
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second}
	c, err := broker.Open(context.Background(), opt, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("Open while Redis is down: %v", err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Ping before the connection: %v, want unavailable", err)
	}
	if _, err := c.Publish(ctx, c.Key("x"), "y"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish before the connection: %v, want unavailable", err)
	}
	select {
	case <-c.Connected():
		t.Fatal("Connected before Redis was up")
	default:
	}
	r.Restart()
	select {
	case <-c.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not connect once Redis was up")
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after the connection: %v", err)
	}
	got := make(chan string, 1)
	c.Handle("lazy", func(_, payload string) { got <- payload })
	ch := c.Key("lazy")
	brokertest.Poll(t, 30*time.Second, "the subscription", func() bool { return c.Subscribe(ctx, ch) == nil })
	if _, err := c.Publish(ctx, ch, "hello"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "hello" {
			t.Fatalf("got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message on the subscription")
	}
}

// Close of a client still trying to connect returns, and may be called
// twice.
func TestCloseWhileConnecting(t *testing.T) {
	r := brokertest.StartRedis(t)
	r.Stop()
	c, err := broker.Open(context.Background(), broker.Options{Addrs: []string{r.Addr}, Timeout: time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
}

// A Redis that stops answering (CLIENT PAUSE holds every client) fails the
// calls of a session, made under a context that is never cancelled, as
// unavailable within the command timeout: they do not wait for it to
// answer again.
func TestStuckRedisFailsCallsWithinTheTimeout(t *testing.T) {
	r := brokertest.StartRedis(t)
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: 200 * time.Millisecond}
	c := brokertest.Open(t, opt)
	ctx := context.Background()
	id, err := c.CreateUser(ctx, "d", time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	// Paused far longer than the test waits (the Redis is stopped at the
	// end): a call that succeeds waited for the pause to end.
	r.CLI(t, "CLIENT", "PAUSE", "30000", "ALL")
	// Many at once, so that they are pipelined on one connection rather
	// than each waiting on its own read deadline.
	errs := make(chan error, 20)
	for i := 0; i < cap(errs); i++ {
		go func() {
			_, _, err := c.LoginFetch(ctx, id, broker.LoginRequest{})
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("login on a stuck Redis: %v, want unavailable", err)
		}
	}
	if err := c.Ping(ctx); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("ping on a stuck Redis: %v, want unavailable", err)
	}
}
