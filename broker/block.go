package broker

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/redis/rueidis"
)

// Blocking a user (docs/protocol.md "Blocking a user"). A user's blocks are
// the set bk:{id} (the ids of the users it blocks), next to its hash
// u:{id} and in its slot. The hash's field "bk" holds how many there are,
// and is absent when there are none: the chat store script already reads
// the recipient's hash (HMGET), so it learns in that same call whether the
// recipient blocks anyone, and only then asks the set about the sender. A
// recipient who blocks nobody costs no command more.
//
// The set lives and dies with the account: every change sets its expiry to
// the hash's, and each login, which moves the hash's expiry, moves the
// set's with it (loginFetchScript).

// ErrBlocked: the recipient blocks the sender; nothing was stored.
var ErrBlocked = errors.New("the recipient blocks the sender")

// ErrTooManyBlocks: the user blocks as many users as the cap allows.
var ErrTooManyBlocks = errors.New("the user blocks as many users as allowed")

// blockScript adds ARGV[1] to the blocks of the user of KEYS u:{id},
// bk:{id}, unless the set holds ARGV[2] (the cap) ids already. It returns
// the number of blocks after, -1 when the cap refuses it, -2 when the
// blocking user's account is gone (expired, deleted: a hash made now would
// never expire). Blocking an id blocked already changes nothing and is not
// refused by the cap.
var blockScript = newScript("block_user", `
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local n = redis.call('SCARD', KEYS[2])
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return n end
if n >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'bk', n + 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
return n + 1`)

// unblockScript takes ARGV[1] off the blocks of the user of KEYS u:{id},
// bk:{id} and returns how many are left; the hash's count goes with the
// last (absent: blocks nobody). An id not blocked changes nothing.
var unblockScript = newScript("unblock_user", `
redis.call('SREM', KEYS[2], ARGV[1])
local n = redis.call('SCARD', KEYS[2])
if n == 0 then
  redis.call('HDEL', KEYS[1], 'bk')
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'bk', n)
end
return n`)

// UserExists tells whether user id has an account (one a message can be
// stored for: the store script's test).
func (c *Client) UserExists(ctx context.Context, id string) (bool, error) {
	ok, err := c.do(ctx, c.rc.B().Hexists().Key(c.userKey("u", id)).Field("login").Build()).AsBool()
	if err != nil {
		return false, c.wrap("look up user "+id, err)
	}
	return ok, nil
}

// Block makes user block user target: the store script refuses target's
// messages to user (ErrBlocked) from now on. It returns how many users
// user blocks after, ErrTooManyBlocks when it blocks max already (target
// not among them), or ErrNoUser when user's own account is gone. The
// caller checks that target exists (UserExists): its hash is in another
// slot.
func (c *Client) Block(ctx context.Context, user, target string, max int) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := blockScript.Exec(ctx, c.rc, []string{c.userKey("u", user), c.userKey("bk", user)},
		[]string{target, strconv.Itoa(max)}).AsInt64()
	if err != nil {
		return 0, c.wrap("block "+target+" for "+user, err)
	}
	switch n {
	case -1:
		return 0, ErrTooManyBlocks
	case -2:
		return 0, ErrNoUser
	}
	return int(n), nil
}

// Unblock takes target off user's blocks (nothing when it was not among
// them) and returns how many are left.
func (c *Client) Unblock(ctx context.Context, user, target string) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := unblockScript.Exec(ctx, c.rc, []string{c.userKey("u", user), c.userKey("bk", user)},
		[]string{target}).AsInt64()
	if err != nil {
		return 0, c.wrap("unblock "+target+" for "+user, err)
	}
	return int(n), nil
}

// Blocks returns the ids user blocks, in increasing numeric order.
func (c *Client) Blocks(ctx context.Context, user string) ([]string, error) {
	ids, err := c.do(ctx, c.rc.B().Smembers().Key(c.userKey("bk", user)).Build()).AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, c.wrap("blocks of "+user, err)
	}
	SortIDs(ids)
	return ids, nil
}

// SortIDs sorts decimal user ids by their value.
func SortIDs(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
}

// BlockKeyTTL returns the remaining lifetime of user's block set as PTTL
// says it (-1ns: never expires, -2ns: no set). Tests compare it with the
// account's.
func (c *Client) BlockKeyTTL(ctx context.Context, user string) (int64, error) {
	ms, err := c.do(ctx, c.rc.B().Pttl().Key(c.userKey("bk", user)).Build()).AsInt64()
	return ms, c.wrap("block set expiry of "+user, err)
}
