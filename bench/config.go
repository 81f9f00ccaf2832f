// Package bench is the load generator behind `occase bench`: it plays many
// apps against one or more running nodes over the real WebSocket protocol
// (PROTOCOL.md), and reports delivered throughput, end-to-end latency from
// timestamps carried in the messages, connect and login rates, failures by
// reason, and lost, duplicated and out-of-order messages counted exactly
// from per-pair sequence numbers.
//
// It only talks to loopback addresses unless told otherwise, and every run
// is bounded in time and count: it stops by itself.
package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"
)

// Scenarios.
const (
	Chat    = "chat"    // users chat in pairs across nodes, with receipts and typing signals
	Fanout  = "fanout"  // publishers post, every subscriber gets every post
	Connect = "connect" // a registration storm, then a login storm
	Idle    = "idle"    // N logged-in connections that only answer pings
	Abuse   = "abuse"   // chat without, then with, hostile clients (abuse.go)
)

// Hard bounds, so that no flag combination makes an endless or unbounded run.
const (
	MaxUsers    = 200000
	MaxDuration = 30 * time.Minute
)

// Config is one run.
type Config struct {
	Scenario string
	URLs     []string // ws:// URLs of the nodes; users are spread across them
	Users    int      // chat: users (in pairs); fanout: subscribers; connect, idle: connections
	Duration time.Duration
	Warmup   time.Duration // not measured, at the start of Duration's window
	Drain    time.Duration // after sending stops, how long to wait for what is in flight

	// chat
	Rate        float64 // chat messages per second per user; 0: as fast as Window allows
	Window      int     // unanswered messages (receipts included) or posts per sender
	Size        int     // bytes of a chat frame or post body (about)
	Count       int     // chat: messages per user; fanout: posts per publisher; 0: until Duration
	Receipts    bool    // answer each chat message with app_ack_received
	ReadEvery   int     // and every ReadEvery-th with app_ack_read (0: never)
	TypingEvery int     // send a "writing" presence before every TypingEvery-th message (0: never)
	// Reconnect: a chat user whose connection ends logs in again (same
	// account, next node first, with back-off) and goes on; messages that
	// come again are dropped by msg_id and counted as redelivered.
	Reconnect bool

	// fanout
	Publishers int
	PostRate   float64 // posts per second per publisher; 0: as fast as Window allows

	Concurrency int // dials and logins in flight at once
	LoginRounds int // connect: how many login storms over the same accounts (0: one)

	// abuse: the hostile clients (abuse.go)
	Abuse AbuseConfig

	// Memory and connection figures of the server(s).
	Metrics    []string // Prometheus text URLs (/metrics)
	ServerPIDs []int    // read VmRSS from /proc/<pid>/status
	// CPUPIDs are processes (nodes, Redis) whose CPU time over the
	// measured window only, from /proc/<pid>/stat, the report gives
	// (WindowCPU), next to the bench's own over the same window.
	CPUPIDs []int

	AllowRemote bool

	Progress         io.Writer // live progress; nil: none
	ProgressTerminal bool      // Progress is a terminal: redraw one line
	ProgressEvery    time.Duration
}

// DefaultConfig is a short chat run against one local node.
func DefaultConfig() Config {
	return Config{
		Scenario:      Chat,
		URLs:          []string{"ws://127.0.0.1:8080/ws"},
		Users:         200,
		Duration:      10 * time.Second,
		Warmup:        2 * time.Second,
		Drain:         10 * time.Second,
		Window:        16,
		Size:          200,
		Receipts:      true,
		ReadEvery:     5,
		TypingEvery:   10,
		Publishers:    1,
		PostRate:      100,
		Concurrency:   64,
		ProgressEvery: time.Second,
		Abuse: AbuseConfig{Attacks: DefaultAttacks(), Ramp: 2 * time.Second, StoredPosts: 10000,
			PostsPerAccount: 10, SourceAddrs: 1024, Trickle: time.Second},
	}
}

// Validate checks the bounds and the target addresses.
func (c *Config) Validate() error {
	switch c.Scenario {
	case Chat, Fanout, Connect, Idle:
	case Abuse:
		if err := c.Abuse.validate(c); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown scenario %q (want chat, fanout, connect, idle or abuse)", c.Scenario)
	}
	if len(c.URLs) == 0 {
		return errors.New("no --url given")
	}
	for _, u := range c.URLs {
		if err := checkTarget(u, c.AllowRemote, "ws", "wss"); err != nil {
			return err
		}
	}
	for _, u := range c.Metrics {
		if err := checkTarget(u, c.AllowRemote, "http", "https"); err != nil {
			return err
		}
	}
	switch {
	case c.Users < 1 || c.Users > MaxUsers:
		return fmt.Errorf("--users must be in 1..%d", MaxUsers)
	case (c.Scenario == Chat || c.Scenario == Abuse) && c.Users < 2:
		return errors.New("chat needs at least 2 users")
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("--duration must be in (0, %v]", MaxDuration)
	case c.Warmup < 0 || c.Warmup >= c.Duration:
		return errors.New("--warmup must be shorter than --duration")
	case c.Drain <= 0 || c.Drain > time.Minute:
		return errors.New("--drain must be in (0, 1m]")
	case c.Window < 1:
		return errors.New("--window must be at least 1")
	case c.Concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case c.LoginRounds < 0 || c.LoginRounds > 1000:
		return errors.New("--login-rounds must be in 0..1000")
	case c.Rate < 0 || c.PostRate < 0 || c.Count < 0 || c.Size < 0 || c.ReadEvery < 0 || c.TypingEvery < 0:
		return errors.New("rates, counts and sizes must not be negative")
	case c.Scenario == Fanout && c.Publishers < 1:
		return errors.New("fanout needs at least one publisher")
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	return nil
}

// checkTarget refuses anything but a loopback host unless remote targets
// were explicitly allowed: a load generator pointed at someone else's
// server by a typo is an attack.
func checkTarget(raw string, allowRemote bool, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL %q: %w", raw, err)
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return fmt.Errorf("URL %q: scheme must be one of %v", raw, schemes)
	}
	if allowRemote {
		return nil
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("URL %q is not a loopback address; pass --allow-remote to load a remote server", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
