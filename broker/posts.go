package broker

// Posts in Redis.
//
// Key layout (after the prefix, "occase:" by default):
//
//	{posts}:seq     counter of post ids (INCR; ids start at 1)
//	{posts}:data    hash: post id -> the post's JSON, exactly as delivered
//	                ('{"id":<id>,"from":...}')
//	{posts}:owner   hash: post id -> author's user id, so that the delete
//	                script checks ownership without decoding JSON
//	{posts}:date    sorted set: member post id, score the post's date (Unix
//	                seconds), for the expiry sweep
//	pq:{<user>}     list: the times (Unix ms) of the user's publishes in the
//	                current quota window, oldest first
//	posts           pub/sub channel every node subscribes to: new posts and
//	                deletions (see the envelopes below)
//
// The four {posts} keys share one hash tag because the store, delete and
// expiry scripts touch them together; on Redis Cluster they live in one slot.
// That is deliberate: every node keeps every live post in memory anyway, so
// the set is bounded by a node's RAM, far below what one shard holds. The
// quota list carries the user's hash tag, next to the user's other keys; it
// is touched by its own script, before the post is stored.
//
// Broadcast envelopes on the posts channel, built inside the scripts so that
// storing and announcing are one atomic step (a post is never stored without
// being announced, nor announced without being stored):
//
//	{"op":"post","origin":"<token>","post":<post JSON>}
//	{"op":"del","ids":[<id>,...]}
//
// origin is an opaque token chosen by the publishing node (letters, digits,
// ':' and '-' only); it lets that node recognise its own publishes.

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/rueidis"
)

// Errors of DeletePost.
var (
	ErrPostNotFound = errors.New("no such post")
	ErrNotOwner     = errors.New("not the author of the post")
)

// PostsChannel is the pub/sub channel of post broadcasts, and the prefix to
// give Handle.
const PostsChannel = "posts"

func (c *Client) postsKey(name string) string { return c.prefix + "{posts}:" + name }

// storePostScript allocates the id, stores the post and announces it.
// KEYS: seq, data, owner, date. ARGV: members after the id (no braces),
// owner, date (s), channel, origin.
var storePostScript = newScript("post_store", `
local id = string.format('%d', redis.call('INCR', KEYS[1]))
local post = '{"id":' .. id .. ',' .. ARGV[1] .. '}'
redis.call('HSET', KEYS[2], id, post)
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], id)
redis.call('PUBLISH', ARGV[4], '{"op":"post","origin":"' .. ARGV[5] .. '","post":' .. post .. '}')
return id`)

// deletePostScript removes a post if, and only if, user is its author: the
// check and the removal are one atomic step, so no other user can ever erase
// it (the original removed first and checked later).
// KEYS: data, owner, date. ARGV: id, user, channel.
// Returns 1 done, 0 no such post, -1 not the owner.
var deletePostScript = newScript("post_delete", `
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if not owner then return 0 end
if owner ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[3], '{"op":"del","ids":[' .. ARGV[1] .. ']}')
return 1`)

// expirePostsScript removes up to ARGV[2] posts dated at or before ARGV[1]
// and announces them in one message. KEYS: data, owner, date. ARGV: cutoff
// (s), limit, channel. Returns how many were removed.
var expirePostsScript = newScript("post_expire", `
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return 0 end
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
redis.call('PUBLISH', ARGV[3], '{"op":"del","ids":[' .. table.concat(ids, ',') .. ']}')
return #ids`)

// quotaScript implements "n publishes per period" as a sliding window over
// the times of the user's recent publishes, so the quota refills by itself
// as time passes (the original refilled only at login). KEYS: pq:{user}.
// ARGV: now (ms), n, period (ms), take ('1' to consume one publish).
// Returns {remaining, retry-after ms}; remaining is -1 when take was refused.
var quotaScript = newScript("post_quota", `
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local t = tonumber(head)
  if t ~= nil and t > now - period then break end
  redis.call('LPOP', KEYS[1])
end
local used = redis.call('LLEN', KEYS[1])
if ARGV[4] == '1' then
  if used >= n then
    local oldest = tonumber(redis.call('LINDEX', KEYS[1], -n)) or now
    return {-1, oldest + period - now}
  end
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], period)
  used = used + 1
end
if used > n then used = n end
return {n - used, 0}`)

// Quota is "N publishes per PeriodMs milliseconds".
type Quota struct {
	N        int
	PeriodMs int64
}

// TakePostQuota consumes one publish of user's quota at now (Unix ms). ok is
// false when the quota is used up; retryMs then says when the next publish
// becomes possible. remaining counts what is left after this one.
func (c *Client) TakePostQuota(ctx context.Context, user string, now int64, q Quota) (remaining int, retryMs int64, ok bool, err error) {
	r, err := c.quota(ctx, user, now, q, "1")
	if err != nil {
		return 0, 0, false, err
	}
	if r[0] < 0 {
		return 0, r[1], false, nil
	}
	return int(r[0]), 0, true, nil
}

// PostQuotaRemaining tells how many publishes user may still make at now.
func (c *Client) PostQuotaRemaining(ctx context.Context, user string, now int64, q Quota) (int, error) {
	r, err := c.quota(ctx, user, now, q, "0")
	if err != nil {
		return 0, err
	}
	return int(r[0]), nil
}

// RefundPostQuota gives back the publish taken last, when storing the post
// failed after the quota was taken.
func (c *Client) RefundPostQuota(ctx context.Context, user string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	err := c.rc.Do(ctx, c.rc.B().Rpop().Key(c.userKey("pq", user)).Build()).Error()
	return c.wrap("refund post quota of "+user, err)
}

func (c *Client) quota(ctx context.Context, user string, now int64, q Quota, take string) ([]int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	vs, err := quotaScript.Exec(ctx, c.rc, []string{c.userKey("pq", user)}, []string{
		strconv.FormatInt(now, 10), strconv.Itoa(q.N), strconv.FormatInt(q.PeriodMs, 10), take}).ToArray()
	if err != nil {
		return nil, c.wrap("post quota of "+user, err)
	}
	if len(vs) != 2 {
		return nil, errors.New("post quota script: unexpected reply")
	}
	out := make([]int64, 2)
	for i, v := range vs {
		if out[i], err = v.AsInt64(); err != nil {
			return nil, c.wrap("post quota of "+user, err)
		}
	}
	return out, nil
}

// StorePost allocates the next post id, stores '{"id":<id>,' + members + '}'
// and broadcasts it on PostsChannel with origin, in one atomic step. members
// must be the post's other JSON members, comma-separated, without braces.
func (c *Client) StorePost(ctx context.Context, members []byte, owner string, date int64, origin string) (uint64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	s, err := storePostScript.Exec(ctx, c.rc,
		[]string{c.postsKey("seq"), c.postsKey("data"), c.postsKey("owner"), c.postsKey("date")},
		[]string{string(members), owner, strconv.FormatInt(date, 10), c.key(PostsChannel), origin}).ToString()
	if err != nil {
		return 0, c.wrap("store post of "+owner, err)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("store post: the script returned a bad id " + strconv.Quote(s))
	}
	return id, nil
}

// DeletePost removes post id if user is its author, and broadcasts the
// deletion. It fails with ErrPostNotFound or ErrNotOwner.
func (c *Client) DeletePost(ctx context.Context, id uint64, user string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	r, err := deletePostScript.Exec(ctx, c.rc,
		[]string{c.postsKey("data"), c.postsKey("owner"), c.postsKey("date")},
		[]string{sid, user, c.key(PostsChannel)}).AsInt64()
	if err != nil {
		return c.wrap("delete post "+sid, err)
	}
	switch r {
	case 0:
		return ErrPostNotFound
	case -1:
		return ErrNotOwner
	}
	return nil
}

// ExpirePosts removes up to limit posts dated at or before cutoff (Unix
// seconds) and broadcasts their deletion. It returns how many it removed;
// a caller loops while that equals limit.
func (c *Client) ExpirePosts(ctx context.Context, cutoff int64, limit int) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := expirePostsScript.Exec(ctx, c.rc,
		[]string{c.postsKey("data"), c.postsKey("owner"), c.postsKey("date")},
		[]string{strconv.FormatInt(cutoff, 10), strconv.Itoa(limit), c.key(PostsChannel)}).AsInt64()
	return int(n), c.wrap("expire posts", err)
}

// ScanPosts calls fn with every stored post's JSON, in no particular order
// and possibly more than once for one post (HSCAN's guarantee): the caller
// de-duplicates by id. It reads in batches, so it never blocks Redis for
// long.
func (c *Client) ScanPosts(ctx context.Context, fn func(post string)) error {
	cursor := uint64(0)
	for {
		cctx, cancel := c.bound(ctx)
		e, err := c.rc.Do(cctx, c.rc.B().Hscan().Key(c.postsKey("data")).Cursor(cursor).Count(1000).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return c.wrap("scan posts", err)
		}
		// Elements alternate field (the id) and value (the post).
		for i := 1; i < len(e.Elements); i += 2 {
			fn(e.Elements[i])
		}
		if e.Cursor == 0 {
			return nil
		}
		cursor = e.Cursor
	}
}

// PostCount returns how many posts Redis holds.
func (c *Client) PostCount(ctx context.Context) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := c.rc.Do(ctx, c.rc.B().Hlen().Key(c.postsKey("data")).Build()).AsInt64()
	return n, c.wrap("count posts", err)
}

// RawStorePost stores v as post id without any check or broadcast. Tests use
// it to plant what a damaged or foreign writer could leave in Redis.
func (c *Client) RawStorePost(ctx context.Context, id uint64, v string, date int64) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	cmds := rueidis.Commands{
		c.rc.B().Hset().Key(c.postsKey("data")).FieldValue().FieldValue(sid, v).Build(),
		c.rc.B().Zadd().Key(c.postsKey("date")).ScoreMember().ScoreMember(float64(date), sid).Build(),
	}
	for _, r := range c.rc.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return c.wrap("raw store post", err)
		}
	}
	return nil
}
