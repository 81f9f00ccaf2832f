package roles_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
)

// Redis restarts under two nodes (its data kept on disk): both re-subscribe
// their users, and chat between the nodes is live again without a new login.
func TestRedisRestartResubscribesUsers(t *testing.T) {
	r := brokertest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second}
	n1 := startNode(t, opt)
	n2 := startNode(t, opt)
	a := register(t, n1.url)
	b := register(t, n2.url)
	a.chat(b.id, "before", 1)
	a.expectServerAck(1, b.id)
	b.expectChat(a.id, "before")

	r.Restart()
	// Until both nodes are subscribed again a message may fail fast
	// (unavailable) or wait in the queue; it must arrive live once they are.
	deadline := time.Now().Add(20 * time.Second)
	for i := 2; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("chat did not recover after the Redis restart")
		}
		a.chat(b.id, "after", i)
		// A reply comes fast (ok, or unavailable in well under a second);
		// the generous bound only absorbs a heavily loaded machine.
		m, err := a.tryRecv(15 * time.Second)
		if err != nil {
			t.Fatalf("no reply to a chat message after the restart: %v", err)
		}
		if m.str("cmd") == "message" && m.str("result") == "ok" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.expectChat(a.id, "after")
	a.send(`{"cmd":"presence","to":"` + b.id + `","type":"writing"}`)
	if m := b.expect("presence"); m.str("from") != a.id {
		t.Fatalf("presence after restart: %v", m)
	}
}

// Garbage read back from Redis (a foreign element in a queue, malformed
// signals on a user's channel) is logged and skipped: the node keeps
// delivering and never stalls.
func TestGarbageFromRedisIsSkipped(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, bk brokertest.Backend) {
		n := startNode(t, bk.Options)
		a := register(t, n.url)
		u := register(t, n.url)
		raw := brokertest.Open(t, bk.Options)
		ctx := context.Background()
		for _, p := range []string{"", "k", "kNaN", "r1x", "z???", "p{not json", "p{\"from\":\"\xff\"}"} {
			if _, err := raw.Publish(ctx, raw.UserChannel(u.id), p); err != nil {
				t.Fatal(err)
			}
		}
		for _, g := range []string{"garbage", `{"msg_id":99999999999,"broken`, `[1,2]`, `{"cmd":"message","msg":"forged"}`, "{\"msg_id\":99999999998,\"msg\":\"\xc3\"}", ""} {
			if err := raw.RawPush(ctx, u.id, g); err != nil {
				t.Fatal(err)
			}
		}
		a.chat(u.id, "real", 1)
		a.expectServerAck(1, u.id)
		// None of the planted elements reaches the client: the first
		// frame is the real message.
		u.expectChat(a.id, "real")
		a.chat(u.id, "again", 2)
		a.expectServerAck(2, u.id)
		u.expectChat(a.id, "again")
	})
}

// A peer that stops reading while messages keep coming: once a write has
// been stuck for the write timeout, the node drops the connection (nothing
// is lost: the messages wait in Redis) and serves everybody else.
func TestStalledReaderIsDropped(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.WriteTimeout = 300 * time.Millisecond
			// Queue limits out of reach: only the write timeout can act.
			c.SendQueue, c.SendQueueBytes = 1<<20, 1<<30
			c.Chat.MaxMessage = 64 << 10
			c.Chat.QueueCap = 100000
		})
		a := register(t, n.url)
		stuck := register(t, n.url) // never reads again
		big := strings.Repeat("x", 60<<10)
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; n.srv.Online(stuck.id); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("the stalled reader is still connected after %d messages of %d KiB", i, len(big)>>10)
			}
			a.chat(stuck.id, big, i)
			a.expect("message")
		}
		// The others are unaffected.
		c := register(t, n.url)
		a.chat(c.id, "still serving", 1)
		a.expectServerAck(1, c.id)
		c.expectChat(a.id, "still serving")
	})
}
