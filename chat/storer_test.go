package chat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

// Many senders at once: their messages go to Redis gathered in fewer calls
// than messages, and still each is answered as if stored alone. To the
// small queue, exactly its cap are acknowledged and the rest refused with
// queue_full; to the large one every message is acknowledged; every
// acknowledged message is in its queue, each sender's in the order sent,
// with increasing ids; nothing refused is.
func TestStoresGatheredKeepResultsAndOrder(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		const capSmall, senders, each = 10, 16, 12
		s := chat.New(chat.Config{QueueCap: 1000, QueueSenderShare: 1000}, bc, zaptest.NewLogger(t))
		small := chat.New(chat.Config{QueueCap: capSmall, QueueSenderShare: capSmall}, bc, zaptest.NewLogger(t))
		now := time.Now().UnixMilli()
		big, _ := bc.CreateUser(ctx, "d", now)
		tiny, _ := bc.CreateUser(ctx, "d", now)
		type ack struct {
			from string
			n    int
			id   int64
		}
		var mu sync.Mutex
		var bigAcks []ack
		tinyAcks, tinyFull := 0, 0
		var wg sync.WaitGroup
		for g := 0; g < senders; g++ {
			wg.Add(1)
			go func(from string) {
				defer wg.Done()
				var last int64
				for i := 0; i < each; i++ {
					// Every other message goes to the small queue, through a
					// service of its own (its cap), sharing the broker.
					to, svc := big, s
					if i%2 == 1 {
						to, svc = tiny, small
					}
					r, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q,"n":%d}`, to, i)))
					m, err := svc.Prepare(from, r)
					if err != nil {
						t.Error(err)
						return
					}
					reply, err := svc.Store(ctx, m, false)
					mu.Lock()
					switch {
					case to == tiny && err == nil:
						tinyAcks++
					case to == tiny && wire.AsError(err).Reason == wire.QueueFull:
						tinyFull++
					case err != nil:
						t.Errorf("message %d of %s to %s: %v", i, from, to, err)
					default:
						var a struct {
							Result string `json:"result"`
							MsgID  int64  `json:"msg_id"`
						}
						if json.Unmarshal(reply, &a) != nil || a.Result != "ok" || a.MsgID <= last {
							t.Errorf("reply %s after id %d", reply, last)
						}
						last = a.MsgID
						bigAcks = append(bigAcks, ack{from, i, a.MsgID})
					}
					mu.Unlock()
				}
			}(fmt.Sprint(100 + g))
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if tinyAcks != capSmall || tinyFull != senders*each/2-capSmall {
			t.Fatalf("small queue: %d acknowledged, %d refused; want %d, %d", tinyAcks, tinyFull, capSmall, senders*each/2-capSmall)
		}
		if n, _ := bc.QueueLen(ctx, tiny); n != capSmall {
			t.Fatalf("small queue holds %d, want %d", n, capSmall)
		}
		msgs, err := bc.FetchMessages(ctx, big, 0, "", 1000)
		if err != nil || len(msgs) != len(bigAcks) {
			t.Fatalf("large queue holds %d (%v), want the %d acknowledged", len(msgs), err, len(bigAcks))
		}
		ids := map[int64]ack{}
		for _, a := range bigAcks {
			ids[a.id] = a
		}
		next := map[string]int{}
		var prev int64
		for _, f := range msgs {
			var m struct {
				MsgID int64  `json:"msg_id"`
				From  string `json:"from"`
				N     int    `json:"n"`
			}
			if err := json.Unmarshal([]byte(f), &m); err != nil {
				t.Fatal(err)
			}
			a, ok := ids[m.MsgID]
			if !ok || a.from != m.From || a.n != m.N || m.MsgID <= prev {
				t.Fatalf("queued %s: not the acknowledged %+v, or out of order", f, a)
			}
			if m.N != next[m.From] {
				t.Fatalf("sender %s: message %d queued where %d was due", m.From, m.N, next[m.From])
			}
			next[m.From] += 2
			prev = m.MsgID
		}
		calls := s.Stats().StoreCalls + small.Stats().StoreCalls
		t.Logf("%d store calls for %d messages", calls, senders*each)
		if calls >= senders*each {
			t.Fatalf("%d store calls for %d messages: none gathered", calls, senders*each)
		}
	})
}

// A gathered call that fails fails every message it carried: each sender
// gets an error (unavailable), none an acknowledgement.
func TestStoresGatheredFailTogether(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		if b.Redis == nil {
			t.Skip("needs a server to stop")
		}
		ctx := context.Background()
		opt := b.Options
		opt.Timeout = 500 * time.Millisecond
		bc := brokertest.Open(t, opt)
		s := chat.New(chat.Config{}, bc, zaptest.NewLogger(t))
		to, _ := bc.CreateUser(ctx, "d", time.Now().UnixMilli())
		b.Redis.Stop()
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(from string) {
				defer wg.Done()
				r, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q}`, to)))
				m, err := s.Prepare(from, r)
				if err != nil {
					t.Error(err)
					return
				}
				reply, err := s.Store(ctx, m, true)
				if reply != nil || wire.AsError(err).Reason != wire.Unavailable {
					t.Errorf("sender %s with Redis gone: %s, %v; want unavailable", from, reply, err)
				}
			}(fmt.Sprint(100 + g))
		}
		wg.Wait()
	})
}
