package broker

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

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

// storeScript appends one message to a user's queue and carries it to the
// node holding the user, in one atomic step. The stored text is the
// delivered frame: '{"msg_id":<seq>,' .. members .. '}', so the id is first
// and the fetch script can read it without decoding JSON.
//
// KEYS: u:{to}, q:{to}, bk:{to} (the recipient's blocks, broker/block.go;
// read only when the hash's "bk" says there are any, so scripts/ that pass
// another key there measure the same work), s:{to}. ARGV: members, cap, ttl
// ms, now ms, channel (empty: do not publish), the publish command:
// PUBLISH, or SPUBLISH on a cluster, where the user's channel is sharded
// (the embedded server knows no SPUBLISH), the sender ("" counts against no
// share), the sender's share (0: none), and "1" for a requeued frame. The
// channel carries the keys' hash tag, so it is in their slot. The expiry is
// relative (PEXPIRE), computed from the caller's clock, so an injected
// clock behaves like the real one. KEYS[5], KEYS[6] (pd:{to}, pc:{to}) and
// ARGV[10] ("1": count for push) are optional. Returns {id, prev, push}:
// the message id, the id of the message stored before it (the user's
// previous seq, 0 for none) and the push count (below), or {-1, 0} for an unknown user, {-2, 0} when the queue holds cap
// messages, {-3, 0} when the sender holds its share, {-4, 0} when the
// recipient has not logged in within the queue's lifetime, {-6, 0} when
// the recipient blocks the sender (a requeued frame is never refused): such a queue
// would expire at once, so a message to it is refused rather than
// acknowledged and lost (a requeued frame, already accepted, is kept for a
// whole lifetime instead).
//
// Push notifications (broker/push.go): with ARGV[10] "1" (a notifiable
// message: not a receipt) and a sender, the script also counts the message
// for its sender in pc:{to} (KEYS[6]) when the recipient has a push device
// (pd:{to}, KEYS[5]), and the reply's third value is that count (0: no
// device, nothing counted). Both keys are in the recipient's slot, so a
// recipient without a device costs one EXISTS inside this call instead of a
// script call of its own; only a counted message makes the caller enter a
// due notification (a second call, in the shard's slot). The count is made
// in the very step that stores and publishes the message, so no write of
// the message to a live connection (which clears the count, see
// removeScript) can come before it: the highest-written-id check the
// separate count script needs (pushCountScript) has nothing to catch here.
// pc:{to} expires with the queue (the same ttl).
//
// With a channel, every stored message is published on it as
// 'n' .. prev .. ' ' .. frame (see CarriedPayload): the node holding the
// user writes it without fetching it, and prev lets that node prove that it
// has seen every message before this one (a chain of ids); a node that
// cannot prove it (a gap: a requeued frame, a message lost with a
// subscriber connection) fetches the queue instead. The message stays in
// the queue until the node removes it after writing it.
//
// What Redis spends on a script call is mostly the call and each
// redis.call in it, not the commands' own work, so the common path makes
// five: HMGET, RPUSH, HINCRBY, HSET, PUBLISH. The message is pushed first
// and taken back (RPOP, and its count) when the cap or the sender's share
// refuses it: a refusal costs a little more so that a stored message costs
// less. The expiries are set when the queue (or a sender's count) starts,
// to the same instant the login script sets: the last login plus the
// queue's lifetime.
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
local u = redis.call('HMGET', KEYS[1], 'login', 'seq', 'bk')
local login = u[1]
if not login then return {-1, 0} end
local now = tonumber(ARGV[4])
local from = ARGV[7] or ''
local requeue = ARGV[9] == '1'
if u[3] and from ~= '' and not requeue and redis.call('SISMEMBER', KEYS[3], from) == 1 then return {-6, 0} end
local ttl = (tonumber(login) or now) + tonumber(ARGV[3]) - now
local reset = false
if ttl <= 0 then
  if not requeue then return {-4, 0} end
  ttl = tonumber(ARGV[3])
  reset = true
end
local prev = tonumber(u[2] or '0') or 0
local seq = math.max(prev + 1, now * 1000)
local id = string.format('%d', seq)
local frame = '{"msg_id":' .. id .. ',' .. ARGV[1] .. '}'
local len = redis.call('RPUSH', KEYS[2], frame)
if len == 1 then
  redis.call('DEL', KEYS[4])
  reset = true
end
if from ~= '' then
  local k = redis.call('HINCRBY', KEYS[4], from, '1')
  if not requeue then
    local share = tonumber(ARGV[8] or '0') or 0
    local refuse = 0
    if len > tonumber(ARGV[2]) then refuse = -2 elseif share > 0 and k > share then refuse = -3 end
    if refuse < 0 then
      redis.call('RPOP', KEYS[2])
      if k <= 1 then redis.call('HDEL', KEYS[4], from) else redis.call('HINCRBY', KEYS[4], from, -1) end
      return {refuse, 0}
    end
  end
  if k == 1 and not reset then redis.call('PEXPIRE', KEYS[4], ttl) end
elseif not requeue and len > tonumber(ARGV[2]) then
  redis.call('RPOP', KEYS[2])
  return {-2, 0}
end
redis.call('HSET', KEYS[1], 'seq', id)
if reset then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
local push = 0
if ARGV[10] == '1' and from ~= '' and not requeue and redis.call('EXISTS', KEYS[5]) == 1 then
  push = redis.call('HINCRBY', KEYS[6], 'c:' .. from, 1)
  redis.call('PEXPIRE', KEYS[6], ttl)
end
if ARGV[5] ~= '' then
  redis.call(ARGV[6], ARGV[5], 'n' .. string.format('%d', prev) .. ' ' .. frame)
end
return {seq, prev, push}`

// fetchScript first removes the head elements the node has processed
// (written to the connection, or skipped as undeliverable): ARGV[1] says how
// many, ARGV[2] is the exact text of the last of them. Should the head have
// changed meanwhile (a foreign writer), that element sits earlier (or is
// gone, and with it everything before it), so the script trims up to
// wherever it is now; when it is not among the first ARGV[1] elements
// nothing is removed and the reply says so, and the node fetches the queue
// afresh. Each removed chat frame gives its sender's place in the queue
// back (KEYS[2], see storeScript), and clears its sender's push count
// (KEYS[4], optional; see pushWrittenLua). It then returns up to ARGV[3]
// elements from the head. Acknowledging by position and content, not by a
// parsed id, means nothing a foreign writer puts in a queue can stall it or
// make the script drop what was not sent.
//
// KEYS: q:{id}, s:{id}, u:{id}, pc:{id}. The reply is {removed, seq,
// cleared, elements...}: removed is "1" when the processed head was removed
// (or there was none to remove), "0" when it was not found; seq is the id
// of the last message stored for the user (its "seq", "0" for none), read
// in the same step as the elements, so a node that got the whole queue
// knows which carried message comes next (the one whose prev is seq);
// cleared names the senders whose push counts the removal cleared,
// separated by spaces, for the caller to cancel their due notifications.
var fetchScript = newScript("chat_fetch", pushWrittenLua+`
local removed, cleared = '1', ''
local n = tonumber(ARGV[1])
if n > 0 then
  removed = '0'
  local items = redis.call('LRANGE', KEYS[1], 0, n - 1)
  for i = #items, 1, -1 do
    if items[i] == ARGV[2] then
      redis.call('LTRIM', KEYS[1], i, -1)
      local top, gone = {}, {}
      for j = 1, i do
        local id, from = string.match(items[j], '^{"msg_id":(%d+),"from":"([^"]*)"')
        if from then
          gone[from] = (gone[from] or 0) + 1
          wrote(top, from, id)
        end
      end
      giveBack(KEYS[2], gone)
      if KEYS[4] then cleared = pushWritten(KEYS[4], top) end
      removed = '1'
      break
    end
  end
end
local m = tonumber(ARGV[3])
if m <= 0 then return {removed, '0', cleared} end
local out = {removed, string.format('%d', tonumber(redis.call('HGET', KEYS[3], 'seq') or '0') or 0), cleared}
local items = redis.call('LRANGE', KEYS[1], 0, m - 1)
for i = 1, #items do out[i + 3] = items[i] end
return out`)

// pushWrittenLua is the part of the fetch and remove scripts that tells
// push notifications (broker/push.go) which messages were written to a
// live connection, in the call that removes them, so a user without a
// push device costs no call of its own: wrote notes a removed chat frame's
// sender (a user id) and id; pushWritten then, when the user has push
// counts at all (pc:{id} exists: only a user with a device has), clears
// each noted sender's count and returns the senders whose count it
// cleared, separated by spaces. giveBack takes the removed messages' places off
// their senders' counts in s:{id}, one HINCRBY per sender (gone: sender ->
// messages removed), dropping a count that reaches 0.
const pushWrittenLua = `
local function wrote(top, from, id)
  if string.match(from, '^%d+$') then
    local v = tonumber(id)
    if not top[from] or v > top[from] then top[from] = v end
  end
end
local function pushWritten(pc, top)
  if next(top) == nil or redis.call('EXISTS', pc) == 0 then return '' end
  local cleared = {}
  for f in pairs(top) do
    if redis.call('HDEL', pc, 'c:' .. f) == 1 then cleared[#cleared + 1] = f end
  end
  return table.concat(cleared, ' ')
end
local function giveBack(s, gone)
  for f, k in pairs(gone) do
    if redis.call('HINCRBY', s, f, -k) <= 0 then redis.call('HDEL', s, f) end
  end
end
`

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
	// Push counts the message from From for a push notification when the
	// recipient has a push device, in the same script call (Stored.Push).
	Push bool
}

// Stored says where a stored message sits: its id, and the id of the
// message stored for the same user just before it (0: none).
type Stored struct {
	ID, Prev int64
	// Push is the number of messages from the sender now waiting for a
	// push notification, this one included; 0 when the message was not
	// counted (the recipient has no push device, or StoreOptions.Push was
	// false). When it is not 0 the caller makes a notification due
	// (EnterPush).
	Push int64
}

// StoreMessage appends a message to user to's queue. members is the frame's
// JSON members without braces; the stored frame gets "msg_id" first, and a
// chat message's members start with "from" (the fetch script reads it
// there). notify publishes the stored frame on the user's channel so that a
// node holding the user writes it (CarriedPayload). It returns the message
// id, or ErrNoUser, ErrQueueFull or ErrSenderShare.
func (c *Client) StoreMessage(ctx context.Context, to string, members []byte, now int64, opt StoreOptions, notify bool) (int64, error) {
	st, err := c.Store(ctx, to, members, now, opt, notify)
	return st.ID, err
}

// Store is StoreMessage that also returns the previous message's id, which
// a caller delivering the frame itself (the recipient is on this node)
// passes on with it.
func (c *Client) Store(ctx context.Context, to string, members []byte, now int64, opt StoreOptions, notify bool) (Stored, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ch := ""
	if notify {
		ch = c.UserChannel(to)
	}
	pub := c.publishCmd(c.UserChannel(to))
	keys := []string{c.userKey("u", to), c.userKey("q", to), c.userKey("bk", to), c.userKey("s", to),
		c.userKey("pd", to), c.userKey("pc", to)}
	from, requeue, push := opt.From, "0", "0"
	if opt.Requeue {
		from, requeue = "", "1"
	}
	if opt.Push {
		push = "1"
	}
	args := []string{string(members), strconv.FormatInt(opt.Cap, 10), strconv.FormatInt(opt.TTLms, 10),
		strconv.FormatInt(now, 10), ch, pub, from, strconv.FormatInt(opt.SenderShare, 10), requeue, push}
	var st Stored
	var err error
	if c.waitN > 0 {
		st, err = c.storeReplicated(ctx, keys, args)
	} else {
		st, err = storedOf(storeScript.Exec(ctx, c.rc, keys, args))
	}
	if err != nil {
		return Stored{}, c.wrap("store message for "+to, err)
	}
	switch st.ID {
	case -1:
		return Stored{}, ErrNoUser
	case -2:
		return Stored{}, ErrQueueFull
	case -3:
		return Stored{}, ErrSenderShare
	case -4:
		return Stored{}, ErrInactive
	case -6:
		return Stored{}, ErrBlocked
	}
	return st, nil
}

func storedOf(r rueidis.RedisResult) (Stored, error) {
	v, err := r.ToArray()
	if err != nil {
		return Stored{}, err
	}
	if len(v) != 2 && len(v) != 3 {
		return Stored{}, fmt.Errorf("store script replied %d values, want 3", len(v))
	}
	id, err := v[0].AsInt64()
	if err != nil {
		return Stored{}, err
	}
	st := Stored{ID: id}
	if st.Prev, err = v[1].AsInt64(); err != nil {
		return Stored{}, err
	}
	if len(v) == 3 {
		st.Push, err = v[2].AsInt64()
	}
	return st, err
}

// StoredFrame is the text the store script stores for members under id:
// what a caller that delivers the message itself writes, byte for byte
// what the fetch script will find at the head of the queue.
func StoredFrame(id int64, members []byte) string {
	b := make([]byte, 0, len(members)+32)
	b = append(b, `{"msg_id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, ',')
	b = append(b, members...)
	b = append(b, '}')
	return string(b)
}

// ParseCarried splits the payload of a carried message (what the store
// script publishes after its 'n': prev, a space, the stored frame) into the
// previous message's id, the message's id (read from the frame's leading
// msg_id) and the frame.
func ParseCarried(p string) (prev, id int64, frame string, ok bool) {
	sp := strings.IndexByte(p, ' ')
	if sp <= 0 {
		return 0, 0, "", false
	}
	prev, err := strconv.ParseInt(p[:sp], 10, 64)
	if err != nil {
		return 0, 0, "", false
	}
	frame = p[sp+1:]
	const head = `{"msg_id":`
	if !strings.HasPrefix(frame, head) {
		return 0, 0, "", false
	}
	end := strings.IndexByte(frame[len(head):], ',')
	if end <= 0 {
		return 0, 0, "", false
	}
	if id, err = strconv.ParseInt(frame[len(head):len(head)+end], 10, 64); err != nil {
		return 0, 0, "", false
	}
	return prev, id, frame, true
}

// Fetched is what one fetch script run did and found.
type Fetched struct {
	// Removed is false when the processed head given was not found among
	// the queue's first elements (a foreign writer, an expired queue):
	// nothing was removed.
	Removed bool
	// Seq is the id of the last message stored for the user when the
	// elements were read (0 when none were asked for).
	Seq  int64
	Msgs []string
}

// FetchMessages removes the processed head of user id's queue (count
// elements, the last of which is last) and returns up to n of the next ones,
// oldest first (none when n is 0).
func (c *Client) FetchMessages(ctx context.Context, id string, count int, last string, n int) ([]string, error) {
	f, err := c.Fetch(ctx, id, count, last, n)
	return f.Msgs, err
}

// Fetch is FetchMessages that also says whether the head was removed, and
// the user's last message id read with the elements.
func (c *Client) Fetch(ctx context.Context, id string, count int, last string, n int) (Fetched, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	v, err := fetchScript.Exec(ctx, c.rc, []string{c.userKey("q", id), c.userKey("s", id), c.userKey("u", id), c.userKey("pc", id)},
		[]string{strconv.Itoa(count), last, strconv.Itoa(n)}).AsStrSlice()
	if err == nil && len(v) < 3 {
		err = fmt.Errorf("fetch script replied %d values, want at least 3", len(v))
	}
	if err != nil {
		return Fetched{}, c.wrap("fetch messages of "+id, err)
	}
	seq, _ := strconv.ParseInt(v[1], 10, 64)
	if v[2] != "" {
		c.cancelDue(ctx, pushCleared(nil, id, v[2]))
	}
	return Fetched{Removed: v[0] == "1", Seq: seq, Msgs: v[3:]}, nil
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
func (c *Client) storeReplicated(ctx context.Context, keys, args []string) (Stored, error) {
	var st Stored
	var acked int64
	err := c.rc.Dedicated(func(dc rueidis.DedicatedClient) error {
		wait := dc.B().Wait().Numreplicas(int64(c.waitN)).Timeout(c.tmo.Milliseconds()).Build()
		rs := dc.DoMulti(ctx, dc.B().Evalsha().Sha1(storeSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		if re, ok := rueidis.IsRedisErr(rs[0].Error()); ok && re.IsNoScript() {
			wait = dc.B().Wait().Numreplicas(int64(c.waitN)).Timeout(c.tmo.Milliseconds()).Build()
			rs = dc.DoMulti(ctx, dc.B().Eval().Script(StoreScriptSource).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		}
		var err error
		if st, err = storedOf(rs[0]); err != nil {
			return err
		}
		acked, err = rs[1].AsInt64()
		return err
	})
	// A refusal (seq < 0) stored nothing: nothing to wait for.
	if err == nil && st.ID >= 0 && acked < int64(c.waitN) {
		err = fmt.Errorf("%w: the message reached %d of %d replicas", ErrUnavailable, acked, c.waitN)
	}
	return st, err
}

// removeScript removes the written heads of several users' queues in one
// call, each exactly as the fetch script's first part does (see
// fetchScript, and pushWrittenLua for the push counts): KEYS are q:{id},
// s:{id}, pc:{id} per user, ARGV count, last per user. It returns, per
// user, 1 when the head was removed and 0 when it was not found (nothing
// removed), then per user the senders whose push counts were cleared
// (space-separated, "" for none). One call for many users: the price of a
// chat message in Redis is the script call, not the commands in it.
var removeScript = newScript("chat_remove", pushWrittenLua+`
local users = #KEYS / 3
local out = {}
for k = 1, users do
  local q, s, pc = KEYS[3 * k - 2], KEYS[3 * k - 1], KEYS[3 * k]
  local n, last = tonumber(ARGV[2 * k - 1]), ARGV[2 * k]
  out[k] = 0
  out[users + k] = ''
  local items = redis.call('LRANGE', q, 0, n - 1)
  for i = #items, 1, -1 do
    if items[i] == last then
      redis.call('LTRIM', q, i, -1)
      local top, gone = {}, {}
      for j = 1, i do
        local id, from = string.match(items[j], '^{"msg_id":(%d+),"from":"([^"]*)"')
        if from then
          gone[from] = (gone[from] or 0) + 1
          wrote(top, from, id)
        end
      end
      giveBack(s, gone)
      out[users + k] = pushWritten(pc, top)
      out[k] = 1
      break
    end
  end
end
return out`)

// Head is the written head of a user's queue: Count elements, the last of
// which is Last.
type Head struct {
	User  string
	Count int
	Last  string
}

// RemoveHeads removes the written heads of several users' queues: in one
// script call, or on a cluster in one per hash slot (pipelined). removed[i]
// is false when heads[i] was not found at the front of its queue (nothing
// of it was removed). err is for the whole call: any head may or may not
// have been removed, and removing it again later is harmless (it is not
// found, or found where it is).
func (c *Client) RemoveHeads(ctx context.Context, heads []Head) (removed []bool, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	removed = make([]bool, len(heads))
	// Which heads each call carries, in order.
	var groups [][]int
	if c.cluster.Load() {
		bySlot := map[uint16]int{}
		for i, h := range heads {
			s := keySlot(c.userKey("q", h.User))
			g, ok := bySlot[s]
			if !ok {
				g = len(groups)
				bySlot[s] = g
				groups = append(groups, nil)
			}
			groups[g] = append(groups[g], i)
		}
	} else {
		all := make([]int, len(heads))
		for i := range all {
			all[i] = i
		}
		groups = [][]int{all}
	}
	execs := make([]rueidis.LuaExec, len(groups))
	for g, idx := range groups {
		e := rueidis.LuaExec{Keys: make([]string, 0, 3*len(idx)), Args: make([]string, 0, 2*len(idx))}
		for _, i := range idx {
			h := heads[i]
			e.Keys = append(e.Keys, c.userKey("q", h.User), c.userKey("s", h.User), c.userKey("pc", h.User))
			e.Args = append(e.Args, strconv.Itoa(h.Count), h.Last)
		}
		execs[g] = e
	}
	var rs []rueidis.RedisResult
	if len(execs) == 1 {
		rs = []rueidis.RedisResult{removeScript.Exec(ctx, c.rc, execs[0].Keys, execs[0].Args)}
	} else {
		rs = removeScript.ExecMulti(ctx, c.rc, execs...)
	}
	var cleared []pushPair
	for g, r := range rs {
		v, rerr := r.ToArray()
		n := len(groups[g])
		if rerr == nil && len(v) != 2*n {
			rerr = fmt.Errorf("remove script replied %d values, want %d", len(v), 2*n)
		}
		if rerr != nil {
			err = rerr
			continue
		}
		for k, i := range groups[g] {
			ok, _ := v[k].AsInt64()
			removed[i] = ok == 1
			if senders, _ := v[n+k].ToString(); senders != "" {
				cleared = pushCleared(cleared, heads[i].User, senders)
			}
		}
	}
	if len(cleared) > 0 {
		c.cancelDue(ctx, cleared)
	}
	return removed, c.wrap("remove written messages", err)
}
