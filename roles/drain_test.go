package roles

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"go.uber.org/zap/zaptest"
)

func TestDrainBatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		span time.Duration
		want int
	}{
		{"few clients: one batch", 30, 5 * time.Second, 50},
		{"100k over 5 s: 100 steps", 100_000, 5 * time.Second, 1000},
		{"rounded up so 100 steps suffice", 100_001, 5 * time.Second, 1001},
		{"no span: all at once", 1000, 0, 1000},
		{"none", 0, time.Second, 50},
	} {
		if got := drainBatch(tc.n, tc.span); got != tc.want {
			t.Errorf("%s: drainBatch(%d, %v) = %d, want %d", tc.name, tc.n, tc.span, got, tc.want)
		}
	}
}

func (s *Server) tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// A drain closed every session at once; now a batch per tick, each with
// 1001, the rest staying open until their turn.
func TestDrainSpreadsCloses(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Role = "db"
	cfg.Redis.Addrs = []string{broker.Embedded}
	s, err := New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	const n, per = 12, 5
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.Dial(context.Background(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
	}
	waitTracked := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.tracked() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d sessions tracked, want %d", s.tracked(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitTracked(n)
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { s.closeSpread(per, tick); close(done) }()
	waitTracked(n - per) // the first batch, and no more before a tick
	tick <- time.Now()
	waitTracked(n - 2*per)
	tick <- time.Now()
	waitTracked(0)
	<-done
	for i, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Fatalf("connection %d: %v, want 1001", i, err)
		}
	}
}

// The closes are spread over what is left of the drain deadline, not over
// half the drain timeout whatever stopping the HTTP server took: with the
// deadline passed, nothing is spread (Close ends every session at once),
// so the drain stays within the orchestrator's grace period.
func TestDrainSpreadFitsDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Role = "db"
	cfg.Redis.Addrs = []string{broker.Embedded}
	cfg.DrainTimeout = time.Hour
	s, err := New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	const n = 2 * drainMinBatch
	for range n {
		c, _, err := websocket.Dial(context.Background(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
	}
	for deadline := time.Now().Add(10 * time.Second); s.tracked() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions tracked, want %d", s.tracked(), n)
		}
	}
	s.mu.Lock()
	s.draining = true
	s.drainDeadline = time.Now()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.spreadCloses(time.Now().Add(-time.Second)); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("spreading the closes outlives the drain deadline (half an hour of a 1 h drain timeout)")
	}
	if got := s.tracked(); got != n {
		t.Fatalf("%d of %d sessions closed by the spread; Close ends them", n-got, n)
	}
	s.Close()
	if s.tracked() != 0 {
		t.Fatalf("%d sessions left after Close", s.tracked())
	}
}
