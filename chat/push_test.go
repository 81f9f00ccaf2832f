package chat_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

// scriptCalls reads the broker's instrumentation: script calls by name
// (chat_store, chat_remove, push_schedule, ...).
func scriptCalls(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "occase_redis_command_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); l.GetName() == "cmd" && (strings.HasPrefix(v, "chat_") || strings.HasPrefix(v, "push_") || v == "script") {
					out[v] += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return out
}

func diff(after, before map[string]uint64) (map[string]uint64, uint64) {
	d := map[string]uint64{}
	var total uint64
	for k, v := range after {
		if v > before[k] {
			d[k] = v - before[k]
			total += v - before[k]
		}
	}
	return d, total
}

// TestPushCostsNoCallWithoutDevice: with push notifications on, a message
// to a user without a push device costs exactly one script call (the
// store), and its delivery no push call either; a user with a device gets
// each message counted in that same call, and the removal of written
// messages clears the count in its own call.
func TestPushCostsNoCallWithoutDevice(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		opt := b.Options
		opt.Metrics = reg
		bc := brokertest.Open(t, opt)
		var mu sync.Mutex
		var hooked []string
		s := chat.New(chat.Config{OnStored: func(_ context.Context, to, from string, frame []byte, count int64) {
			mu.Lock()
			hooked = append(hooked, fmt.Sprintf("%s %s %d %s", to, from, count, frame))
			mu.Unlock()
		}}, bc, zaptest.NewLogger(t))
		hooks := func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), hooked...)
		}
		to, err := bc.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		send := func(from, typ string, notify bool) {
			t.Helper()
			req, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","type":%q,"to":%q,"msg":"hi"}`, typ, to)))
			m, err := s.Prepare(from, req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Store(ctx, m, notify); err != nil {
				t.Fatal(err)
			}
		}

		// Offline, no device: one call per message, nothing for push.
		// (The first call loads the script: EVALSHA, NOSCRIPT, EVAL.)
		send("50", "chat", false)
		const n = 5
		before := scriptCalls(t, reg)
		for i := 0; i < n; i++ {
			send("50", "chat", false)
		}
		d, total := diff(scriptCalls(t, reg), before)
		if total != n || d["chat_store"] != n {
			t.Fatalf("%d messages to a user without a device made script calls %v, want %d chat_store only", n, d, n)
		}

		// Delivered live: the removals carry no push call.
		w := newWriter(0)
		mb := s.Mailbox(to, w)
		defer mb.Close(ctx)
		before = scriptCalls(t, reg)
		mb.Poke()
		waitWrites(t, w.wrote, n+1)
		brokertest.Poll(t, 5*time.Second, "the written messages removed", func() bool {
			l, _ := bc.QueueLen(ctx, to)
			return l == 0
		})
		d, _ = diff(scriptCalls(t, reg), before)
		for k := range d {
			if strings.HasPrefix(k, "push_") {
				t.Fatalf("delivering to a user without a device made push calls: %v", d)
			}
		}
		if h := hooks(); len(h) != 0 {
			t.Fatalf("OnStored called for a user without a device: %q", h)
		}

		// With a device: counted in the store call, the hook called
		// with the stored frame; receipts are not counted.
		if _, err := bc.AddPushDevice(ctx, to, "w:1", `{}`, 10, int64(time.Hour/time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		mb.Close(ctx)
		before = scriptCalls(t, reg)
		send("50", "chat", false)
		send("50", "chat", false)
		send("60", "app_ack_read", false)
		d, total = diff(scriptCalls(t, reg), before)
		if total != 3 || d["chat_store"] != 3 {
			t.Fatalf("3 messages made script calls %v, want 3 chat_store only (the hook is a fake)", d)
		}
		h := hooks()
		if len(h) != 2 || !strings.HasPrefix(h[0], to+" 50 1 {\"msg_id\":") || !strings.HasPrefix(h[1], to+" 50 2 {") || !strings.Contains(h[1], `"from":"50"`) {
			t.Fatalf("OnStored calls %q, want two for sender 50, counting 1 and 2", h)
		}
		if c, _, err := bc.LoadPush(ctx, to, "50"); err != nil || c != 2 {
			t.Fatalf("push count of 50: %d %v, want 2", c, err)
		}
		if c, _, _ := bc.LoadPush(ctx, to, "60"); c != 0 {
			t.Fatalf("a receipt was counted: %d", c)
		}

		// Written live: the removal clears the count.
		w2 := newWriter(0)
		mb2 := s.Mailbox(to, w2)
		defer mb2.Close(ctx)
		mb2.Poke()
		waitWrites(t, w2.wrote, 3)
		brokertest.Poll(t, 5*time.Second, "the count cleared by the removal", func() bool {
			c, _, _ := bc.LoadPush(ctx, to, "50")
			l, _ := bc.QueueLen(ctx, to)
			return c == 0 && l == 0
		})
	})
}
