package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/bench"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"go.uber.org/zap/zaptest"
)

// TestAbuseScenario runs the abuse scenario briefly, every attack with one
// or two clients, against a role-all node with its real limits on a real
// redis-server: the report has both phases, every attacker's counts and the
// memory figures, and no legitimate message is lost.
func TestAbuseScenario(t *testing.T) {
	redis := brokertest.StartRedis(t)
	cfg := roles.DefaultConfig()
	cfg.Role = "all"
	cfg.ImageDir = t.TempDir()
	cfg.Redis = broker.Options{Addrs: []string{redis.Addr}, Prefix: brokertest.Prefix()}
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})

	bc := short(bench.Abuse, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws")
	bc.Users, bc.Rate, bc.Window = 4, 10, 4
	bc.Duration, bc.Warmup, bc.Drain = time.Second, 0, 20*time.Second
	bc.ServerPIDs = []int{os.Getpid()}
	bc.Abuse.Attacks = map[string]int{"flood": 1, "fields": 1, "subscribe": 1, "register": 1, "publish": 1, "upload": 2, "scan": 1}
	bc.Abuse.Ramp, bc.Abuse.StoredPosts, bc.Abuse.SourceAddrs = 200*time.Millisecond, 100, 16
	bc.Abuse.Trickle = 50 * time.Millisecond
	bc.Abuse.RedisAddr = redis.Addr
	rep, err := bench.Run(context.Background(), bc)
	if err != nil {
		t.Fatal(err)
	}
	ab := rep.Abuse
	if ab == nil || ab.Baseline == nil || ab.Attacked == nil {
		t.Fatalf("no abuse report: %+v", rep)
	}
	for name, ph := range map[string]*bench.PhaseReport{"baseline": ab.Baseline, "attacked": ab.Attacked} {
		m := ph.Messages
		if ph.Connections != 4 || m.Sent == 0 || m.Lost != 0 || m.Duplicates != 0 || m.OutOfOrder != 0 || ph.Latency == nil {
			t.Errorf("%s: connections %d, tally %+v, latency %+v", name, ph.Connections, *m, ph.Latency)
		}
	}
	// Seeding may meet per-address budgets of a stricter server; what it
	// stored, it reports.
	if ab.LegitLost != 0 || ab.P99Ratio <= 0 || ab.SeededPosts <= 0 || (ab.SeededPosts < 100 && len(ab.SeedErrors) == 0) {
		t.Errorf("lost %d, p99 ratio %v, seeded %d", ab.LegitLost, ab.P99Ratio, ab.SeededPosts)
	}
	kinds := map[string]*bench.AttackReport{}
	for _, a := range ab.Attacks {
		kinds[a.Kind] = a
	}
	for k, n := range bc.Abuse.Attacks {
		a := kinds[k]
		if a == nil || a.Clients != n || a.Ops == 0 || len(a.Results)+len(a.Closes) == 0 {
			t.Errorf("attack %s: %+v", k, a)
		}
	}
	// Answers that any server version gives: the first filenames request
	// is served, a well-behaved upload is stored.
	if u := ab.Baseline.Uploads; u == nil || u.Results["http_201"] == 0 {
		t.Errorf("legitimate uploads in the baseline: %+v", u)
	}
	if kinds["upload"].Results["filenames_ok"] == 0 {
		t.Errorf("upload results %v", kinds["upload"].Results)
	}
	mem := map[string]bench.MemoryGrowth{}
	for _, m := range ab.Memory {
		mem[m.Source] = m
	}
	if m, ok := mem["redis "+redis.Addr+" used_memory"]; !ok || m.Error != "" || m.Start <= 0 || m.AfterAttack <= m.Start {
		t.Errorf("redis memory %+v (all: %+v)", m, ab.Memory)
	}
	if len(ab.CPU) != 1 || ab.CPU[0].Baseline <= 0 || ab.CPU[0].Attacked <= 0 {
		t.Errorf("server CPU %+v", ab.CPU)
	}
	if len(ab.Memory) != 2 {
		t.Errorf("memory %+v: want the node's RSS and Redis", ab.Memory)
	}

	// Both renderings carry it.
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	abj, _ := back["abuse"].(map[string]any)
	for _, k := range []string{"baseline", "attacked", "p99_ratio", "legit_lost", "attacks", "memory"} {
		if _, ok := abj[k]; !ok {
			t.Errorf("JSON abuse has no %q: %s", k, js.String())
		}
	}
	var txt bytes.Buffer
	if err := rep.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"p99 ratio", "baseline", "attacked", "flood", "used_memory"} {
		if !strings.Contains(txt.String(), k) {
			t.Errorf("text report has no %q:\n%s", k, txt.String())
		}
	}
	t.Log(txt.String())
}
