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
