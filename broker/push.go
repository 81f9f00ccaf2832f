package broker

// Push notifications in Redis.
//
// Key layout (after the prefix, "occase:" by default):
//
//	pd:{<user>}          hash: device id -> device record (JSON, written by
//	                     the push package); at most a configured number
//	pc:{<user>}          hash: "c:<sender>" -> messages from that sender
//	                     not yet written to a live connection of <user>;
//	                     expires with the queue
//	{push:<n>}:due       sorted set: member "<to>:<from>", score the time
//	                     (ms) the notification is due; n in 0..PushShards-1
//	{push:<n>}:lease     sorted set: the same members once a node claimed
//	                     them, score the time its lease runs out
//	{push:<n>}:data      hash: member -> what the notification shows (the
//	                     push package's JSON: nick and preview of the latest
//	                     message)
//	vapid                the generated VAPID key pair, when none is
//	                     configured
//
// A due notification is addressed to a user but lives in one of
// PushShards fixed shards, chosen by the recipient's id, so a node finds
// every due notification with PushShards small scripts instead of a scan,
// and on Redis Cluster the shards spread over the masters. Every script
// touches either one user's keys or one shard's keys, never both: on a
// cluster they are in different slots. So scheduling is two steps (count
// the message in the user's pc hash, which also tells whether the user has
// any device; then enter the due entry in the shard), and sending reads the
// user's count again first: a notification whose count was cleared by a
// live write in between is dropped, not sent.
//
// On the chat path the first step is part of the store script itself
// (broker/chat.go: the pd and pc keys are in the user's slot, like the
// queue), and clearing the counts of written messages is part of the
// scripts that remove them (pushWrittenLua): a user without a device costs
// no call of its own. (Stand-alone count and cancel scripts, from before
// push was folded into the chat scripts, are gone: nothing called them.)

import (
	"context"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// PushShards is the number of due-notification shards.
const PushShards = 16

func (c *Client) pushShardKey(n int, name string) string {
	return c.prefix + "{push:" + strconv.Itoa(n) + "}:" + name
}

// PushShard is the shard of the due notifications to user to.
func PushShard(to string) int { return int(crc32.ChecksumIEEE([]byte(to)) % PushShards) }

func pushMember(to, from string) string { return to + ":" + from }

// addDeviceScript stores a device unless the user is at the limit. KEYS:
// pd:{user}. ARGV: id, record, limit, ttl ms. Returns 1 stored (or
// replaced), 0 refused.
var addDeviceScript = newScript("push_add_device", `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1`)

// AddPushDevice stores device record rec under id in user's registry, unless
// the user already has max others. It returns false when refused.
func (c *Client) AddPushDevice(ctx context.Context, user, id, rec string, max int, ttlMs int64) (bool, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := addDeviceScript.Exec(ctx, c.rc, []string{c.userKey("pd", user)},
		[]string{id, rec, strconv.Itoa(max), strconv.FormatInt(ttlMs, 10)}).AsInt64()
	if err != nil {
		return false, c.wrap("add push device of "+user, err)
	}
	return n == 1, nil
}

// RemovePushDevices removes the devices ids of user.
func (c *Client) RemovePushDevices(ctx context.Context, user string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("remove push devices of "+user, c.rc.Do(ctx, c.rc.B().Hdel().Key(c.userKey("pd", user)).Field(ids...).Build()).Error())
}

// removeDevicePrefixScript removes every device whose id starts with
// ARGV[1]. KEYS: pd:{user}. The hash is bounded by the device limit.
var removeDevicePrefixScript = newScript("push_remove_kind", `
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #ARGV[1]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], f)
    n = n + 1
  end
end
return n`)

// RemovePushDevicesWithPrefix removes every device of user whose id starts
// with prefix (all devices of one kind).
func (c *Client) RemovePushDevicesWithPrefix(ctx context.Context, user, prefix string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("remove push devices of "+user, removeDevicePrefixScript.Exec(ctx, c.rc,
		[]string{c.userKey("pd", user)}, []string{prefix}).Error())
}

// PushDevices returns user's devices, id -> record.
func (c *Client) PushDevices(ctx context.Context, user string) (map[string]string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	m, err := c.rc.Do(ctx, c.rc.B().Hgetall().Key(c.userKey("pd", user)).Build()).AsStrMap()
	return m, c.wrap("read push devices of "+user, err)
}

// pushScheduleScript enters a due notification, keeping the due time of one
// already waiting (a sender writing on and on does not postpone it), and
// stores what it shows. KEYS: due, data. ARGV: member, due ms, data, and
// "1" for the first message counted since the sender's count was last
// cleared: its due time then replaces an earlier one (ZADD GT), which can
// only be a stale entry, made due for a message written live after its
// count (a Due that came after the removal cleared the count, or whose
// cancel was lost); keeping that time would notify this message before
// its delay.
var pushScheduleScript = newScript("push_schedule", `
redis.call('ZADD', KEYS[1], ARGV[4] == '1' and 'GT' or 'NX', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1`)

// EnterPush makes a notification to to for messages of from due at dueMs
// (Unix ms), unless one is due already, with data, what it will show;
// count is the sender's count the message was given (1: the first since
// the last live write, whose due time replaces an earlier one, see
// pushScheduleScript). Chat calls it after a store whose reply counted the
// message (Stored.Push > 0): the count was made in the store script, so
// this is the only call push adds to a message, and only for a recipient
// with a device.
func (c *Client) EnterPush(ctx context.Context, to, from string, count, dueMs int64, data string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	s := PushShard(to)
	first := "0"
	if count == 1 {
		first = "1"
	}
	err := pushScheduleScript.Exec(ctx, c.rc, []string{c.pushShardKey(s, "due"), c.pushShardKey(s, "data")},
		[]string{pushMember(to, from), strconv.FormatInt(dueMs, 10), data, first}).Error()
	return c.wrap("schedule push for "+to, err)
}

// pushPair is a due notification's recipient and sender.
type pushPair struct{ to, from string }

// pushCleared appends to ps the senders (space-separated, as the fetch and
// remove scripts return them) whose push counts were cleared for to.
func pushCleared(ps []pushPair, to, senders string) []pushPair {
	for _, f := range strings.Fields(senders) {
		ps = append(ps, pushPair{to, f})
	}
	return ps
}

// cancelDue cancels the due notifications of ps, whose counts the removal
// of their written messages has just cleared: one script call per shard,
// pipelined. A failure is only logged: the sender reads the count before
// sending and drops a notification whose count is gone, so a due entry
// left behind costs a claim, never a notification.
func (c *Client) cancelDue(ctx context.Context, ps []pushPair) {
	byShard := map[int][]string{}
	for _, p := range ps {
		s := PushShard(p.to)
		byShard[s] = append(byShard[s], pushMember(p.to, p.from))
	}
	execs := make([]rueidis.LuaExec, 0, len(byShard))
	for s, members := range byShard {
		execs = append(execs, rueidis.LuaExec{
			Keys: []string{c.pushShardKey(s, "due"), c.pushShardKey(s, "lease"), c.pushShardKey(s, "data")},
			Args: members,
		})
	}
	for _, r := range pushCancelScript.ExecMulti(ctx, c.rc, execs...) {
		if err := r.Error(); err != nil {
			c.log.Warn("due push notifications not cancelled; their sender drops them", zap.Error(err))
			return
		}
	}
}

// pushCancelScript removes due notifications. KEYS: due, lease, data. ARGV:
// members. A leased one keeps its data until its sender is done with it
// (the sender finds the count gone and drops it).
var pushCancelScript = newScript("push_cancel", `
for _, m in ipairs(ARGV) do
  redis.call('ZREM', KEYS[1], m)
  if not redis.call('ZSCORE', KEYS[2], m) then redis.call('HDEL', KEYS[3], m) end
end
return 1`)

// pushClaimScript claims up to ARGV[3] notifications of one shard: first
// those whose lease ran out (their node died or stalled), then the due
// ones, moving each to the lease set with a lease until ARGV[2]. KEYS: due,
// lease, data. ARGV: now ms, lease end ms, max. Returns the number still
// due (for the gauge), then member, data pairs.
var pushClaimScript = newScript("push_claim", `
local max = tonumber(ARGV[3])
local out = {0}
local function take(m)
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  table.insert(out, m)
  table.insert(out, redis.call('HGET', KEYS[3], m) or '')
end
if max > 0 then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, max)) do
    take(m)
    max = max - 1
  end
end
if max > 0 then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, max)) do
    redis.call('ZREM', KEYS[1], m)
    take(m)
  end
end
out[1] = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
return out`)

// DuePush is a claimed notification.
type DuePush struct {
	Shard    int
	To, From string
	Data     string
	member   string
}

// ClaimPushes claims up to max due notifications (and those whose lease
// ran out) in each shard, leasing them until leaseEnd (Unix ms). It also
// returns how many notifications are waiting or leased in all.
func (c *Client) ClaimPushes(ctx context.Context, now, leaseEnd int64, max int) ([]DuePush, int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	execs := make([]rueidis.LuaExec, PushShards)
	for s := range execs {
		execs[s] = rueidis.LuaExec{
			Keys: []string{c.pushShardKey(s, "due"), c.pushShardKey(s, "lease"), c.pushShardKey(s, "data")},
			Args: []string{strconv.FormatInt(now, 10), strconv.FormatInt(leaseEnd, 10), strconv.Itoa(max)},
		}
	}
	var out []DuePush
	var waiting int64
	var firstErr error
	for s, r := range pushClaimScript.ExecMulti(ctx, c.rc, execs...) {
		v, err := r.ToArray()
		if err != nil || len(v) == 0 {
			if firstErr == nil {
				firstErr = c.wrap("claim pushes", err)
			}
			continue
		}
		n, _ := v[0].AsInt64()
		waiting += n
		for i := 1; i+1 < len(v); i += 2 {
			m, _ := v[i].ToString()
			d, _ := v[i+1].ToString()
			// A member that is not "<to>:<from>" (a foreign writer's)
			// comes back with To empty, for the caller to drop.
			to, from, _ := splitMember(m)
			out = append(out, DuePush{Shard: s, To: to, From: from, Data: d, member: m})
		}
	}
	return out, waiting, firstErr
}

func splitMember(m string) (to, from string, ok bool) {
	for i := 0; i < len(m); i++ {
		if m[i] == ':' {
			return m[:i], m[i+1:], i > 0 && i < len(m)-1
		}
	}
	return "", "", false
}

// pushDoneScript ends a claim. KEYS: due, lease, data. ARGV: member.
var pushDoneScript = newScript("push_done", `
redis.call('ZREM', KEYS[2], ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('HDEL', KEYS[3], ARGV[1]) end
return 1`)

// DonePush removes a claimed notification once it was sent (or given up).
// A notification scheduled again meanwhile stays due.
func (c *Client) DonePush(ctx context.Context, p DuePush) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("finish push", pushDoneScript.Exec(ctx, c.rc,
		[]string{c.pushShardKey(p.Shard, "due"), c.pushShardKey(p.Shard, "lease"), c.pushShardKey(p.Shard, "data")},
		[]string{p.member}).Error())
}

// pushLoadScript reads what sending needs from the recipient's keys: the
// count of waiting messages from the sender (none: cancelled) and the
// devices. KEYS: pc:{to}, pd:{to}. ARGV: from.
var pushLoadScript = newScript("push_load", `
local n = redis.call('HGET', KEYS[1], 'c:' .. ARGV[1])
if not n then return {0} end
local out = {tonumber(n)}
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(out, v) end
return out`)

// LoadPush returns the number of messages from from waiting for to (0: the
// notification was cancelled) and to's devices, id -> record.
func (c *Client) LoadPush(ctx context.Context, to, from string) (int64, map[string]string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	v, err := pushLoadScript.Exec(ctx, c.rc, []string{c.userKey("pc", to), c.userKey("pd", to)}, []string{from}).ToArray()
	if err != nil || len(v) == 0 {
		return 0, nil, c.wrap("load push for "+to, err)
	}
	n, _ := v[0].AsInt64()
	devs := make(map[string]string, (len(v)-1)/2)
	for i := 1; i+1 < len(v); i += 2 {
		k, _ := v[i].ToString()
		d, _ := v[i+1].ToString()
		devs[k] = d
	}
	return n, devs, nil
}

// VAPIDKeys returns the VAPID key pair kept in Redis, storing gen (the
// caller's freshly generated pair) first when there is none, so that every
// node signs with the same key.
func (c *Client) VAPIDKeys(ctx context.Context, gen string) (string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	k := c.key("vapid")
	if err := c.rc.Do(ctx, c.rc.B().Set().Key(k).Value(gen).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return "", c.wrap("store vapid keys", err)
	}
	s, err := c.rc.Do(ctx, c.rc.B().Get().Key(k).Build()).ToString()
	return s, c.wrap("read vapid keys", err)
}
