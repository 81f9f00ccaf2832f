package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// CreateUser allocates the next user id and stores the password digest.
// now is Unix milliseconds; it counts as the user's first login.
func (c *Client) CreateUser(ctx context.Context, digest string, now int64) (string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := c.rc.Do(ctx, c.rc.B().Incr().Key(c.key("user_id")).Build()).AsInt64()
	if err != nil {
		return "", c.wrap("allocate user id", err)
	}
	id := strconv.FormatInt(n, 10)
	err = c.rc.Do(ctx, c.rc.B().Hset().Key(c.userKey("u", id)).FieldValue().
		FieldValue("pwd", digest).FieldValue("gen", "1").
		FieldValue("login", strconv.FormatInt(now, 10)).Build()).Error()
	if err != nil {
		return "", c.wrap("store user "+id, err)
	}
	return id, nil
}

// PasswordDigest returns the stored digest of user id; ok is false when the
// user does not exist.
func (c *Client) PasswordDigest(ctx context.Context, id string) (digest string, ok bool, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	s, err := c.rc.Do(ctx, c.rc.B().Hget().Key(c.userKey("u", id)).Field("pwd").Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, c.wrap("read user "+id, err)
	}
	return s, true, nil
}

var loginScript = newScript("login", `
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'login', ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
return gen`)

// Login records a successful login at now (Unix ms): it bumps the user's
// login generation (a newer login displaces every older one) and restarts the
// offline queue's expiry of ttlMs.
func (c *Client) Login(ctx context.Context, id string, now, ttlMs int64) (gen int64, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	gen, err = loginScript.Exec(ctx, c.rc, []string{c.userKey("u", id), c.userKey("q", id)},
		[]string{strconv.FormatInt(now, 10), strconv.FormatInt(ttlMs, 10)}).AsInt64()
	return gen, c.wrap("login "+id, err)
}

// announceScript: KEYS: u:{id}. ARGV: the user's channel, the payload, and
// the publish command (PUBLISH, or SPUBLISH where the channel is sharded:
// see publishCmd).
var announceScript = newScript("login_announce", `
local n = redis.call(ARGV[3], ARGV[1], ARGV[2])
return {n, tonumber(redis.call('HGET', KEYS[1], 'gen') or '0') or 0}`)

// AnnounceLogin publishes payload (a kick) on user id's channel and, in the
// same step, reads the user's current login generation: it returns how
// many subscribers got the kick and that generation. One round trip where a
// login needs both.
func (c *Client) AnnounceLogin(ctx context.Context, id, payload string) (receivers, gen int64, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	v, err := announceScript.Exec(ctx, c.rc, []string{c.userKey("u", id)}, []string{c.UserChannel(id), payload, c.publishCmd(c.UserChannel(id))}).AsIntSlice()
	if err != nil {
		return 0, 0, c.wrap("announce login of "+id, err)
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("announce login of %s: unexpected reply %v", id, v)
	}
	return v[0], v[1], nil
}

// Secret returns the password-digest key stored in Redis, creating a random
// one on first use. Used only when the operator configured none.
func (c *Client) Secret(ctx context.Context) ([]byte, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	b := make([]byte, 32)
	rand.Read(b)
	k := c.key("secret")
	if err := c.rc.Do(ctx, c.rc.B().Set().Key(k).Value(hex.EncodeToString(b)).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return nil, c.wrap("store secret", err)
	}
	s, err := c.rc.Do(ctx, c.rc.B().Get().Key(k).Build()).ToString()
	if err != nil {
		return nil, c.wrap("read secret", err)
	}
	key, err := hex.DecodeString(s)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("the secret stored at %s is not 32 hex-encoded bytes", k)
	}
	return key, nil
}
