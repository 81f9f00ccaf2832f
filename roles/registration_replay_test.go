package roles_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

// Replaying a used signup_token costs the address nothing of its daily
// registration budget: a fresh, valid token from the same address is
// still admitted.
func TestRegistrationReplayKeepsDailyBudget(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		key := []byte("0123456789abcdef0123456789abcdef")
		n := startNode(t, b.Options, func(c *roles.Config) {
			behindProxy(c)
			c.RegisterKey = key
			c.RegisterPerDay = 3
		})
		tok := func() string {
			s, err := roles.SignupToken(key, "", time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		used := tok()
		if m := registerAs(t, n.url, "198.51.100.7", `,"signup_token":"`+used+`"`); m.str("result") != "ok" {
			t.Fatalf("first: %v", m)
		}
		// The attacker (same NAT address) replays the used token.
		for i := 0; i < 2; i++ {
			wantRefused(t, registerAs(t, n.url, "198.51.100.7", `,"signup_token":"`+used+`"`), wire.BadToken, "used already")
		}
		// A legitimate user behind the same address with a fresh token.
		m := registerAs(t, n.url, "198.51.100.7", `,"signup_token":"`+tok()+`"`)
		if m.str("result") != "ok" {
			t.Fatalf("fresh token refused after replays of a used one: %v", m)
		}
	})
}

// A token refused because the address has spent its day is not used up:
// the same token registers once the day has passed.
func TestRegistrationDailyRefusalKeepsToken(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		key := []byte("0123456789abcdef0123456789abcdef")
		var skew atomic.Int64
		n := startNode(t, b.Options, func(c *roles.Config) {
			behindProxy(c)
			c.RegisterKey = key
			c.RegisterPerDay = 1
			c.Clock = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		})
		tok := func() string {
			s, err := roles.SignupToken(key, "", time.Now().Add(3*registerDay))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		if m := registerAs(t, n.url, "198.51.100.8", `,"signup_token":"`+tok()+`"`); m.str("result") != "ok" {
			t.Fatalf("first: %v", m)
		}
		second := tok()
		wantRefused(t, registerAs(t, n.url, "198.51.100.8", `,"signup_token":"`+second+`"`), wire.RateLimited, "possible again at")
		skew.Store(int64(registerDay + time.Minute))
		if m := registerAs(t, n.url, "198.51.100.8", `,"signup_token":"`+second+`"`); m.str("result") != "ok" {
			t.Fatalf("the token refused for the day, a day later: %v", m)
		}
	})
}
