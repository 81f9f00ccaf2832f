package bench_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/bench"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"go.uber.org/zap/zaptest"
)

// node is a db node served on a fixed loopback address, so that it can be
// drained (as on SIGTERM: roles.Server.Serve's context ends) and started
// again on the same address, as a rolling restart does.
type node struct {
	t    *testing.T
	opt  broker.Options
	addr string
	stop context.CancelFunc
	done chan error
}

func startServing(t *testing.T, opt broker.Options) *node {
	n := &node{t: t, opt: opt, addr: "127.0.0.1:0"}
	n.start()
	t.Cleanup(n.drain)
	return n
}

func (n *node) start() {
	n.t.Helper()
	cfg := roles.DefaultConfig()
	cfg.Role = "db"
	cfg.Redis = n.opt
	cfg.RegisterRate, cfg.ChatRate, cfg.PresenceRate = 0, 0, 0
	cfg.DrainTimeout = 5 * time.Second
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(n.t))
	if err != nil {
		n.t.Fatal(err)
	}
	var l net.Listener
	// The old listener is closed once Serve returned; the port may take a
	// moment to be free for a new bind.
	for i := 0; ; i++ {
		l, err = net.Listen("tcp", n.addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		srv.Close()
		n.t.Fatal(err)
	}
	n.addr = l.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	n.stop, n.done = stop, make(chan error, 1)
	go func() { n.done <- srv.Serve(ctx, l) }()
}

// drain ends the node as SIGTERM does and waits for it to exit.
func (n *node) drain() {
	if n.stop == nil {
		return
	}
	n.stop()
	if err := <-n.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		n.t.Errorf("node %s: %v", n.addr, err)
	}
	n.stop = nil
}

func (n *node) url() string { return "ws://" + n.addr + "/ws" }

// loggedIn reads the node's logged-in connections from /metrics.
func (n *node) loggedIn() int {
	resp, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:k]))
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, `occase_connections{state="logged_in"} `); ok {
			var k float64
			for _, c := range v {
				if c < '0' || c > '9' {
					break
				}
				k = k*10 + float64(c-'0')
			}
			return int(k)
		}
	}
	return 0
}

// TestReconnectAcrossRollingRestartLosesNothing drives --reconnect chat
// across two nodes sharing one real redis-server, drains one mid-run (as
// SIGTERM does) and starts it again: every acknowledged message arrives,
// none twice after de-duplication by msg_id, and the bench saw the 1001
// closes and logged in again.
func TestReconnectAcrossRollingRestartLosesNothing(t *testing.T) {
	redis := brokertest.StartRedis(t)
	opt := broker.Options{Addrs: []string{redis.Addr}, Prefix: brokertest.Prefix()}
	a, b := startServing(t, opt), startServing(t, opt)
	cfg := short(bench.Chat, a.url(), b.url())
	cfg.Users, cfg.Rate, cfg.Window, cfg.Reconnect = 8, 50, 4, true
	cfg.Duration, cfg.Warmup, cfg.Drain = 4*time.Second, 0, 20*time.Second
	type result struct {
		rep *bench.Report
		err error
	}
	res := make(chan result, 1)
	go func() {
		rep, err := bench.Run(context.Background(), cfg)
		res <- result{rep, err}
	}()
	// Restart node a once its half of the users is logged in and chatting.
	deadline := time.Now().Add(30 * time.Second)
	for a.loggedIn() < cfg.Users/2 {
		if time.Now().After(deadline) {
			t.Fatal("the users never logged in on node a")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.drain()
	a.start()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	rep := r.rep
	m := rep.Messages
	t.Logf("tally %+v, reconnects %v, errors %v", *m, rep.Reconnects, rep.Errors)
	if m.Lost != 0 || m.Duplicates != 0 || m.OutOfOrder != 0 {
		t.Fatalf("tally %+v", *m)
	}
	if m.Accepted == 0 || m.Delivered < m.Accepted {
		t.Fatalf("accepted %d, delivered %d", m.Accepted, m.Delivered)
	}
	if rep.Reconnects["closed_1001"] < uint64(cfg.Users/2) {
		t.Fatalf("reconnects %v: want the %d users of the drained node closed with 1001", rep.Reconnects, cfg.Users/2)
	}
	if len(rep.Errors) != 0 {
		t.Fatalf("errors %v", rep.Errors)
	}
}
