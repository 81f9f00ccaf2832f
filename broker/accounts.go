package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// createScript stores a new user's hash: KEYS u:{id}; ARGV the digest, the
// first login (ms), and the account's lifetime in ms (0: for ever). The
// first login is kept twice: 'login' moves with every login, 'made' stays
// (the account's age, AccountMade).
var createScript = newScript("create_user", `
redis.call('HSET', KEYS[1], 'pwd', ARGV[1], 'gen', '1', 'login', ARGV[2], 'made', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`)

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
	err = createScript.Exec(ctx, c.rc, []string{c.userKey("u", id)},
		[]string{digest, strconv.FormatInt(now, 10), strconv.FormatInt(c.accountTTL.Milliseconds(), 10)}).Error()
	if err != nil {
		return "", c.wrap("store user "+id, err)
	}
	return id, nil
}

// AccountMade returns when user id's account was made (Unix ms). ok is
// false when there is no such account; made is 0 for an account made
// before the field was kept (it is older than any made since).
func (c *Client) AccountMade(ctx context.Context, id string) (made int64, ok bool, err error) {
	vs, err := c.do(ctx, c.rc.B().Hmget().Key(c.userKey("u", id)).Field("pwd", "made").Build()).ToArray()
	if err != nil {
		return 0, false, c.wrap("read the age of account "+id, err)
	}
	if len(vs) != 2 || vs[0].IsNil() {
		return 0, false, nil
	}
	if vs[1].IsNil() {
		return 0, true, nil
	}
	made, err = vs[1].AsInt64()
	if err != nil {
		return 0, true, c.wrap("read the age of account "+id, err)
	}
	return made, true, nil
}

// madeSinceScript reads <p>madesince, setting it to ARGV[1] when absent
// (the first caller wins). KEYS: <p>madesince. Returns its value.
var madeSinceScript = newScript("made_since", `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`)

// MadeSince returns when (Unix ms) a node that keeps the accounts'
// creation time ('made') first met this store, recording now (ms) when
// none did before. An account without 'made' was made before it (or by
// an older node during the rolling upgrade that followed), so it counts
// as made then: its age is never more than the time since. One key, set
// once.
func (c *Client) MadeSince(ctx context.Context, now int64) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	s, err := madeSinceScript.Exec(ctx, c.rc, []string{c.key("madesince")}, []string{strconv.FormatInt(now, 10)}).ToString()
	if err != nil {
		return 0, c.wrap("read when accounts began to keep their age", err)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("madesince holds %q: %w", s, err)
	}
	return v, nil
}

// PasswordDigest returns the stored digest of user id; ok is false when the
// user does not exist.
func (c *Client) PasswordDigest(ctx context.Context, id string) (digest string, ok bool, err error) {
	s, err := c.do(ctx, c.rc.B().Hget().Key(c.userKey("u", id)).Field("pwd").Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, c.wrap("read user "+id, err)
	}
	return s, true, nil
}

// AccountTTL returns how long until user id's account expires: -1ns when
// it never does, -2ns when there is no such account (Redis PTTL).
func (c *Client) AccountTTL(ctx context.Context, id string) (time.Duration, error) {
	ms, err := c.do(ctx, c.rc.B().Pttl().Key(c.userKey("u", id)).Build()).AsInt64()
	if err != nil {
		return 0, c.wrap("account expiry of "+id, err)
	}
	if ms < 0 {
		return time.Duration(ms), nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// regScript counts a registration from one client address in a window of
// ARGV[2] ms that starts at its first registration: KEYS reg:{addr}:day;
// ARGV now (ms), the window (ms), the limit. It returns 0 when admitted
// (and counted), else the ms until the window ends. The window is kept in
// the hash by the caller's clock (so an injected clock behaves like the
// real one); the key's expiry only collects it.
var regScript = newScript("register_budget", `
local now, win, lim = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = tonumber(redis.call('HGET', KEYS[1], 's') or '')
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0') or 0
if not start or now >= start + win or now < start - win then
  start, n = now, 0
end
if n >= lim then return start + win - now end
redis.call('HSET', KEYS[1], 's', string.format('%d', start), 'n', n + 1)
redis.call('PEXPIRE', KEYS[1], start + win - now)
return 0`)

// AdmitRegistration counts one registration from client address group addr
// against limit per window: it returns 0 when admitted, or how long until
// the window ends and registration from addr is possible again. The count
// is in Redis, so it holds across every node.
func (c *Client) AdmitRegistration(ctx context.Context, addr string, now int64, window time.Duration, limit int64) (time.Duration, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ms, err := regScript.Exec(ctx, c.rc, []string{c.key("reg:{" + addr + "}:day")},
		[]string{strconv.FormatInt(now, 10), strconv.FormatInt(window.Milliseconds(), 10), strconv.FormatInt(limit, 10)}).AsInt64()
	if err != nil {
		return 0, c.wrap("count registration from "+addr, err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// UseSignupNonce marks a sign-up token's nonce used for ttl (until the
// token expires). It returns false when the nonce was used already.
func (c *Client) UseSignupNonce(ctx context.Context, nonce string, ttl time.Duration) (bool, error) {
	err := c.do(ctx, c.rc.B().Set().Key(c.key("signup:"+nonce)).Value("1").Nx().PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, c.wrap("use sign-up nonce", err)
	}
	return true, nil
}

// regRefundScript gives back one registration counted by regScript:
// KEYS reg:{addr}:day. A window that ended meanwhile is left alone.
var regRefundScript = newScript("register_refund", `
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0') or 0
if n > 0 then redis.call('HSET', KEYS[1], 'n', n - 1) end
return 0`)

// RefundRegistration gives back a registration counted by
// AdmitRegistration whose account was not made after all (a refused
// token, a failed CreateUser), so a refusal never costs an address its
// daily budget.
func (c *Client) RefundRegistration(ctx context.Context, addr string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	err := regRefundScript.Exec(ctx, c.rc, []string{c.key("reg:{" + addr + "}:day")}, nil).Error()
	return c.wrap("refund registration from "+addr, err)
}

// ReleaseSignupNonce forgets a nonce marked by UseSignupNonce, when the
// registration it was for did not make an account: the user may try the
// same token again.
func (c *Client) ReleaseSignupNonce(ctx context.Context, nonce string) error {
	err := c.do(ctx, c.rc.B().Del().Key(c.key("signup:"+nonce)).Build()).Error()
	return c.wrap("release sign-up nonce", err)
}

// LoginState is what a login learns from its one script (LoginFetch).
type LoginState struct {
	Gen       int64 // the login's generation
	Receivers int64 // subscribers of the user's channel that got the kick
	// Remaining is how many posts the user may still publish (as
	// PostQuotaRemaining); 0 when no quota was asked for.
	Remaining int
	// Fetched is the queue's head as Fetch(count 0) reads it: Seq and up
	// to the batch asked for.
	Fetched Fetched
	// Blocks are the ids the user blocks (broker/block.go), nil for none.
	Blocks []string
	// Notices is how many notices wait for the user (notices.go).
	Notices int
}

// LoginRequest is what LoginFetch is asked for.
type LoginRequest struct {
	Digest string // of the password given
	Now    int64  // Unix ms: the login's time
	TTLms  int64  // the offline queue's lifetime
	// Quota and QuotaNow (Unix ms): the post quota to read (N 0: none).
	Quota    Quota
	QuotaNow int64
	Batch    int // queue elements to read (0: none)
}

// loginFetchScript is a whole login in one step: the password check and
// the new generation, the kick that tells every older session of the user
// to go (a publish on the user's channel, carrying the new
// generation), and what the login goes on with: the post quota left (the
// sliding window of quotaScript, read without taking one) and the first
// batch of the offline queue with the user's last message id (fetchScript
// with nothing to remove). Being one script, no newer login can come
// between the generation and the kick. Every key holds the user's hash
// tag, so on a cluster they share a slot; the channel too (SPUBLISH where
// sharded). KEYS u:{id}, q:{id}, s:{id}, pq:{id}, bk:{id}, nt:{id}; ARGV now (ms), the
// queue's lifetime (ms), the account's lifetime (ms; 0: for ever), the
// digest, the user's channel, the publish command, the quota's now (ms),
// n (0: not read) and period (ms), the batch (0: no fetch). Reply {-1}
// when there is no such user or the digest differs (nothing changed, no
// kick), {-2} when the digest is right but the user is banned (its hash's
// "ban", broker/ban.go: read by the same HMGET, so a ban costs a login
// nothing; nothing changed, no kick), else {gen, receivers, remaining, seq, nnotices, nblocks, blocks...,
// elements...}: when the user blocks anyone (its hash's "bk",
// broker/block.go) the ids it blocks, whose set's expiry moves with the
// hash's; for a user who blocks nobody nblocks is 0 and no command more
// runs; nnotices is how many notices wait (notices.go), counted only for
// a user who was ever sent one (its hash's "nseq").
var loginFetchScript = newScript("login_fetch", `
local u = redis.call('HMGET', KEYS[1], 'pwd', 'seq', 'bk', 'ban', 'nseq')
if not u[1] or u[1] ~= ARGV[4] then return {-1} end
if u[4] then return {-2} end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'login', ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]))
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
local out = {gen, redis.call(ARGV[6], ARGV[5], 'k' .. string.format('%d', gen)), 0, 0, 0, 0}
if u[5] and KEYS[6] then out[5] = redis.call('LLEN', KEYS[6]) end
if u[3] and KEYS[5] then
  if ttl > 0 then redis.call('PEXPIRE', KEYS[5], ttl) else redis.call('PERSIST', KEYS[5]) end
  local bk = redis.call('SMEMBERS', KEYS[5])
  out[6] = #bk
  for i = 1, #bk do out[6 + i] = bk[i] end
end
local qn = tonumber(ARGV[8])
if qn > 0 then
  local now, period = tonumber(ARGV[7]), tonumber(ARGV[9])
  while true do
    local head = redis.call('LINDEX', KEYS[4], 0)
    if not head then break end
    local t = tonumber(head)
    if t ~= nil and t > now - period then break end
    redis.call('LPOP', KEYS[4])
  end
  local used = redis.call('LLEN', KEYS[4])
  if used > qn then used = qn end
  out[3] = qn - used
end
local m = tonumber(ARGV[10])
if m > 0 then
  out[4] = tonumber(u[2] or '0') or 0
  local items = redis.call('LRANGE', KEYS[2], 0, m - 1)
  local base = #out
  for i = 1, #items do out[base + i] = items[i] end
end
return out`)

// LoginFetch records a login of user id when r.Digest is the stored one:
// the new generation, the kick (payload "k<gen>" on the user's channel)
// and the reads a login needs next (the post quota and the queue's head),
// in one round trip. ok is false, and nothing changed nor was published,
// when the user does not exist or the digest differs; the error is
// ErrBanned, and nothing changed either, when the digest is right and the
// user is banned (a wrong password of a banned user is only wrong). The digests are
// compared with Lua's ==, which for Redis' Lua 5.1 compares two interned
// strings by address: it takes the same time whatever the digests hold,
// and an unknown user costs the same lookup.
func (c *Client) LoginFetch(ctx context.Context, id string, r LoginRequest) (st LoginState, ok bool, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ch := c.UserChannel(id)
	vs, err := loginFetchScript.Exec(ctx, c.rc, []string{c.userKey("u", id), c.userKey("q", id), c.userKey("s", id), c.userKey("pq", id), c.userKey("bk", id), c.userKey("nt", id)},
		[]string{strconv.FormatInt(r.Now, 10), strconv.FormatInt(r.TTLms, 10), strconv.FormatInt(c.accountTTL.Milliseconds(), 10),
			r.Digest, ch, c.publishCmd(ch), strconv.FormatInt(r.QuotaNow, 10), strconv.Itoa(r.Quota.N),
			strconv.FormatInt(r.Quota.PeriodMs, 10), strconv.Itoa(r.Batch)}).ToArray()
	if err != nil {
		return LoginState{}, false, c.wrap("login "+id, err)
	}
	var nums [5]int64
	for i := range min(len(vs), 5) {
		if nums[i], err = vs[i].AsInt64(); err != nil {
			return LoginState{}, false, c.wrap("login "+id, err)
		}
	}
	switch nums[0] {
	case -1:
		return LoginState{}, false, nil
	case -2:
		return LoginState{}, false, ErrBanned
	}
	if len(vs) < 6 {
		return LoginState{}, false, fmt.Errorf("login %s: unexpected reply of %d values", id, len(vs))
	}
	st = LoginState{Gen: nums[0], Receivers: nums[1], Remaining: int(nums[2]), Fetched: Fetched{Removed: true, Seq: nums[3]}, Notices: int(nums[4])}
	nb, err := vs[5].AsInt64()
	if err != nil || nb < 0 || int(nb) > len(vs)-6 {
		return LoginState{}, false, fmt.Errorf("login %s: bad count of blocks in the reply", id)
	}
	if nb > 0 {
		st.Blocks = make([]string, 0, nb)
		for _, v := range vs[6 : 6+nb] {
			s, err := v.ToString()
			if err != nil {
				return LoginState{}, false, c.wrap("login "+id, err)
			}
			st.Blocks = append(st.Blocks, s)
		}
	}
	if rest := vs[6+nb:]; len(rest) > 0 {
		st.Fetched.Msgs = make([]string, 0, len(rest))
		for _, v := range rest {
			s, err := v.ToString()
			if err != nil {
				return LoginState{}, false, c.wrap("login "+id, err)
			}
			st.Fetched.Msgs = append(st.Fetched.Msgs, s)
		}
	}
	return st, true, nil
}

// Secret returns the password-digest key stored in Redis, creating a random
// one on first use. Used only when the operator configured none.
func (c *Client) Secret(ctx context.Context) ([]byte, error) {
	return c.keptKey(ctx, "secret")
}

// ImageKey returns the image key kept in Redis, creating a random one the
// first time: for a node of role all on the embedded server with no
// --image-key, so that upload names survive a restart with its data.
func (c *Client) ImageKey(ctx context.Context) ([]byte, error) {
	return c.keptKey(ctx, "image_key")
}

// keptKey returns the 32-byte key kept at name, creating a random one the
// first time (SET NX: every node reading it gets the same).
func (c *Client) keptKey(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	b := make([]byte, 32)
	rand.Read(b)
	k := c.key(name)
	if err := c.rc.Do(ctx, c.rc.B().Set().Key(k).Value(hex.EncodeToString(b)).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return nil, c.wrap("store "+name, err)
	}
	s, err := c.rc.Do(ctx, c.rc.B().Get().Key(k).Build()).ToString()
	if err != nil {
		return nil, c.wrap("read "+name, err)
	}
	key, err := hex.DecodeString(s)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("the key stored at %s is not 32 hex-encoded bytes", k)
	}
	return key, nil
}

// Account states a check or a deletion finds (AccountCheck, DeleteAccount).
const (
	AccountGone          = -1 // there is no such account (deleted, expired, never made)
	AccountWrongPassword = 0  // the digest differs: nothing was changed
	AccountOK            = 1  // the digest is the stored one (and, for DeleteAccount, the account is gone now)
)

// accountCheckScript compares a digest with user id's as loginFetchScript
// does (Lua's == on two interned strings: a time independent of what they
// hold), changing nothing. KEYS u:{id}; ARGV the digest. Reply
// AccountGone, AccountWrongPassword or AccountOK.
var accountCheckScript = newScript("account_check", `
local p = redis.call('HGET', KEYS[1], 'pwd')
if not p then return -1 end
if p ~= ARGV[1] then return 0 end
return 1`)

// AccountCheck tells whether digest is user id's stored one, without
// changing anything: AccountOK, AccountWrongPassword or AccountGone.
func (c *Client) AccountCheck(ctx context.Context, id, digest string) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := accountCheckScript.Exec(ctx, c.rc, []string{c.userKey("u", id)}, []string{digest}).AsInt64()
	if err != nil {
		return 0, c.wrap("check account "+id, err)
	}
	return int(r), nil
}

// deleteAccountScript removes a user's account in one step, when the
// digest is the stored one: every per-user key (all of them carry the
// user's hash tag, so on a cluster they share one slot) and the
// announcement 'x' on the user's channel, which closes every live session
// of the user on every node (presence). KEYS u:{id} first, then the
// user's other keys; ARGV the digest, the user's channel, the publish
// command. Reply as accountCheckScript's; nothing changed unless
// AccountOK.
var deleteAccountScript = newScript("account_delete", `
local p = redis.call('HGET', KEYS[1], 'pwd')
if not p then return -1 end
if p ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS))
redis.call(ARGV[3], ARGV[2], 'x')
return 1`)

// accountKeys are the kinds of per-user key an account deletion removes:
// the account hash (credentials, generation, last login, message seq), the
// offline queue, its notify key, the per-sender counts, the push devices
// and push counts, the post quota window, the users it blocks
// (broker/block.go), its notices and the posts they told of (notices.go).
var accountKeys = [...]string{"u", "q", "n", "s", "pd", "pc", "pq", "bk", "nt", "ntp"}

// DeleteAccount removes user id's account and everything kept under its
// hash tag, and tells every node holding a session of the user to close
// it (payload "x" on the user's channel), in one atomic step, when digest
// is the stored one. It returns AccountOK when it did, else
// AccountWrongPassword or AccountGone, having changed nothing. Messages
// the user sent that wait in other users' queues are theirs and stay; the
// user's posts live in the {posts} slot and are the posts package's to
// delete, and the copies kept of its reported posts it deleted, with its
// review set, are EraseEvidenceOf's (reports.go), run after this. The id is never given out again (ids come from an INCR).
func (c *Client) DeleteAccount(ctx context.Context, id, digest string) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	keys := make([]string, len(accountKeys))
	for i, k := range accountKeys {
		keys[i] = c.userKey(k, id)
	}
	ch := c.UserChannel(id)
	r, err := deleteAccountScript.Exec(ctx, c.rc, keys, []string{digest, ch, c.publishCmd(ch)}).AsInt64()
	if err != nil {
		return 0, c.wrap("delete account "+id, err)
	}
	return int(r), nil
}
