package push

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// TestWithChatQueue runs the hooks on frames exactly as the chat store
// script keeps them and the mailbox reads them back: a message fetched and
// written before the delay cancels its notification; one left in the queue
// gets one.
func TestWithChatQueue(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		clk := start()
		b := brokertest.Open(t, be.Options)
		n := newNode(t, b, clk)
		wp := startWebPush(t, n.s.VAPIDPublicKey)
		to, err := b.CreateUser(ctx, "d", clk.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		n.subscribe(t, to, wp.subscribe("u").request("push_subscribe"))
		opt := broker.StoreOptions{Cap: 100, TTLms: int64(time.Hour / time.Millisecond)}
		store := func(from, msg string) {
			members := []byte(`"from":"` + from + `","cmd":"message","type":"chat","to":"` + to + `","msg":"` + msg + `"`)
			id, err := b.StoreMessage(ctx, to, members, clk.Now().UnixMilli(), opt, false)
			if err != nil {
				t.Fatal(err)
			}
			frame := append(append([]byte(`{"msg_id":`+strconv.FormatInt(id, 10)+`,`), members...), '}')
			n.s.Schedule(ctx, to, from, frame)
		}
		store("50", "first")
		store("60", "second")
		// The mailbox writes the first one only.
		msgs, err := b.FetchMessages(ctx, to, 0, "", 1)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("fetch: %v %v", msgs, err)
		}
		n.s.Written(ctx, to, msgs)
		clk.Add(5 * time.Second)
		n.round()
		got := wp.received()
		if len(got) != 1 || got[0].Payload["from"] != "60" || got[0].Payload["preview"] != "second" {
			t.Fatalf("got %v, want one from 60", got)
		}
	})
}
