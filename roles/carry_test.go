package roles_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// A recipient that gets messages both ways at once, handed over by a
// sender on its own node and published by the store of a sender on
// another node: the two chains interleave, every gap makes the mailbox
// fetch, and it receives every message exactly once, each sender's in
// order, with increasing msg_ids; its queue ends empty.
func TestChatCarriedFromBothNodes(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1 := startNode(t, b.Options)
		n2 := startNode(t, b.Options)
		r := register(t, n1.url)
		local := register(t, n1.url)
		remote := register(t, n2.url)
		const each = 40
		var wg sync.WaitGroup
		for _, s := range []*client{local, remote} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; i <= each; i++ {
					s.chat(r.id, s.id+"-"+strconv.Itoa(i), i)
				}
			}()
		}
		wg.Wait()
		next := map[string]int{local.id: 1, remote.id: 1}
		var last int64
		for got := 0; got < 2*each; got++ {
			m := r.expect("message")
			from := m.str("from")
			if want := from + "-" + strconv.Itoa(next[from]); m.str("msg") != want {
				t.Fatalf("got %q from %s, want %q", m.str("msg"), from, want)
			}
			next[from]++
			if id := m.num("msg_id"); id <= last {
				t.Fatalf("msg_id %d after %d", id, last)
			} else {
				last = id
			}
		}
		for _, s := range []*client{local, remote} {
			for i := 1; i <= each; i++ {
				if m := s.expect("message"); m.str("result") != "ok" {
					t.Fatalf("server_ack %v", m)
				}
			}
		}
		bc := brokertest.Open(t, b.Options)
		brokertest.Poll(t, 10*time.Second, "the recipient's queue emptied", func() bool {
			n, _ := bc.QueueLen(t.Context(), r.id)
			return n == 0
		})
	})
}
