package roles

import (
	"sync"
	"time"

	"github.com/occase/occase/wire"
)

// coolOff remembers who was closed with 4006 (rate exceeded) and refuses
// them for --abuse-cooloff: a client that reconnects at once after being
// closed for abuse would otherwise get a fresh read budget, and cost a new
// handshake and login, every time. A logged-in abuser is remembered by
// user (its next login waits, wherever it comes from); an anonymous one by
// client address (its next register or login waits). The table is this
// node's memory, bounded: when it is full and nothing in it has expired,
// a new entry is not recorded (the read budgets still hold that client).
type coolOff struct {
	mu    sync.Mutex
	until map[string]time.Time
	max   int
	d     time.Duration
}

const coolOffMax = 100_000

func newCoolOff(d time.Duration) *coolOff {
	if d <= 0 {
		return nil
	}
	return &coolOff{until: map[string]time.Time{}, max: coolOffMax, d: d}
}

// add starts key's cooling-off at now.
func (c *coolOff) add(key string, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.until) >= c.max {
		for k, t := range c.until {
			if !t.After(now) {
				delete(c.until, k)
			}
		}
		if len(c.until) >= c.max {
			return
		}
	}
	c.until[key] = now.Add(c.d)
}

// wait is how long key still has to wait at now (0: none).
func (c *coolOff) wait(key string, now time.Time) time.Duration {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.until[key]
	if !ok {
		return 0
	}
	if !t.After(now) {
		delete(c.until, key)
		return 0
	}
	return t.Sub(now)
}

// coolOffKey is what a 4006 close of this session is remembered by: the
// user once it logged in (only its reader calls this, after the reader
// set ss.user), else the client address.
func (ss *session) coolOffKey() string {
	if ss.user != "" {
		return "u:" + ss.user
	}
	return "a:" + ss.srv.clientKey(ss.remote)
}

// coolingOff refuses a register or login (as user; "" for register) from
// a client, or of a user, closed with 4006 less than --abuse-cooloff ago.
func (ss *session) coolingOff(user string) error {
	now := ss.srv.cfg.Clock()
	d := ss.srv.coolOff.wait("a:"+ss.srv.clientKey(ss.remote), now)
	if user != "" {
		d = max(d, ss.srv.coolOff.wait("u:"+user, now))
	}
	if d <= 0 {
		return nil
	}
	return wire.Errorf(wire.RateLimited, "closed for exceeding the rate limits; wait %d s before trying again", int(d.Seconds()+0.999))
}
