package broker

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// ErrNoUser is returned when a message is addressed to an unknown user.
var ErrNoUser = errors.New("no such user")

// storeScript appends one message to a user's queue and notifies the node
// holding the user, in one atomic step. The stored text is the delivered
// frame: '{"msg_id":<seq>,' .. members .. '}', so the id is first and the
// fetch script can read it without decoding JSON.
//
// KEYS: u:{to}, q:{to}, n:{to}. ARGV: members, cap, ttl ms, now ms, channel
// (empty: do not publish), and the publish command: PUBLISH, or SPUBLISH on a
// cluster, where the user's channel is sharded (the embedded server knows
// no SPUBLISH). The channel carries the keys' hash tag, so it is in their
// slot. The expiry is relative (PEXPIRE), computed from the caller's clock,
// so an injected clock behaves like the real one. Returns the message id,
// or -1 for an unknown user.
var (
	storeScript = newScript("chat_store", StoreScriptSource)
	storeSHA    = sha1hex(StoreScriptSource)
)

func sha1hex(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// Message ids are max(previous + 1, now in ms × 1000): strictly increasing
// per recipient whatever the nodes' clocks say, and after a Redis failover
// that lost the last writes (a message delivered but never replicated, whose
// sender got "unavailable"), the ids handed out next are above the lost ones
// rather than equal to them, so a client that drops repeated ids never drops
// a new message. They stay below 2^53, exact in JavaScript; the script
// formats them itself because Redis would print a large Lua number in
// exponent notation.
//
// StoreScriptSource is the store script's text, exported so that
// scripts/bench-chat.sh can run the very same script under redis-benchmark
// as the ceiling of one chat message's Redis work.
const StoreScriptSource = `
local login = redis.call('HGET', KEYS[1], 'login')
if not login then return -1 end
local now = tonumber(ARGV[4])
local seq = math.max((tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') or 0) + 1, now * 1000)
local id = string.format('%d', seq)
redis.call('HSET', KEYS[1], 'seq', id)
local cap = tonumber(ARGV[2])
if redis.call('RPUSH', KEYS[2], '{"msg_id":' .. id .. ',' .. ARGV[1] .. '}') > cap then
  redis.call('LTRIM', KEYS[2], -cap, -1)
end
local ttl = (tonumber(login) or now) + tonumber(ARGV[3]) - now
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('DEL', KEYS[2]) end
if ARGV[5] ~= '' and redis.call('SET', KEYS[3], '1', 'NX', 'PX', 10000) then
  redis.call(ARGV[6], ARGV[5], 'n')
end
return seq`

// fetchScript first removes the head elements the node has processed
// (written to the connection, or skipped as undeliverable): ARGV[1] says how
// many, ARGV[2] is the exact text of the last of them. If the cap trimmed
// the head meanwhile, that element sits earlier (or is gone, and with it
// everything before it), so the script trims up to wherever it is now. It
// then returns up to ARGV[3] elements from the head; when there are none it
// clears the user's "notified" flag (KEYS[2]) in the same step, so the next
// store notifies again and no wakeup is lost. Acknowledging by
// position and content, not by a parsed id, means nothing a foreign writer
// puts in a queue can stall it or make the script drop what was not sent.
var fetchScript = newScript("chat_fetch", `
local n = tonumber(ARGV[1])
if n > 0 then
  local items = redis.call('LRANGE', KEYS[1], 0, n - 1)
  for i = #items, 1, -1 do
    if items[i] == ARGV[2] then
      redis.call('LTRIM', KEYS[1], i, -1)
      break
    end
  end
end
local m = tonumber(ARGV[3])
if m <= 0 then return {} end
local items = redis.call('LRANGE', KEYS[1], 0, m - 1)
if #items == 0 then redis.call('DEL', KEYS[2]) end
return items`)

// StoreOptions bound a user's offline queue.
type StoreOptions struct {
	Cap   int64 // at most this many messages; the oldest are dropped
	TTLms int64 // the queue expires this long after the user's last login
}

// StoreMessage appends a message to user to's queue. members is the frame's
// JSON members without braces; the stored frame gets "msg_id" first.
// notify publishes on the user's channel so that a node holding the user
// fetches it. It returns the message id, or ErrNoUser.
func (c *Client) StoreMessage(ctx context.Context, to string, members []byte, now int64, opt StoreOptions, notify bool) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ch := ""
	if notify {
		ch = c.UserChannel(to)
	}
	pub := c.publishCmd(c.UserChannel(to))
	keys := []string{c.userKey("u", to), c.userKey("q", to), c.userKey("n", to)}
	args := []string{string(members), strconv.FormatInt(opt.Cap, 10), strconv.FormatInt(opt.TTLms, 10),
		strconv.FormatInt(now, 10), ch, pub}
	var seq int64
	var err error
	if c.waitN > 0 {
		seq, err = c.storeReplicated(ctx, keys, args)
	} else {
		seq, err = storeScript.Exec(ctx, c.rc, keys, args).AsInt64()
	}
	if err != nil {
		return 0, c.wrap("store message for "+to, err)
	}
	if seq < 0 {
		return 0, ErrNoUser
	}
	return seq, nil
}

// FetchMessages removes the processed head of user id's queue (count
// elements, the last of which is last) and returns up to n of the next ones,
// oldest first (none when n is 0).
func (c *Client) FetchMessages(ctx context.Context, id string, count int, last string, n int) ([]string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	msgs, err := fetchScript.Exec(ctx, c.rc, []string{c.userKey("q", id), c.userKey("n", id)},
		[]string{strconv.Itoa(count), last, strconv.Itoa(n)}).AsStrSlice()
	return msgs, c.wrap("fetch messages of "+id, err)
}

// QueueLen returns the number of undelivered messages of user id.
func (c *Client) QueueLen(ctx context.Context, id string) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := c.rc.Do(ctx, c.rc.B().Llen().Key(c.userKey("q", id)).Build()).AsInt64()
	return n, c.wrap("queue length of "+id, err)
}

// RawHSet sets a field of user id's hash as is. Tests use it to plant what
// a lost write or a foreign writer could leave there.
func (c *Client) RawHSet(ctx context.Context, id, field, v string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("hset", c.rc.Do(ctx, c.rc.B().Hset().Key(c.userKey("u", id)).FieldValue().FieldValue(field, v).Build()).Error())
}

// RawPush appends v to user id's queue as is. Tests use it to plant what a
// damaged or foreign writer could leave there.
func (c *Client) RawPush(ctx context.Context, id, v string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("push", c.rc.Do(ctx, c.rc.B().Rpush().Key(c.userKey("q", id)).Element(v).Build()).Error())
}

// storeReplicated runs the store script and then WAIT on the same
// connection, so the ack waits until c.waitN replicas have the message.
func (c *Client) storeReplicated(ctx context.Context, keys, args []string) (int64, error) {
	var seq, acked int64
	err := c.rc.Dedicated(func(dc rueidis.DedicatedClient) error {
		wait := dc.B().Wait().Numreplicas(int64(c.waitN)).Timeout(c.tmo.Milliseconds()).Build()
		rs := dc.DoMulti(ctx, dc.B().Evalsha().Sha1(storeSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		if re, ok := rueidis.IsRedisErr(rs[0].Error()); ok && re.IsNoScript() {
			wait = dc.B().Wait().Numreplicas(int64(c.waitN)).Timeout(c.tmo.Milliseconds()).Build()
			rs = dc.DoMulti(ctx, dc.B().Eval().Script(StoreScriptSource).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		}
		var err error
		if seq, err = rs[0].AsInt64(); err != nil {
			return err
		}
		acked, err = rs[1].AsInt64()
		return err
	})
	if err == nil && seq >= 0 && acked < int64(c.waitN) {
		err = fmt.Errorf("%w: the message reached %d of %d replicas", ErrUnavailable, acked, c.waitN)
	}
	return seq, err
}
