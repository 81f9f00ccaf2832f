package roles_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

// dialFrom opens a connection that a trusted proxy forwards for client
// address from.
func dialFrom(t testing.TB, url, from string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {from}}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	cl := &client{t: t, c: c, seen: map[int64]bool{}}
	t.Cleanup(func() { c.CloseNow() })
	return cl
}

// registerAs sends register (with extra members, e.g. a signup_token) from
// client address from and returns the register_ack.
func registerAs(t testing.TB, url, from, extra string) msg {
	t.Helper()
	c := dialFrom(t, url, from)
	c.send(`{"cmd":"register"` + extra + `}`)
	m := c.expect("register_ack")
	c.c.Close(websocket.StatusNormalClosure, "")
	return m
}

func wantRefused(t *testing.T, m msg, reason, detail string) {
	t.Helper()
	if m.str("result") != "fail" || m.str("reason") != reason || !strings.Contains(m.str("detail"), detail) {
		t.Fatalf("got %v, want fail %s with a detail saying %q", m, reason, detail)
	}
}

func behindProxy(c *roles.Config) {
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// The daily budget counts an IPv6 client by its /64, holds across two
// nodes sharing one Redis, says when registration is possible again, and
// opens again when the day has passed.
func TestRegistrationDailyBudget(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		var skew atomic.Int64
		clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		cfg := func(c *roles.Config) {
			behindProxy(c)
			c.RegisterPerDay = 2
			c.Clock = clock
		}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		if m := registerAs(t, n1.url, "2001:db8:1:2::1", ""); m.str("result") != "ok" {
			t.Fatalf("first: %v", m)
		}
		if m := registerAs(t, n2.url, "2001:db8:1:2:ffff::2", ""); m.str("result") != "ok" {
			t.Fatalf("second, same /64, other node: %v", m)
		}
		wantRefused(t, registerAs(t, n1.url, "2001:db8:1:2:abcd::3", ""), wire.RateLimited, "possible again at")
		wantRefused(t, registerAs(t, n2.url, "2001:db8:1:2::4", ""), wire.RateLimited, "possible again at")
		// Another /64, another IPv4 address: their own budgets.
		if m := registerAs(t, n2.url, "2001:db8:1:3::1", ""); m.str("result") != "ok" {
			t.Fatalf("the next /64: %v", m)
		}
		if m := registerAs(t, n1.url, "198.51.100.9", ""); m.str("result") != "ok" {
			t.Fatalf("an IPv4 client: %v", m)
		}
		if v := metricValue(t, n1, `occase_register_refused_total{limit="daily"}`); v != 1 {
			t.Fatalf("n1 counted %v daily refusals, want 1", v)
		}
		// A day later (by the injected clock) the /64 may register again.
		skew.Store(int64(registerDay + time.Minute))
		if m := registerAs(t, n1.url, "2001:db8:1:2::5", ""); m.str("result") != "ok" {
			t.Fatalf("a day later: %v", m)
		}
	})
}

const registerDay = 24 * time.Hour

// The per-second limiter counts an IPv6 client by its /64 too.
func TestRegistrationRateGroupsIPv6(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, behindProxy, func(c *roles.Config) { c.RegisterRate, c.RegisterBurst = 0.001, 1 })
		if m := registerAs(t, n.url, "2001:db8:9:9::1", ""); m.str("result") != "ok" {
			t.Fatalf("first: %v", m)
		}
		wantRefused(t, registerAs(t, n.url, "2001:db8:9:9::2", ""), wire.RateLimited, "too many registrations")
		if m := registerAs(t, n.url, "2001:db8:9:a::1", ""); m.str("result") != "ok" {
			t.Fatalf("the next /64: %v", m)
		}
		if v := metricValue(t, n, `occase_register_refused_total{limit="rate"}`); v != 1 {
			t.Fatalf("rate refusals %v, want 1", v)
		}
	})
}

// With --register-key, register takes only a valid, unexpired, unused
// signup_token.
func TestRegistrationNeedsSignupToken(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		key := []byte("0123456789abcdef0123456789abcdef")
		n := startNode(t, b.Options, func(c *roles.Config) { c.RegisterKey = key })
		tok := func(k []byte, exp time.Time) string {
			s, err := roles.SignupToken(k, "user@example.com", exp)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		valid := tok(key, time.Now().Add(time.Hour))
		forged := tok([]byte("another key, not the server's!!!"), time.Now().Add(time.Hour))
		p, mac, _ := strings.Cut(valid, ".")
		flip := "x"
		if p[len(p)-2] == 'x' {
			flip = "y"
		}
		tampered := p[:len(p)-2] + flip + p[len(p)-1:] + "." + mac
		tests := []struct{ name, extra, detail string }{
			{"missing", ``, "only with a signup_token"},
			{"not a string", `,"signup_token":42`, "only with a signup_token"},
			{"forged", `,"signup_token":"` + forged + `"`, "not one of this server's"},
			{"tampered", `,"signup_token":"` + tampered + `"`, "not one of this server's"},
			{"expired", `,"signup_token":"` + tok(key, time.Now().Add(-time.Second)) + `"`, "expired"},
			{"too far ahead", `,"signup_token":"` + tok(key, time.Now().Add(30*24*time.Hour)) + `"`, "ahead"},
		}
		for _, tt := range tests {
			wantRefused(t, registerAs(t, n.url, "127.0.0.1", tt.extra), wire.BadToken, tt.detail)
		}
		// The FCM "token" of the original protocol is not a sign-up token.
		wantRefused(t, registerAs(t, n.url, "127.0.0.1", `,"token":"`+valid+`"`), wire.BadToken, "only with a signup_token")
		if m := registerAs(t, n.url, "127.0.0.1", `,"signup_token":"`+valid+`"`); m.str("result") != "ok" || m.str("id") == "" {
			t.Fatalf("a valid token: %v", m)
		}
		wantRefused(t, registerAs(t, n.url, "127.0.0.1", `,"signup_token":"`+valid+`"`), wire.BadToken, "used already")
		if v := metricValue(t, n, `occase_register_refused_total{limit="token"}`); v != float64(len(tests)+2) {
			t.Fatalf("token refusals %v, want %d", v, len(tests)+2)
		}
	})
}

// Rotating through many addresses passes every per-address limit; the
// node's own budget for all of them together holds.
func TestRegistrationNodeBudget(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, behindProxy, func(c *roles.Config) {
			c.RegisterRate, c.RegisterBurst = 1, 1
			c.RegisterNodeRate, c.RegisterNodeBurst = 0.001, 3
		})
		for i := range 3 {
			if m := registerAs(t, n.url, fmt.Sprintf("198.51.100.%d", i+1), ""); m.str("result") != "ok" {
				t.Fatalf("registration %d: %v", i, m)
			}
		}
		wantRefused(t, registerAs(t, n.url, "198.51.100.99", ""), wire.RateLimited, "many registrations right now")
		if v := metricValue(t, n, `occase_register_refused_total{limit="node"}`); v != 1 {
			t.Fatalf("node refusals %v, want 1", v)
		}
	})
}
