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
//	                seconds), or its last renewal, for the expiry sweep
//	{posts}:bytes   the total length of the posts in {posts}:data and of
//	                the snapshots in {posts}:gone (reports.go), kept by
//	                the scripts that change either, for the byte budget
//	                (rebuilt by the store script when missing)
//	pa:{<addr>}:<day>  posts published from one client address (the key
//	                given by the caller) on one UTC day (days since the
//	                epoch); expires after two days
//	pq:{<user>}     list: the times (Unix ms) of the user's publishes in the
//	                current quota window, oldest first
//	{posts}:rby:<id>, {posts}:rlast:<id>, {posts}:reported, {posts}:gone
//	                a post's reports, the review queue and the snapshots
//	                of queued posts their authors deleted: see reports.go
//	{posts}:mine:<user>  sorted set: the author's stored post ids (scored
//	                by id), kept by the store, delete and expiry scripts, so
//	                that a node whose index dropped old posts still lists an
//	                author's own from Redis (mine.go)
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
//	{"op":"upd","post":<post JSON>}   (an edit, status change or renewal:
//	                                   the post's new version, same id)
//	{"op":"hide","ids":[<id>]}        (hidden pending review: reports.go)
//	{"op":"show","ids":[<id>]}        (shown again: reports dismissed)
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
	// ErrPostsFull: storing the post would pass a PostBounds bound.
	ErrPostsFull = errors.New("the posts budget is used up")
	// ErrUnderReview: the author has a post hidden pending review (or
	// deleted while hidden); nothing was stored (reports.go, "Under
	// review").
	ErrUnderReview = errors.New("a post of the author is under review")
)

// PostsChannel is the pub/sub channel of post broadcasts, and the prefix to
// give Handle.
const PostsChannel = "posts"

func (c *Client) postsKey(name string) string { return c.prefix + "{posts}:" + name }

// storePostScript allocates the id, stores the post and announces it,
// unless Redis already holds ARGV[6] posts or the post would bring their
// total length past ARGV[7] bytes (0: no bound); then it returns 'full' and
// changes nothing. The length is checked with an upper bound of the id's
// digits, so the budget is never passed.
// The bytes counted are those of the posts and of the snapshots the gone
// hash keeps (reports.go, "Evidence kept").
//
// First of all, while the owner has a post hidden pending review (live,
// or deleted by them while hidden: the ids of its set rv:<owner> still
// in the hidden set and in the review queue), it returns 'review' and
// changes nothing but the set: ids no longer hidden, or out of the queue
// where no operator would see them, leave it there (reports.go, "Under
// review"). An owner with no set pays one EXISTS.
// KEYS: seq, data, owner, date, bytes, gone, hidden, rv:<owner>,
// reported, mine:<owner>. ARGV:
// members after the id (no braces), owner, date (s), channel, origin,
// max posts, max bytes.
var storePostScript = newScript("post_store", `
if redis.call('EXISTS', KEYS[8]) == 1 then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[8])) do
    if redis.call('SISMEMBER', KEYS[7], id) == 0 or not redis.call('ZSCORE', KEYS[9], id) then
      redis.call('SREM', KEYS[8], id)
    end
  end
  if redis.call('EXISTS', KEYS[8]) == 1 then return 'review' end
end
local maxn = tonumber(ARGV[6])
local maxb = tonumber(ARGV[7])
if maxn > 0 and redis.call('HLEN', KEYS[2]) >= maxn then return 'full' end
if redis.call('EXISTS', KEYS[5]) == 0 then
  local t = 0
  for _, k in ipairs(redis.call('HKEYS', KEYS[2])) do t = t + redis.call('HSTRLEN', KEYS[2], k) end
  for _, k in ipairs(redis.call('HKEYS', KEYS[6])) do t = t + redis.call('HSTRLEN', KEYS[6], k) end
  redis.call('SET', KEYS[5], t)
end
if maxb > 0 and tonumber(redis.call('GET', KEYS[5])) + #ARGV[1] + 28 > maxb then return 'full' end
local id = string.format('%d', redis.call('INCR', KEYS[1]))
local post = '{"id":' .. id .. ',' .. ARGV[1] .. '}'
redis.call('HSET', KEYS[2], id, post)
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], id)
redis.call('ZADD', KEYS[10], id, id)
redis.call('INCRBY', KEYS[5], #post)
redis.call('PUBLISH', ARGV[4], '{"op":"post","origin":"' .. ARGV[5] .. '","post":' .. post .. '}')
return id`)

// deletePostScript removes a post if, and only if, user is its author: the
// check and the removal are one atomic step, so no other user can ever erase
// it.
//
// Its reports (reports.go) go with it, unless ARGV[4] is '1' (the
// author's own delete) and the post is in the review queue: then the
// reports, the queue entry and the hidden mark stay, and a snapshot of
// the post as it was, '{"author":"<id>","post":<its JSON>}', is kept in
// the gone hash, its bytes still counted in the byte budget (reports.go,
// "Evidence kept"). Everyone is told of the deletion all the same.
// KEYS: data, owner, date, bytes, rby:<id>, rlast:<id>, reported, hidden,
// gone, mine:<user>. ARGV: id, user, channel, '1' to keep the evidence, the prefix of
// the per-author review sets ('<p>{posts}:'). A hidden post deleted
// without its evidence leaves its author's review set.
// Returns 1 done, 2 done with the evidence kept, 0 no such post, -1 not
// the owner.
var deletePostScript = newScript("post_delete", `
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if not owner then return 0 end
if owner ~= ARGV[2] then return -1 end
local counted = redis.call('EXISTS', KEYS[4]) == 1
-- A post whose JSON is missing (a foreign or damaged writer) has
-- nothing to keep: it is deleted as before.
local keep = ARGV[4] == '1' and redis.call('ZSCORE', KEYS[7], ARGV[1]) and redis.call('HGET', KEYS[1], ARGV[1])
if keep then
  local snap = '{"author":"' .. owner .. '","post":' .. keep .. '}'
  redis.call('HSET', KEYS[9], ARGV[1], snap)
  if counted then redis.call('INCRBY', KEYS[4], #snap) end
end
if counted then
  redis.call('DECRBY', KEYS[4], redis.call('HSTRLEN', KEYS[1], ARGV[1]))
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[10], ARGV[1])
if not keep then
  if redis.call('ZREM', KEYS[7], ARGV[1]) == 1 then
    redis.call('DEL', KEYS[5], KEYS[6])
  end
  if redis.call('SREM', KEYS[8], ARGV[1]) == 1 then
    redis.call('SREM', ARGV[5] .. 'rv:' .. owner, ARGV[1])
  end
end
redis.call('PUBLISH', ARGV[3], '{"op":"del","ids":[' .. ARGV[1] .. ']}')
if keep then return 2 end
return 1`)

// expirePostsScript removes up to ARGV[2] posts dated at or before ARGV[1]
// and announces them in one message; a reported post's reports
// (reports.go) go with it. KEYS: data, owner, date, bytes, reported,
// hidden. ARGV:
// cutoff (s), limit, channel, the prefix of the report keys ('<p>{posts}:').
// Returns how many were removed.
//
// The report keys of a post, and its author's mine:<user>, are named
// here, not passed: there may be
// thousands of posts per call, and all of them carry the {posts} tag of
// the keys passed, so they are in the script's slot on a cluster. Only a
// post that was in the review queue has them (the report script makes the
// three together), so an unreported post costs one ZREM more.
var expirePostsScript = newScript("post_expire", `
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return 0 end
local counted = redis.call('EXISTS', KEYS[4]) == 1
for _, id in ipairs(ids) do
  if counted then redis.call('DECRBY', KEYS[4], redis.call('HSTRLEN', KEYS[1], id)) end
  -- Unconditional: an older node's dismissal can leave the id hidden
  -- but not queued. A hidden one leaves its author's review set.
  local o = redis.call('HGET', KEYS[2], id)
  if o then redis.call('ZREM', ARGV[4] .. 'mine:' .. o, id) end
  if redis.call('SREM', KEYS[6], id) == 1 and o then
    redis.call('SREM', ARGV[4] .. 'rv:' .. o, id)
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  if redis.call('ZREM', KEYS[5], id) == 1 then
    redis.call('DEL', ARGV[4] .. 'rby:' .. id, ARGV[4] .. 'rlast:' .. id)
  end
end
redis.call('PUBLISH', ARGV[3], '{"op":"del","ids":[' .. table.concat(ids, ',') .. ']}')
return #ids`)

// quotaScript implements "n publishes per period" as a sliding window over
// the times of the user's recent publishes, so the quota refills by itself
// as time passes, not only at login. KEYS: pq:{user}.
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
	err := c.do(ctx, c.rc.B().Rpop().Key(c.userKey("pq", user)).Build()).Error()
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
	return c.StorePostWithin(ctx, members, owner, date, origin, PostBounds{})
}

// PostBounds are the budgets of the posts Redis holds; zero fields (or
// negative ones) bound nothing.
type PostBounds struct {
	Posts int   // posts held
	Bytes int64 // total length of the posts' JSON
}

// StorePostWithin is StorePost, refused with ErrPostsFull when the post
// would pass b, or with ErrUnderReview while owner has a post hidden
// pending review: the checks, the store and the broadcast are one atomic
// step, so every node sees one budget.
func (c *Client) StorePostWithin(ctx context.Context, members []byte, owner string, date int64, origin string, b PostBounds) (uint64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	s, err := storePostScript.Exec(ctx, c.rc,
		[]string{c.postsKey("seq"), c.postsKey("data"), c.postsKey("owner"), c.postsKey("date"), c.postsKey("bytes"), c.postsKey("gone"),
			c.postsKey("hidden"), c.reviewKey(owner), c.postsKey("reported"), c.mineKey(owner)},
		[]string{string(members), owner, strconv.FormatInt(date, 10), c.key(PostsChannel), origin,
			strconv.Itoa(max(b.Posts, 0)), strconv.FormatInt(max(b.Bytes, 0), 10)}).ToString()
	if err != nil {
		return 0, c.wrap("store post of "+owner, err)
	}
	switch s {
	case "full":
		return 0, ErrPostsFull
	case "review":
		return 0, ErrUnderReview
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("store post: the script returned a bad id " + strconv.Quote(s))
	}
	return id, nil
}

// addrPostsScript counts one publish from a client address on a day, unless
// ARGV[1] are counted already. KEYS: pa:{addr}:day. ARGV: n, ttl (s).
// Returns the count after, or -1 when refused.
var addrPostsScript = newScript("post_addr", `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return -1
end
return n`)

func (c *Client) addrPostsKey(addr string, day int64) string {
	return c.userKey("pa", addr) + ":" + strconv.FormatInt(day, 10)
}

// TakeAddressPost counts one publish from client address addr on day
// (days since the epoch, UTC), and reports false, counting nothing, when n
// are counted already.
func (c *Client) TakeAddressPost(ctx context.Context, addr string, day int64, n int) (bool, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := addrPostsScript.Exec(ctx, c.rc, []string{c.addrPostsKey(addr, day)},
		[]string{strconv.Itoa(n), "172800"}).AsInt64()
	if err != nil {
		return false, c.wrap("address post quota of "+addr, err)
	}
	return r >= 0, nil
}

// RefundAddressPost gives back a publish counted by TakeAddressPost, when
// the post was not stored after all.
func (c *Client) RefundAddressPost(ctx context.Context, addr string, day int64) error {
	err := c.do(ctx, c.rc.B().Decr().Key(c.addrPostsKey(addr, day)).Build()).Error()
	return c.wrap("refund address post quota of "+addr, err)
}

// DeletePost removes post id if user is its author, and broadcasts the
// deletion; its reports go with it. It fails with ErrPostNotFound or
// ErrNotOwner. Operators' removals and account deletions use it; the
// author's own delete is DeleteOwnPost.
func (c *Client) DeletePost(ctx context.Context, id uint64, user string) error {
	_, err := c.deletePost(ctx, id, user, false)
	return err
}

// DeleteOwnPost is DeletePost for the author's own delete command: a post
// in the review queue leaves its reports, its queue entry and its hidden
// mark behind, with a snapshot of itself for the operators (reports.go,
// "Evidence kept"); kept says so.
func (c *Client) DeleteOwnPost(ctx context.Context, id uint64, user string) (kept bool, err error) {
	return c.deletePost(ctx, id, user, true)
}

func (c *Client) deletePost(ctx context.Context, id uint64, user string, keep bool) (bool, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	k := "0"
	if keep {
		k = "1"
	}
	r, err := deletePostScript.Exec(ctx, c.rc,
		[]string{c.postsKey("data"), c.postsKey("owner"), c.postsKey("date"), c.postsKey("bytes"), by, last, c.postsKey("reported"),
			c.postsKey("hidden"), c.postsKey("gone"), c.mineKey(user)},
		[]string{sid, user, c.key(PostsChannel), k, c.postsKey("")}).AsInt64()
	if err != nil {
		return false, c.wrap("delete post "+sid, err)
	}
	switch r {
	case 0:
		return false, ErrPostNotFound
	case -1:
		return false, ErrNotOwner
	}
	return r == 2, nil
}

// ExpirePosts removes up to limit posts dated at or before cutoff (Unix
// seconds) and broadcasts their deletion. It returns how many it removed;
// a caller loops while that equals limit.
func (c *Client) ExpirePosts(ctx context.Context, cutoff int64, limit int) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := expirePostsScript.Exec(ctx, c.rc,
		[]string{c.postsKey("data"), c.postsKey("owner"), c.postsKey("date"), c.postsKey("bytes"), c.postsKey("reported"),
			c.postsKey("hidden")},
		[]string{strconv.FormatInt(cutoff, 10), strconv.Itoa(limit), c.key(PostsChannel), c.postsKey("")}).AsInt64()
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

// PostSeq returns the highest post id ever issued (0 when none was).
func (c *Client) PostSeq(ctx context.Context) (uint64, error) {
	s, err := c.do(ctx, c.rc.B().Get().Key(c.postsKey("seq")).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, c.wrap("read the post id counter", err)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("post id counter: not a number: " + strconv.Quote(s))
	}
	return n, nil
}

// PostCount returns how many posts Redis holds.
func (c *Client) PostCount(ctx context.Context) (int64, error) {
	n, err := c.do(ctx, c.rc.B().Hlen().Key(c.postsKey("data")).Build()).AsInt64()
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

// Errors of ChangePost, besides ErrPostNotFound, ErrNotOwner and
// ErrPostsFull.
var (
	// ErrTooEarly: a renewal before the renewal window opens.
	ErrTooEarly = errors.New("too early to renew the post")
	// ErrPostFormat: the stored post is not in the format the store
	// script writes (a foreign or damaged writer); nothing was changed.
	ErrPostFormat = errors.New("the stored post is not in the store format")
)

// changePostScript edits a stored post in place, keeping its id, author and
// date, if and only if user is its author (checked atomically with the
// change, like the delete script), and announces the new version.
//
// A stored post is '{"id":N,' .. members .. extras .. '}' where members are
// those of the store script (ending with ',"range_values":[...]') and extras
// are set here only, in this order: ',"status":"sold"|"reserved"',
// ',"renewed":<s>', ',"edited":<s>'. A JSON string holds '"' only escaped,
// so the first ',"range_values":[' of the post is the member itself.
//
// KEYS: data, owner, date, bytes. ARGV: id, user, channel, kind, now (s),
// then by kind:
//
//	update: members before the date (from .. features), the range_values
//	        member (',"range_values":[...]'), max bytes (0: no bound)
//	status: "sold", "reserved" or "available" (no status member)
//	renew:  expiry (s), window (s): allowed once
//	        now >= max(date, renewed) + expiry - window
//
// Returns {1, post} done, {0} no such post, {-1} not the owner, {-2} not in
// the store format, {-3, s} too early (s: when it becomes possible), {-4}
// the byte budget would be passed. A renewal moves the post's score in
// the date set to now, so the expiry sweep counts from the renewal.
var changePostScript = newScript("post_change", `
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if not owner then return {0} end
if owner ~= ARGV[2] then return {-1} end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return {0} end
local i, j = string.find(old, ',"range_values":[', 1, true)
if not i then return {-2} end
local k = string.find(old, ']', j + 1, true)
if not k then return {-2} end
local head = string.sub(old, 1, i - 1)
local tail = string.sub(old, i, k)
local extras = string.sub(old, k + 1, -2)
local function num(s, pat)
  local v = string.match(s, pat)
  if v then return tonumber(v) end
  return nil
end
local date = num(head, ',"date":(%-?%d+)$')
if not date then return {-2} end
local status = string.match(extras, ',"status":"(%a+)"')
local renewed = num(extras, ',"renewed":(%d+)')
local edited = num(extras, ',"edited":(%d+)')
local kind = ARGV[4]
local now = tonumber(ARGV[5])
if kind == 'update' then
  head = '{"id":' .. ARGV[1] .. ',' .. ARGV[6] .. ',"date":' .. date
  tail = ARGV[7]
  edited = now
elseif kind == 'status' then
  status = ARGV[6]
  if status == 'available' then status = nil end
elseif kind == 'renew' then
  local base = date
  if renewed and renewed > base then base = renewed end
  local from = base + tonumber(ARGV[6]) - tonumber(ARGV[7])
  if now < from then return {-3, from} end
  renewed = now
else
  return redis.error_reply('unknown change ' .. kind)
end
local post = head .. tail
if status then post = post .. ',"status":"' .. status .. '"' end
if renewed then post = post .. ',"renewed":' .. string.format('%d', renewed) end
if edited then post = post .. ',"edited":' .. string.format('%d', edited) end
post = post .. '}'
local counted = redis.call('EXISTS', KEYS[4]) == 1
if kind == 'update' and counted and #post > #old then
  local maxb = tonumber(ARGV[8])
  if maxb > 0 and tonumber(redis.call('GET', KEYS[4])) + #post - #old > maxb then return {-4} end
end
if counted then redis.call('INCRBY', KEYS[4], #post - #old) end
redis.call('HSET', KEYS[1], ARGV[1], post)
if kind == 'renew' then redis.call('ZADD', KEYS[3], now, ARGV[1]) end
redis.call('PUBLISH', ARGV[3], '{"op":"upd","post":' .. post .. '}')
return {1, post}`)

// PostChange is one change ChangePost makes to a post.
type PostChange struct {
	// Kind is "update", "status" or "renew".
	Kind string
	// Update: the new members before the date (from .. features) and the
	// range_values member with its leading comma; MaxBytes bounds the
	// total length of the posts' JSON (0: none).
	Head, Tail []byte
	MaxBytes   int64
	// Status: "sold", "reserved" or "available".
	Status string
	// Renew: the expiry and the window before it in which a renewal is
	// allowed, in seconds.
	Expiry, Window int64
}

// ChangePost applies ch to post id if user is its author, at now (Unix s),
// and broadcasts the new version ({"op":"upd","post":...}). It returns the
// post's new JSON, or ErrPostNotFound, ErrNotOwner, ErrPostFormat,
// ErrPostsFull, or ErrTooEarly with the time (Unix s) a renewal becomes
// possible.
func (c *Client) ChangePost(ctx context.Context, id uint64, user string, now int64, ch PostChange) (post string, from int64, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	args := []string{sid, user, c.key(PostsChannel), ch.Kind, strconv.FormatInt(now, 10)}
	switch ch.Kind {
	case "update":
		args = append(args, string(ch.Head), string(ch.Tail), strconv.FormatInt(max(ch.MaxBytes, 0), 10))
	case "status":
		args = append(args, ch.Status)
	case "renew":
		args = append(args, strconv.FormatInt(ch.Expiry, 10), strconv.FormatInt(ch.Window, 10))
	default:
		return "", 0, errors.New("change post: unknown kind " + strconv.Quote(ch.Kind))
	}
	vs, err := changePostScript.Exec(ctx, c.rc,
		[]string{c.postsKey("data"), c.postsKey("owner"), c.postsKey("date"), c.postsKey("bytes")}, args).ToArray()
	if err != nil {
		return "", 0, c.wrap("change post "+sid, err)
	}
	if len(vs) == 0 {
		return "", 0, errors.New("change post script: empty reply")
	}
	r, err := vs[0].AsInt64()
	if err != nil {
		return "", 0, c.wrap("change post "+sid, err)
	}
	switch r {
	case 1:
		if len(vs) < 2 {
			return "", 0, errors.New("change post script: no post in the reply")
		}
		post, err = vs[1].ToString()
		return post, 0, c.wrap("change post "+sid, err)
	case 0:
		return "", 0, ErrPostNotFound
	case -1:
		return "", 0, ErrNotOwner
	case -2:
		return "", 0, ErrPostFormat
	case -3:
		if len(vs) >= 2 {
			from, _ = vs[1].AsInt64()
		}
		return "", from, ErrTooEarly
	case -4:
		return "", 0, ErrPostsFull
	}
	return "", 0, errors.New("change post script: unexpected reply")
}

// PostBytes returns the byte budget's count, {posts}:bytes (the posts'
// JSON and the snapshots kept of deleted reported posts); counted false
// when the count is missing (the next store rebuilds it).
func (c *Client) PostBytes(ctx context.Context) (n int64, counted bool, err error) {
	n, err = c.do(ctx, c.rc.B().Get().Key(c.postsKey("bytes")).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, false, nil
	}
	return n, err == nil, c.wrap("read the posts' byte count", err)
}
