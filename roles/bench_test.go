package roles_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
)

// BenchmarkChatAcrossNodes sends b.N chat messages from users on one node
// to users on another, through one real Redis, and waits until every one is
// delivered and acknowledged. It reports delivered messages per second;
// allocations are per message, servers and the in-process test clients
// together. scripts/bench-chat.sh runs it next to redis-benchmark on the
// same Redis, so the figure is a ratio. OCCASE_BENCH_REDIS=host:port uses
// an existing Redis instead of starting one; OCCASE_BENCH_PAIRS sets the
// number of sender/receiver pairs (32).
//
// It runs twice on the same Redis: with the default write batching, and
// with --write-batch=1 (every frame its own write(2)) as the baseline; the
// senders pipeline, so acknowledgements and deliveries queue up and the
// difference shows. frames/write is what each write(2) carried.
func BenchmarkChatAcrossNodes(b *testing.B) {
	addr := os.Getenv("OCCASE_BENCH_REDIS")
	if addr == "" {
		addr = brokertest.StartRedis(b).Addr
	}
	for _, batch := range []int{roles.DefaultConfig().WriteBatch, 1} {
		b.Run(fmt.Sprintf("write-batch=%d", batch), func(b *testing.B) {
			benchChat(b, broker.Options{Addrs: []string{addr}, Prefix: brokertest.Prefix()}, batch)
		})
	}
}

func benchChat(b *testing.B, opt broker.Options, batch int) {
	wb := func(c *roles.Config) { c.WriteBatch = batch }
	n1 := startNode(b, opt, wb)
	n2 := startNode(b, opt, wb)
	pairs := 32
	if v, err := strconv.Atoi(os.Getenv("OCCASE_BENCH_PAIRS")); err == nil && v > 0 {
		pairs = v
	}
	senders := make([]*client, pairs)
	receivers := make([]*client, pairs)
	for i := range pairs {
		senders[i] = register(b, n1.url)
		receivers[i] = register(b, n2.url)
	}
	frames := make([][]byte, pairs)
	for i := range pairs {
		frames[i] = []byte(fmt.Sprintf(`{"cmd":"message","type":"chat","to":%q,"msg":"Is it still available?","post_id":17,"is_sender_post":false,"id":1}`, receivers[i].id))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, 3*pairs)
	for i := range pairs {
		n := b.N / pairs
		if i < b.N%pairs {
			n++
		}
		if n == 0 {
			continue
		}
		wg.Add(3)
		go func() { // send, pipelined
			defer wg.Done()
			for range n {
				if err := senders[i].c.Write(context.Background(), websocket.MessageText, frames[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
		drain := func(c *client) {
			defer wg.Done()
			for range n {
				if _, _, err := c.c.Read(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		}
		go drain(senders[i])   // server_acks
		go drain(receivers[i]) // deliveries
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	out, writes := 0.0, 0.0
	for _, n := range []*node{n1, n2} {
		out += metricValue(b, n, "occase_frames_out_total")
		writes += metricValue(b, n, "occase_socket_writes_total")
	}
	if writes > 0 {
		b.ReportMetric(out/writes, "frames/write")
	}
}

// metricValue reads one unlabelled metric from a node's /metrics.
func metricValue(tb testing.TB, n *node, name string) float64 {
	tb.Helper()
	rec := httptest.NewRecorder()
	n.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	tb.Fatalf("no %s in /metrics", name)
	return 0
}
