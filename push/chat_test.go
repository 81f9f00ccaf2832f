package push

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

// liveWriter is a connection that writes every frame at once.
type liveWriter struct {
	mu     sync.Mutex
	frames []string
}

func (w *liveWriter) SendTracked(frame []byte, done func(error)) bool {
	w.mu.Lock()
	w.frames = append(w.frames, string(frame))
	w.mu.Unlock()
	go done(nil)
	return true
}

func (w *liveWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.frames)
}

// TestChatCountsInStore runs push as the server wires it
// (chat.Config.OnStored = Due): the store script counts the message, Due
// makes it due, and the removal of written messages clears the count and
// cancels the due notification. A message left in the queue is notified;
// one written live within the delay is not, even when its Due comes after
// the write; receipts never are.
func TestChatCountsInStore(t *testing.T) {
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
		// late holds back Due calls while set: the write beats them.
		var mu sync.Mutex
		var late []func()
		hold := false
		cs := chat.New(chat.Config{Clock: clk.Now, OnStored: func(ctx context.Context, to, from string, frame []byte, count int64) {
			mu.Lock()
			defer mu.Unlock()
			if hold {
				late = append(late, func() { n.s.Due(ctx, to, from, frame, count) })
				return
			}
			n.s.Due(ctx, to, from, frame, count)
		}}, b, zaptest.NewLogger(t))
		send := func(from, typ, msg string) {
			t.Helper()
			req, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","type":%q,"to":%q,"msg":%q,"nick":"N%s"}`, typ, to, msg, from)))
			m, err := cs.Prepare(from, req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cs.Store(ctx, m, false); err != nil {
				t.Fatal(err)
			}
		}
		waiting := func() int64 {
			_, w, err := b.ClaimPushes(ctx, 0, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		deliver := func(want int) {
			t.Helper()
			w := &liveWriter{}
			mb := cs.Mailbox(to, w)
			mb.Poke()
			brokertest.Poll(t, 5*time.Second, "the queue written and removed", func() bool {
				l, _ := b.QueueLen(ctx, to)
				return w.count() == want && l == 0
			})
			mb.Close(ctx)
		}

		// Written live within the delay: counted, made due, cancelled by
		// the removal.
		send("60", "chat", "read at once")
		if w := waiting(); w != 1 {
			t.Fatalf("%d notifications due after a message to a user with a device, want 1", w)
		}
		deliver(1)
		if w := waiting(); w != 0 {
			t.Fatalf("%d notifications due after the message was written, want 0", w)
		}
		// The write beats Due: the late due entry finds no count.
		mu.Lock()
		hold = true
		mu.Unlock()
		send("70", "chat", "raced")
		deliver(1)
		mu.Lock()
		hold = false
		for _, f := range late {
			f()
		}
		mu.Unlock()
		// That late entry is due at T+5. A new message of 70 at T+4 is
		// not notified then (before its own delay) but at T+9.
		clk.Add(4 * time.Second)
		send("70", "chat", "later")
		// Left in the queue: notified after the delay, with its count;
		// a receipt adds nothing.
		send("50", "chat", "first")
		send("50", "chat", "second")
		send("50", "app_ack_read", "")
		clk.Add(4 * time.Second)
		n.round()
		if got := wp.received(); len(got) != 0 {
			t.Fatalf("sent before the delay: %v", got)
		}
		clk.Add(time.Second)
		n.round()
		got := wp.received()
		from := map[string]float64{}
		for _, r := range got {
			from[r.Payload["from"].(string)] = r.Payload["count"].(float64)
		}
		if len(got) != 2 || from["50"] != 2 || from["70"] != 1 {
			t.Fatalf("got %v, want one from 50 counting 2 and one from 70 counting 1", got)
		}
		if w := waiting(); w != 0 {
			t.Fatalf("%d notifications still due", w)
		}
	})
}
