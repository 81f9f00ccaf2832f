package broker

// Leases: a named lock with an expiry, so that work one node of many should
// do at a time (the image sweep over a volume several img nodes share) runs
// once, and a holder that dies frees it by itself.
//
//	<p>lease:<name>   the holder's token; expires after the lease's ttl
//
// One key, no hash tag needed: every command touches that key alone. The
// embedded server expires no key by the clock, so a lease there lasts until
// released: a node on it, the only one there can be, needs none.

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// LeaseImageGC names the lease of the image sweep.
const LeaseImageGC = "imggc"

func (c *Client) leaseKey(name string) string { return c.key("lease:" + name) }

// renewLeaseScript extends the lease if, and only if, token still holds it.
// KEYS: lease. ARGV: token, ttl (ms). Returns 1 renewed, 0 lost.
var renewLeaseScript = newScript("lease_renew", `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// releaseLeaseScript deletes the lease if, and only if, token holds it, so
// a holder whose lease expired and was taken by another never frees the
// other's. KEYS: lease. ARGV: token.
var releaseLeaseScript = newScript("lease_release", `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// TakeLease takes the lease name for token for ttl, and reports false when
// another token holds it.
func (c *Client) TakeLease(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	err := c.do(ctx, c.rc.B().Set().Key(c.leaseKey(name)).Value(token).Nx().
		PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, c.wrap("take lease "+name, err)
	}
	return true, nil
}

// RenewLease extends the lease name of token by ttl from now, and reports
// false when token no longer holds it (it expired, and perhaps another took
// it).
func (c *Client) RenewLease(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := renewLeaseScript.Exec(ctx, c.rc, []string{c.leaseKey(name)},
		[]string{token, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)}).AsInt64()
	if err != nil {
		return false, c.wrap("renew lease "+name, err)
	}
	return n == 1, nil
}

// ReleaseLease frees the lease name if token holds it.
func (c *Client) ReleaseLease(ctx context.Context, name, token string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	err := releaseLeaseScript.Exec(ctx, c.rc, []string{c.leaseKey(name)}, []string{token}).Error()
	return c.wrap("release lease "+name, err)
}
