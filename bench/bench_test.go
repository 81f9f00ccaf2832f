package bench_test

import (
	"context"
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

// startNode runs one db-role node in process, as the roles tests do, with
// the per-user rate limits off (the bench measures the server, not them).
func startNode(t *testing.T, opt broker.Options) string {
	t.Helper()
	cfg := roles.DefaultConfig()
	cfg.Role = "db"
	cfg.Redis = opt
	cfg.RegisterRate, cfg.ChatRate, cfg.PresenceRate = 0, 0, 0
	cfg.RegisterPerDay = 0
	cfg.RegisterNodeRate = 0
	// A publisher in a load test posts far more than an app may.
	cfg.Posts.QuotaN = 1 << 20
	cfg.Posts.PostsPerAddress, cfg.Posts.MaxPosts, cfg.Posts.SubscribeRate = -1, -1, -1
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// short is a run bounded by count, not time: Duration is only the ceiling.
func short(scenario string, urls ...string) bench.Config {
	cfg := bench.DefaultConfig()
	cfg.Scenario = scenario
	cfg.URLs = urls
	cfg.Duration = time.Minute
	cfg.Warmup = 0
	cfg.Drain = 20 * time.Second
	cfg.Concurrency = 8
	return cfg
}

func noErrors(t *testing.T, rep *bench.Report) {
	t.Helper()
	if len(rep.Errors) != 0 {
		t.Fatalf("errors %v", rep.Errors)
	}
}

func TestChatAcrossTwoNodesCountsAddUp(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		cfg := short(bench.Chat, startNode(t, b.Options), startNode(t, b.Options))
		cfg.Users, cfg.Count, cfg.Window = 6, 30, 4
		cfg.ReadEvery, cfg.TypingEvery = 5, 10
		rep, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, rep)
		// Each user sends 30 chat messages and answers each of its
		// partner's 30 with a delivery receipt, plus a read receipt for
		// every 5th: 30 + 30 + 6 messages per user.
		const chats, receipts = 6 * 30, 6 * (30 + 6)
		m := rep.Messages
		want := bench.Tally{Sent: chats + receipts, Accepted: chats + receipts, Delivered: chats + receipts}
		if *m != want {
			t.Fatalf("tally %+v, want %+v", *m, want)
		}
		if rep.ByType["chat"] != chats || rep.ByType["receipts"] != receipts {
			t.Fatalf("by type %v", rep.ByType)
		}
		if p := rep.ByType["presence"]; p > 6*3 {
			t.Fatalf("%d presence signals delivered, only 18 sent", p)
		}
		if rep.Connections != 6 || rep.Latency == nil || rep.Latency.Count != chats+receipts {
			t.Fatalf("connections %d, latency %+v", rep.Connections, rep.Latency)
		}
	})
}

func TestChatTimeBoundedStopsAndAddsUp(t *testing.T) {
	// Bounded by time instead of count, with pacing: whatever was
	// accepted arrives, exactly once.
	cfg := short(bench.Chat, startNode(t, broker.Options{Addrs: []string{broker.Embedded}}))
	cfg.Users, cfg.Rate, cfg.Duration, cfg.Warmup = 4, 200, 300*time.Millisecond, 100*time.Millisecond
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	noErrors(t, rep)
	m := rep.Messages
	if m.Sent == 0 || m.Delivered != m.Sent || m.Accepted != m.Sent || m.Lost+m.Duplicates+m.OutOfOrder+m.Unconfirmed != 0 {
		t.Fatalf("tally %+v", *m)
	}
}

func TestConnectStorm(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		cfg := short(bench.Connect, startNode(t, b.Options), startNode(t, b.Options))
		cfg.Users = 40
		rep, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, rep)
		if rep.Dials.Count != 40 || rep.Setup.Count != 40 || rep.Logins.Count != 40 || rep.LoginLatency.Count != 40 {
			t.Fatalf("dial %+v, register %+v, login %+v, latency %+v", rep.Dials, rep.Setup, rep.Logins, rep.LoginLatency)
		}
	})
}

// --login-rounds logs the same users in again each round; with the
// server's PID the report gives its CPU per login over the rounds alone,
// and with Redis' address the commands per login (one login script).
func TestConnectLoginRoundsReportCPUAndCommands(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		cfg := short(bench.Connect, startNode(t, b.Options), startNode(t, b.Options))
		cfg.Users, cfg.LoginRounds = 20, 3
		cfg.ServerPIDs = []int{os.Getpid()} // the nodes run in this process
		if b.Redis != nil {
			cfg.Abuse.RedisAddr = b.Options.Addrs[0]
		}
		rep, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, rep)
		if rep.Setup.Count != 20 || rep.Logins.Count != 60 || rep.LoginLatency.Count != 60 {
			t.Fatalf("register %+v, login %+v (want 3 rounds of 20)", rep.Setup, rep.Logins)
		}
		if len(rep.LoginCPU) != 1 || rep.LoginCPU[0].Seconds <= 0 || rep.LoginCPU[0].PerOpUs <= 0 {
			t.Fatalf("login CPU %+v", rep.LoginCPU)
		}
		if b.Redis != nil && rep.LoginRedis["evalsha"]+rep.LoginRedis["eval"] < 1 {
			t.Fatalf("Redis commands per login %v: want the login script counted", rep.LoginRedis)
		}
	})
}

func TestIdleHoldsConnectionsAndReadsServerMemory(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		cfg := short(bench.Idle, startNode(t, b.Options))
		cfg.Users, cfg.Duration = 30, 50*time.Millisecond
		// The node runs in this process, so its resident set is ours.
		cfg.ServerPIDs = []int{os.Getpid()}
		rep, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, rep)
		if rep.Connections != 30 || rep.Setup.Count != 30 {
			t.Fatalf("held %d of 30, registered %d", rep.Connections, rep.Setup.Count)
		}
		s := rep.Server.Samples[0]
		if s.Error != "" || s.Before["rss_bytes"] <= 0 || s.After["rss_bytes"] <= 0 || rep.Server.PerConnectionFrom != "VmRSS growth" {
			t.Fatalf("server figures %+v", rep.Server)
		}
	})
}

func TestFanoutAcrossTwoNodesCountsAddUp(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		cfg := short(bench.Fanout, startNode(t, b.Options), startNode(t, b.Options))
		cfg.Users, cfg.Publishers, cfg.Count, cfg.PostRate = 10, 2, 15, 0
		rep, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, rep)
		// Every subscriber, on either node, gets each of the 30 posts once.
		want := bench.Tally{Sent: 30, Accepted: 30, Delivered: 30 * 10}
		if *rep.Messages != want {
			t.Fatalf("tally %+v, want %+v", *rep.Messages, want)
		}
		if rep.Connections != 12 || rep.Latency.Count != 300 {
			t.Fatalf("connections %d, latency samples %d", rep.Connections, rep.Latency.Count)
		}
	})
}

func TestRefusesNonLoopbackTargets(t *testing.T) {
	tests := []struct {
		name    string
		urls    []string
		metrics []string
		remote  bool
		ok      bool
	}{
		{"ipv4 loopback", []string{"ws://127.0.0.1:8080/ws"}, nil, false, true},
		{"127/8", []string{"ws://127.3.2.1:8080/ws"}, nil, false, true},
		{"localhost", []string{"ws://localhost:8080/ws"}, nil, false, true},
		{"ipv6 loopback", []string{"ws://[::1]:8080/ws"}, nil, false, true},
		{"private address", []string{"ws://10.0.0.5:8080/ws"}, nil, false, false},
		{"public name", []string{"wss://example.com/ws"}, nil, false, false},
		{"one bad among good", []string{"ws://127.0.0.1:1/ws", "ws://192.168.1.1/ws"}, nil, false, false},
		{"metrics elsewhere", []string{"ws://127.0.0.1:1/ws"}, []string{"http://10.1.1.1/metrics"}, false, false},
		{"remote allowed", []string{"wss://example.com/ws"}, nil, true, true},
		{"wrong scheme", []string{"http://127.0.0.1:8080/ws"}, nil, false, false},
		{"no url", nil, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := bench.DefaultConfig()
			cfg.URLs, cfg.Metrics, cfg.AllowRemote = tt.urls, tt.metrics, tt.remote
			err := cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestBoundsAreEnforced(t *testing.T) {
	for name, mut := range map[string]func(*bench.Config){
		"no duration":     func(c *bench.Config) { c.Duration = 0 },
		"endless":         func(c *bench.Config) { c.Duration = 24 * time.Hour },
		"too many users":  func(c *bench.Config) { c.Users = bench.MaxUsers + 1 },
		"warmup too long": func(c *bench.Config) { c.Warmup = c.Duration },
		"one chat user":   func(c *bench.Config) { c.Users = 1 },
		"unknown":         func(c *bench.Config) { c.Scenario = "storm" },
		"no drain":        func(c *bench.Config) { c.Drain = 0 },
	} {
		cfg := bench.DefaultConfig()
		mut(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
