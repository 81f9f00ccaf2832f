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

// ErrQueueFull is returned when the recipient's queue holds its cap of
// messages; ErrSenderShare when the sender holds its share of it. Nothing
// was stored: what a queue holds was acknowledged and is never dropped to
// make room.
var (
	ErrQueueFull   = errors.New("the recipient's queue is full")
	ErrSenderShare = errors.New("the sender holds its share of the recipient's queue")
	// ErrInactive: the recipient's last login is older than the queue's
	// lifetime, so the message could not be kept; nothing was stored.
	ErrInactive = errors.New("the recipient has not logged in within the queue's lifetime")
)

// storeScript appends one message to a user's queue and notifies the node
// holding the user, in one atomic step. The stored text is the delivered
// frame: '{"msg_id":<seq>,' .. members .. '}', so the id is first and the
// fetch script can read it without decoding JSON.
//
// KEYS: u:{to}, q:{to}, n:{to}, s:{to}. ARGV: members, cap, ttl ms, now ms,
// channel (empty: do not publish), the publish command: PUBLISH, or
// SPUBLISH on a cluster, where the user's channel is sharded (the embedded
// server knows no SPUBLISH), the sender ("" counts against no share), the
// sender's share (0: none), and "1" for a requeued frame. The channel
// carries the keys' hash tag, so it is in their slot. The expiry is
// relative (PEXPIRE), computed from the caller's clock, so an injected
// clock behaves like the real one. Returns the message id, or -1 for an
// unknown user, -2 when the queue holds cap messages, -3 when the sender
// holds its share, -4 when the recipient has not logged in within the
// queue's lifetime: such a queue would expire at once, so a message to it
// is refused rather than acknowledged and lost (a requeued frame, already
// accepted, is kept for a whole lifetime instead).
//
// s:{to} counts each sender's messages in the queue; the fetch script
// takes them off as it removes them (a stored chat frame starts with
// msg_id then from). It lives and dies with the queue (same expiry), and is
// dropped whenever the queue is found empty, so a count can never stay
// behind and lock a sender out. A requeued frame (a reply that could not be
// written before the connection ended) was accepted already: it is stored
// whatever the cap says, and counts against nobody.
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
local from = ARGV[7] or ''
local len = redis.call('LLEN', KEYS[2])
if len == 0 then redis.call('DEL', KEYS[4]) end
if ARGV[9] ~= '1' then
  if len >= tonumber(ARGV[2]) then return -2 end
  local share = tonumber(ARGV[8] or '0') or 0
  if from ~= '' and share > 0 and (tonumber(redis.call('HGET', KEYS[4], from) or '0') or 0) >= share then return -3 end
end
local ttl = (tonumber(login) or now) + tonumber(ARGV[3]) - now
if ttl <= 0 then
  if ARGV[9] ~= '1' then return -4 end
  ttl = tonumber(ARGV[3])
end
local seq = math.max((tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') or 0) + 1, now * 1000)
local id = string.format('%d', seq)
redis.call('HSET', KEYS[1], 'seq', id)
redis.call('RPUSH', KEYS[2], '{"msg_id":' .. id .. ',' .. ARGV[1] .. '}')
if from ~= '' then redis.call('HINCRBY', KEYS[4], from, 1) end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
if ARGV[5] ~= '' and redis.call('SET', KEYS[3], '1', 'NX', 'PX', 10000) then
  redis.call(ARGV[6], ARGV[5], 'n')
end
return seq`

// fetchScript first removes the head elements the node has processed
// (written to the connection, or skipped as undeliverable): ARGV[1] says how
// many, ARGV[2] is the exact text of the last of them. Should the head have
// changed meanwhile (a foreign writer), that element sits earlier (or is
// gone, and with it everything before it), so the script trims up to
// wherever it is now. Each removed chat frame gives its sender's place in
// the queue back (KEYS[3], see storeScript). It then returns up to ARGV[3]
// elements from the head; when there are none it clears the user's
// "notified" flag (KEYS[2]) in the same step, so the next store notifies
// again and no wakeup is lost. Acknowledging by position and content, not
// by a parsed id, means nothing a foreign writer puts in a queue can stall
// it or make the script drop what was not sent.
var fetchScript = newScript("chat_fetch", `
local n = tonumber(ARGV[1])
if n > 0 then
  local items = redis.call('LRANGE', KEYS[1], 0, n - 1)
  for i = #items, 1, -1 do
    if items[i] == ARGV[2] then
      redis.call('LTRIM', KEYS[1], i, -1)
      for j = 1, i do
        local from = string.match(items[j], '^{"msg_id":%d+,"from":"([^"]*)"')
        if from and redis.call('HINCRBY', KEYS[3], from, -1) <= 0 then
          redis.call('HDEL', KEYS[3], from)
        end
      end
      break
    end
  end
end
local m = tonumber(ARGV[3])
if m <= 0 then return {} end
local items = redis.call('LRANGE', KEYS[1], 0, m - 1)
if #items == 0 then redis.call('DEL', KEYS[2]) end
return items`)

// StoreOptions bound a user's offline queue, and say who a message is from.
type StoreOptions struct {
	Cap         int64 // at most this many messages; beyond, a message is refused (ErrQueueFull)
	SenderShare int64 // at most this many of them from one sender (ErrSenderShare); 0: no share
	TTLms       int64 // the queue expires this long after the user's last login
	// From is the sender counted against SenderShare; "" counts against
	// no one.
	From string
	// Requeue stores a frame that was accepted already (a reply that could
	// not be written): never refused, counted against no one.
	Requeue bool
}

// StoreMessage appends a message to user to's queue. members is the frame's
// JSON members without braces; the stored frame gets "msg_id" first, and a
// chat message's members start with "from" (the fetch script reads it
// there). notify publishes on the user's channel so that a node holding the
// user fetches it. It returns the message id, or ErrNoUser, ErrQueueFull or
// ErrSenderShare.
func (c *Client) StoreMessage(ctx context.Context, to string, members []byte, now int64, opt StoreOptions, notify bool) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ch := ""
	if notify {
		ch = c.UserChannel(to)
	}
	pub := c.publishCmd(c.UserChannel(to))
	keys := []string{c.userKey("u", to), c.userKey("q", to), c.userKey("n", to), c.userKey("s", to)}
	from, requeue := opt.From, "0"
	if opt.Requeue {
		from, requeue = "", "1"
	}
	args := []string{string(members), strconv.FormatInt(opt.Cap, 10), strconv.FormatInt(opt.TTLms, 10),
		strconv.FormatInt(now, 10), ch, pub, from, strconv.FormatInt(opt.SenderShare, 10), requeue}
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
	switch seq {
	case -1:
		return 0, ErrNoUser
	case -2:
		return 0, ErrQueueFull
	case -3:
		return 0, ErrSenderShare
	case -4:
		return 0, ErrInactive
	}
	return seq, nil
}

// FetchMessages removes the processed head of user id's queue (count
// elements, the last of which is last) and returns up to n of the next ones,
// oldest first (none when n is 0).
func (c *Client) FetchMessages(ctx context.Context, id string, count int, last string, n int) ([]string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	msgs, err := fetchScript.Exec(ctx, c.rc, []string{c.userKey("q", id), c.userKey("n", id), c.userKey("s", id)},
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

// QueuedFrom returns how many messages of sender from user id's queue
// counts against from's share.
func (c *Client) QueuedFrom(ctx context.Context, id, from string) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := c.rc.Do(ctx, c.rc.B().Hget().Key(c.userKey("s", id)).Field(from).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	return n, c.wrap("queued messages of "+from+" for "+id, err)
}

// RawHSet sets a field of user id's hash as is. Tests use it to plant what
// a lost write or a foreign writer could leave there.
func (c *Client) RawHSet(ctx context.Context, id, field, v string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("hset", c.rc.Do(ctx, c.rc.B().Hset().Key(c.userKey("u", id)).FieldValue().FieldValue(field, v).Build()).Error())
}

// RawHIncr adds by to field of user id's hash of the given kind ("u",
// "s") as is. Tests use it to plant a count that a lost write could leave.
func (c *Client) RawHIncr(ctx context.Context, kind, id, field string, by int64) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("hincrby", c.rc.Do(ctx, c.rc.B().Hincrby().Key(c.userKey(kind, id)).Field(field).Increment(by).Build()).Error())
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
	// A refusal (seq < 0) stored nothing: nothing to wait for.
	if err == nil && seq >= 0 && acked < int64(c.waitN) {
		err = fmt.Errorf("%w: the message reached %d of %d replicas", ErrUnavailable, acked, c.waitN)
	}
	return seq, err
}
