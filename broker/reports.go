package broker

// Reports of posts (docs/protocol.md "Reporting a post"): users report a
// post, operators review the most reported ones (`occase moderate`).
//
// Keys, in the {posts} hash tag with the posts themselves, so that the
// report script checks the post's owner and the delete and expiry scripts
// drop a post's reports in the same atomic step as the post:
//
//	{posts}:rby:<id>    hash: reporter id -> reason, one field per distinct
//	                    reporter, at most ReportBounds.Reporters fields
//	{posts}:rlast:<id>  list: the latest reports in full, newest first, one
//	                    per reporter, at most ReportBounds.Details entries:
//	                    '{"by":"<id>","reason":"<r>","at":<unix s>,"text":"..."}'
//	{posts}:reported    sorted set, the review queue: member post id, score
//	                    the post's distinct reporters (HLEN of rby:<id>)
//	                    plus a fraction under 1 that grows with the post id
//	                    (reportTie), at most ReportBounds.Queue members
//	{posts}:hidden      set: the ids of the posts hidden automatically
//	                    (ReportBounds.HideAt), a subset of the queue, so at
//	                    most ReportBounds.Queue members
//	{posts}:distrust    sorted set: member a user id, score when (Unix ms)
//	                    an operator dismissed the reports of a post that
//	                    user's report had helped hide; its reports no
//	                    longer count toward a hide. At most MaxDistrust
//	                    members (the oldest go first); a member leaves
//	                    with its account (ForgetReporter)
//
//	{posts}:gone        hash: post id -> snapshot of a queued post its
//	                    author deleted, '{"author":"<id>","post":<JSON>}',
//	                    a subset of the queue (see "Evidence kept")
//	{posts}:rv:<user>   set: the ids of user's posts in the hidden set,
//	                    live or deleted by the user while hidden (see
//	                    "Under review"); gone when empty
//
// Under review (docs/security.md "Evidence kept when an author deletes a
// reported listing", "Publishing while under review"): while an author
// has a post hidden pending review, or one deleted while hidden, the
// store script refuses their publishes (ErrUnderReview), so a hide is not
// slipped past by publishing the listing again. The report script that
// hides a post adds its id to the author's set rv:<user>; every script
// that takes an id out of the hidden set (dismiss, the delete without
// evidence, expiry, RemoveEvidence, the account erasure, the last
// reporter's account deletion) takes it out of the author's set, and the
// store script drops the ids no longer hidden, or no longer queued (no
// operator would see them), before it decides, so an id an older node
// un-hid or dequeued during an upgrade never blocks for good. The
// sets hold only hidden ids: all together at most ReportBounds.Queue.
// The account erasure deletes the user's set.
//
// A post is in the queue exactly when its two report keys exist: the
// report script makes all three, the dismiss, delete and expiry scripts
// remove all three, and the post's id from the hidden set with them.
//
// Evidence kept (docs/security.md "Evidence kept when an author deletes a
// reported listing"): the author's own delete of a post in the queue
// removes the post for everyone, as any delete, but leaves its report
// keys, its queue entry and its hidden mark, and keeps the post as it was
// in the gone hash, in the same script. The operators then see it,
// marked deleted by its author; a dismissal, a removal, the queue's
// eviction and the author's account deletion drop the snapshot with the
// reports. The snapshot's bytes count in {posts}:bytes with the posts'
// (the --max-post-bytes budget), and the hash is a subset of the queue
// (--report-queue-max): no new bound is needed. The expiry sweep does
// not see a deleted post (it is out of {posts}:date), so a snapshot
// waits for an operator, or for the eviction when it has one reporter
// and is not hidden.
//
// A reporter's field in rby:<id> holds its reason, with a '+' appended
// when the reporter's account was old enough to count toward an
// automatic hide (Report.Aged). The report that brings the post's aged
// reporters to ReportBounds.HideAt adds the id to the hidden set and
// announces {"op":"hide","ids":[<id>]} on the posts channel, in the same
// script as the report: two reports at once cannot both miss the
// threshold, nor both announce. A dismissal that takes the id out of the
// set announces {"op":"show","ids":[<id>]}; a deletion or expiry
// announces the deletion as always, which every node applies to hidden
// posts too (docs/protocol.md "Listings hidden pending review").
//
// The queue is bounded in total, not only per post: when it holds
// ReportBounds.Queue posts, a report of a post not in it yet evicts the
// lowest entry (the fewest reporters, then the lowest id: the oldest post)
// if that entry has a single reporter, and is not stored otherwise. So a
// flood of single reports can push out other single reports, never a
// post that several users report (docs/security.md "Reports").

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// MaxDistrust bounds {posts}:distrust: the users whose reports no longer
// count toward an automatic hide, since a hide they helped make was
// dismissed. Past it the oldest entries go (about 5 MB at the bound).
const MaxDistrust = 100_000

// ErrOwnPost: a user reported its own post; nothing was stored.
var ErrOwnPost = errors.New("one cannot report one's own post")

// ReportBounds cap what one post's reports hold in Redis.
type ReportBounds struct {
	// Reporters: distinct reporters kept (and counted) per post; a report
	// from one more is acknowledged and stores nothing.
	Reporters int
	// Details: latest full reports (reason, time, text) kept per post.
	Details int
	// Queue: reported posts kept in the review queue, all together; the
	// bound of all reports' memory is Queue times one post's at the
	// other two caps. Zero or less, in any of these three fields:
	// DefaultReportBounds' (OrDefaults).
	Queue int
	// HideAt: a post is hidden automatically once this many distinct
	// reporters with Report.Aged report it; 0: never. Not a cap:
	// OrDefaults leaves it as it is.
	HideAt int
}

// DefaultReportBounds are the caps docs/security.md "Reports" sizes.
var DefaultReportBounds = ReportBounds{Reporters: 100, Details: 10, Queue: 5000}

// OrDefaults is b with each field of zero or less taken from
// DefaultReportBounds: no cap is ever unbounded.
func (b ReportBounds) OrDefaults() ReportBounds {
	if b.Reporters <= 0 {
		b.Reporters = DefaultReportBounds.Reporters
	}
	if b.Details <= 0 {
		b.Details = DefaultReportBounds.Details
	}
	if b.Queue <= 0 {
		b.Queue = DefaultReportBounds.Queue
	}
	return b
}

// Report is one user's report of a post.
type Report struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
	At     int64  `json:"at"` // Unix seconds
	Text   string `json:"text,omitempty"`
	// Aged: the reporter's account is old enough for its report to count
	// toward an automatic hide (ReportBounds.HideAt). The caller decides;
	// it is stored with the reporter's reason, not in the JSON.
	Aged bool `json:"-"`
}

// ReportResult says what a report changed.
type ReportResult struct {
	// Reporters is how many distinct users report the post after it.
	Reporters int
	// Again: this user had reported the post before; its reason and text
	// were replaced, the count is unchanged.
	Again bool
	// Capped: the post has ReportBounds.Reporters reporters already and
	// this (new) one was not stored.
	Capped bool
	// QueueFull: the post was not in the review queue, the queue holds
	// ReportBounds.Queue posts and none of them has a single reporter;
	// nothing was stored (Reporters is 0).
	QueueFull bool
	// Evicted: the id of the post with a single reporter that this report
	// took out of the full queue, its reports deleted; 0: none.
	Evicted uint64
	// Hidden: this report brought the post's aged reporters to
	// ReportBounds.HideAt; the post is hidden now and every node was told.
	Hidden bool
}

// reviewKey is the set of user's posts hidden pending review ("Under
// review").
func (c *Client) reviewKey(user string) string { return c.postsKey("rv:" + user) }

func (c *Client) reportKeys(sid string) (by, last string) {
	return c.postsKey("rby:" + sid), c.postsKey("rlast:" + sid)
}

// luaDropGone is a Lua function the scripts that drop a queue entry share:
// dropgone(gone, bytes, id) removes post id's snapshot, if any, and its
// bytes from the byte budget's count; it returns the snapshot's author
// (nil when there was none).
const luaDropGone = `
local function dropgone(gone, bytes, id)
  local s = redis.call('HGET', gone, id)
  if not s then return nil end
  redis.call('HDEL', gone, id)
  if redis.call('EXISTS', bytes) == 1 then redis.call('DECRBY', bytes, #s) end
  return string.match(s, '^{"author":"([^"]*)"') or ''
end
`

// reportScript stores one report. KEYS: owner, rby:<id>, rlast:<id>,
// reported, hidden, distrust, gone, bytes. ARGV: id, reporter, reason, the report's JSON (it
// starts '{"by":"<reporter>",'), max reporters, max details, max queued
// posts, the prefix of the report keys ('<p>{posts}:'), the id's tie
// fraction (reportTie), '1' when the reporter is aged (Report.Aged), the
// hide threshold (0: none), the posts channel. An aged reporter on the
// distrust set is stored as not aged.
// Returns {1, n, evicted, hid} stored (evicted: the id of the post taken
// out of the full queue to make room, empty: none; hid: 1 when this
// report hid the post), {2, n, ”, hid} stored again (a repeat: reason
// and text replaced, not counted), {3, n} capped (nothing stored), {4, 0}
// the queue is full of posts with several reporters or hidden ones
// (nothing stored), {0} no such post, {-1} the reporter is the author.
//
// An evicted post's report keys are named here, not passed: which post
// goes is known only inside the script, and its keys carry the {posts}
// tag of the keys passed, so they are in the script's slot on a cluster
// (as the expiry script does). A hidden post is never evicted: it would
// stay hidden with nothing in the queue to show it to an operator. An
// evicted entry's snapshot (a post its author deleted) goes with it.
//
// Counting the aged reporters walks the post's reporters (at most
// ReportBounds.Reporters fields), and only while the post is not hidden
// yet and only for an aged reporter's report.
var reportScript = newScript("post_report", luaDropGone+`
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then return {0} end
if owner == ARGV[2] then return {-1} end
local again = redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1
local n = redis.call('HLEN', KEYS[2])
if not again and n >= tonumber(ARGV[5]) then return {3, n} end
local evicted = ''
if not redis.call('ZSCORE', KEYS[4], ARGV[1]) and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[7]) then
  local low = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if tonumber(low[2]) >= 2 or redis.call('SISMEMBER', KEYS[5], low[1]) == 1 then return {4, 0} end
  evicted = low[1]
  redis.call('ZREM', KEYS[4], evicted)
  redis.call('DEL', ARGV[8] .. 'rby:' .. evicted, ARGV[8] .. 'rlast:' .. evicted)
  dropgone(KEYS[7], KEYS[8], evicted)
end
local aged = ARGV[10] == '1' and not redis.call('ZSCORE', KEYS[6], ARGV[2])
local v = ARGV[3]
if aged then v = v .. '+' end
redis.call('HSET', KEYS[2], ARGV[2], v)
if again then
  local head = '{"by":"' .. ARGV[2] .. '",'
  for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    if string.sub(e, 1, #head) == head then redis.call('LREM', KEYS[3], 0, e) end
  end
else
  n = n + 1
end
redis.call('LPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[6]) - 1)
redis.call('ZADD', KEYS[4], n + tonumber(ARGV[9]), ARGV[1])
local hid = 0
local at = tonumber(ARGV[11])
if at > 0 and aged and redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 0 then
  local k = 0
  for _, r in ipairs(redis.call('HVALS', KEYS[2])) do
    if string.sub(r, -1) == '+' then k = k + 1 end
  end
  if k >= at then
    redis.call('SADD', KEYS[5], ARGV[1])
    redis.call('SADD', ARGV[8] .. 'rv:' .. owner, ARGV[1])
    redis.call('PUBLISH', ARGV[12], '{"op":"hide","ids":[' .. ARGV[1] .. ']}')
    hid = 1
  end
end
if again then return {2, n, '', hid} end
return {1, n, evicted, hid}`)

// reportTie is the fraction under 1 that the queue adds to a post's
// reporter count, so that posts with as many reporters are ordered by id
// (the oldest lowest): the sorted set alone would order them as strings,
// "10" before "9". Exact for ids under 2^40 and up to 8,191 reporters
// (53 bits); ids past 2^40 share the top fraction.
func reportTie(id uint64) string {
	const bits = 40
	id = min(id, 1<<bits-1)
	return strconv.FormatFloat(float64(id)/(1<<bits), 'g', -1, 64)
}

// ReportPost stores r as a report of post id, within b, in one atomic step
// that checks the post exists (ErrPostNotFound) and is not r.By's own
// (ErrOwnPost). A user who reported the post before replaces its reason
// and text and is not counted again.
func (c *Client) ReportPost(ctx context.Context, id uint64, r Report, b ReportBounds) (ReportResult, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	detail := AppendReport(nil, r)
	b = b.OrDefaults()
	aged := "0"
	if r.Aged {
		aged = "1"
	}
	vs, err := reportScript.Exec(ctx, c.rc, []string{c.postsKey("owner"), by, last, c.postsKey("reported"), c.postsKey("hidden"),
		c.postsKey("distrust"), c.postsKey("gone"), c.postsKey("bytes")},
		[]string{sid, r.By, r.Reason, string(detail), strconv.Itoa(b.Reporters), strconv.Itoa(b.Details),
			strconv.Itoa(b.Queue), c.postsKey(""), reportTie(id), aged, strconv.Itoa(max(b.HideAt, 0)),
			c.key(PostsChannel)}).ToArray()
	if err != nil {
		return ReportResult{}, c.wrap("report post "+sid, err)
	}
	if len(vs) == 0 {
		return ReportResult{}, errors.New("report script: empty reply")
	}
	code, err := vs[0].AsInt64()
	if err != nil {
		return ReportResult{}, c.wrap("report post "+sid, err)
	}
	var n int64
	if len(vs) > 1 {
		n, _ = vs[1].AsInt64()
	}
	hid := false
	if len(vs) > 3 {
		h, _ := vs[3].AsInt64()
		hid = h == 1
	}
	switch code {
	case 0:
		return ReportResult{}, ErrPostNotFound
	case -1:
		return ReportResult{}, ErrOwnPost
	case 1:
		res := ReportResult{Reporters: int(n), Hidden: hid}
		if len(vs) > 2 {
			if e, _ := vs[2].ToString(); e != "" {
				res.Evicted, _ = strconv.ParseUint(e, 10, 64)
			}
		}
		return res, nil
	case 2:
		return ReportResult{Reporters: int(n), Again: true, Hidden: hid}, nil
	case 3:
		return ReportResult{Reporters: int(n), Capped: true}, nil
	case 4:
		return ReportResult{QueueFull: true}, nil
	}
	return ReportResult{}, errors.New("report script: unexpected reply")
}

// AppendReport appends r as the JSON the report list holds; "by" comes
// first, as the report script finds a reporter's earlier entry by it.
func AppendReport(dst []byte, r Report) []byte {
	dst = append(dst, `{"by":`...)
	dst = appendJSONString(dst, r.By)
	dst = append(dst, `,"reason":`...)
	dst = appendJSONString(dst, r.Reason)
	dst = append(dst, `,"at":`...)
	dst = strconv.AppendInt(dst, r.At, 10)
	if r.Text != "" {
		dst = append(dst, `,"text":`...)
		dst = appendJSONString(dst, r.Text)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string: '"' and '\' escaped, control
// characters as \u00XX, everything else (valid UTF-8 assumed: the caller
// checked) as is, so a stored report costs its text's own bytes.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			dst = append(dst, '\\', ch)
		case ch == '\n':
			dst = append(dst, '\\', 'n')
		case ch < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		default:
			dst = append(dst, ch)
		}
	}
	return append(dst, '"')
}

// ReportQueueLen returns how many posts the review queue holds.
func (c *Client) ReportQueueLen(ctx context.Context) (int, error) {
	n, err := c.do(ctx, c.rc.B().Zcard().Key(c.postsKey("reported")).Build()).AsInt64()
	return int(n), c.wrap("count the reported posts", err)
}

// ReportedPost is one post of the review queue, as an operator sees it.
type ReportedPost struct {
	ID uint64
	// Author is the post's owner; empty when the post is gone (its reports
	// outlived it: an old node deleted it during a rolling upgrade).
	Author string
	// Reporters: distinct users who report it (at most
	// ReportBounds.Reporters).
	Reporters int
	// Reasons: how many of the reporters gave each reason.
	Reasons map[string]int
	// Post is the post's JSON as apps get it; empty when it is gone.
	Post string
	// Latest are the latest reports in full, newest first.
	Latest []string
	// Hidden: the post is hidden automatically (ReportBounds.HideAt)
	// until an operator dismisses its reports or removes it.
	Hidden bool
	// DeletedByAuthor: the author deleted the post while it was queued;
	// Author and Post are the snapshot kept of it ("Evidence kept").
	DeletedByAuthor bool
}

// HiddenPosts returns the ids of the posts hidden automatically, in no
// order. The set is a subset of the review queue, so it holds at most
// ReportBounds.Queue ids.
func (c *Client) HiddenPosts(ctx context.Context) ([]uint64, error) {
	ss, err := c.do(ctx, c.rc.B().Smembers().Key(c.postsKey("hidden")).Build()).AsStrSlice()
	if err != nil {
		return nil, c.wrap("read the hidden posts", err)
	}
	out := make([]uint64, 0, len(ss))
	for _, s := range ss {
		if id, err := strconv.ParseUint(s, 10, 64); err == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

// ReportedPosts returns up to limit posts of the review queue: the hidden
// ones first, then the rest, each part most reported first (ties: higher
// id first), each post with its latest details (at most details of them).
func (c *Client) ReportedPosts(ctx context.Context, limit, details int) ([]ReportedPost, error) {
	if limit <= 0 {
		return nil, nil
	}
	hidden, err := c.do(ctx, c.rc.B().Smembers().Key(c.postsKey("hidden")).Build()).AsStrSlice()
	if err != nil {
		return nil, c.wrap("read the hidden posts", err)
	}
	isHidden := make(map[string]bool, len(hidden))
	var ids []rueidis.ZScore
	if len(hidden) > 0 {
		cmds := make(rueidis.Commands, 0, len(hidden))
		for _, h := range hidden {
			isHidden[h] = true
			cmds = append(cmds, c.rc.B().Zscore().Key(c.postsKey("reported")).Member(h).Build())
		}
		cctx, cancel := c.bound(ctx)
		for i, r := range c.rc.DoMulti(cctx, cmds...) {
			f, err := r.AsFloat64()
			if rueidis.IsRedisNil(err) {
				continue // not queued: only an older node's dismissal leaves that
			}
			if err != nil {
				cancel()
				return nil, c.wrap("read the hidden posts", err)
			}
			ids = append(ids, rueidis.ZScore{Member: hidden[i], Score: f})
		}
		cancel()
		slices.SortFunc(ids, func(a, b rueidis.ZScore) int { return cmp.Compare(b.Score, a.Score) })
		ids = ids[:min(len(ids), limit)]
	}
	if rest := limit - len(ids); rest > 0 {
		zs, err := c.do(ctx, c.rc.B().Zrange().Key(c.postsKey("reported")).Min("+inf").Max("-inf").
			Byscore().Rev().Limit(0, int64(rest+len(hidden))).Withscores().Build()).AsZScores()
		if err != nil {
			return nil, c.wrap("read the reported posts", err)
		}
		for _, z := range zs {
			if !isHidden[z.Member] && len(ids) < limit {
				ids = append(ids, z)
			}
		}
	}
	out := make([]ReportedPost, 0, len(ids))
	for _, z := range ids {
		id, err := strconv.ParseUint(z.Member, 10, 64)
		if err != nil {
			continue // not ours: the scripts write decimal ids only
		}
		by, last := c.reportKeys(z.Member)
		cctx, cancel := c.bound(ctx)
		rs := c.rc.DoMulti(cctx,
			c.rc.B().Hget().Key(c.postsKey("owner")).Field(z.Member).Build(),
			c.rc.B().Hget().Key(c.postsKey("data")).Field(z.Member).Build(),
			c.rc.B().Hvals().Key(by).Build(),
			c.rc.B().Lrange().Key(last).Start(0).Stop(int64(max(details, 1))-1).Build(),
			c.rc.B().Hget().Key(c.postsKey("gone")).Field(z.Member).Build())
		cancel()
		p := ReportedPost{ID: id, Reasons: map[string]int{}, Hidden: isHidden[z.Member]}
		var rerr error
		if p.Author, rerr = rs[0].ToString(); rerr != nil && !rueidis.IsRedisNil(rerr) {
			return out, c.wrap("read reported post "+z.Member, rerr)
		}
		if p.Post, rerr = rs[1].ToString(); rerr != nil && !rueidis.IsRedisNil(rerr) {
			return out, c.wrap("read reported post "+z.Member, rerr)
		}
		if snap, rerr := rs[4].ToString(); rerr == nil && p.Post == "" {
			if author, post, ok := parseGone(snap); ok {
				p.Author, p.Post, p.DeletedByAuthor = author, post, true
			}
		} else if rerr != nil && !rueidis.IsRedisNil(rerr) {
			return out, c.wrap("read the snapshot of post "+z.Member, rerr)
		}
		reasons, rerr := rs[2].AsStrSlice()
		if rerr != nil {
			return out, c.wrap("read the reporters of post "+z.Member, rerr)
		}
		for _, r := range reasons {
			p.Reasons[strings.TrimSuffix(r, "+")]++
		}
		p.Reporters = len(reasons)
		if p.Latest, rerr = rs[3].AsStrSlice(); rerr != nil {
			return out, c.wrap("read the reports of post "+z.Member, rerr)
		}
		out = append(out, p)
	}
	return out, nil
}

// dismissScript removes a post's reports, its queue entry and its
// snapshot (a post its author deleted), and shows the post again when it
// was hidden; then the reporters that counted toward the hide go on the
// distrust set (trimmed to its bound, oldest first). A deleted post is
// not shown: its id is announced deleted again, which tells no client
// anything (no node holds it) and clears a node's hidden mark.
// A hidden post leaves its author's review set ("Under review").
// KEYS: rby:<id>, rlast:<id>, reported, hidden, distrust, gone, bytes,
// owner. ARGV: id, the posts channel, now (Unix ms), MaxDistrust, the
// prefix of the review sets ('<p>{posts}:'). Returns {how
// many reporters there were, 1 when the post was hidden, 1 when it was a
// snapshot}.
var dismissScript = newScript("post_dismiss", luaDropGone+`
local n = redis.call('HLEN', KEYS[1])
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then
  local kv = redis.call('HGETALL', KEYS[1])
  for i = 1, #kv, 2 do
    if string.sub(kv[i + 1], -1) == '+' then redis.call('ZADD', KEYS[5], ARGV[3], kv[i]) end
  end
  local over = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[4])
  if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, over - 1) end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
local g = 0
local author = dropgone(KEYS[6], KEYS[7], ARGV[1])
if author then g = 1 else author = redis.call('HGET', KEYS[8], ARGV[1]) end
local h = redis.call('SREM', KEYS[4], ARGV[1])
if h == 1 and author then redis.call('SREM', ARGV[5] .. 'rv:' .. author, ARGV[1]) end
if h == 1 and g == 1 then
  redis.call('PUBLISH', ARGV[2], '{"op":"del","ids":[' .. ARGV[1] .. ']}')
elseif h == 1 then
  redis.call('PUBLISH', ARGV[2], '{"op":"show","ids":[' .. ARGV[1] .. ']}')
end
return {n, h, g}`)

// DismissReports clears post id's reports (the post stays) and returns how
// many distinct reporters it had (0: none) and whether it was hidden
// automatically: then it is shown again, on every node, and the
// reporters whose reports hid it no longer count toward a hide
// (Distrusted). For a post its author deleted the snapshot goes too and
// shown is false (nothing is shown), though its reporters are distrusted
// as for a hidden post when it was hidden.
func (c *Client) DismissReports(ctx context.Context, id uint64) (n int, shown bool, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	vs, err := dismissScript.Exec(ctx, c.rc, []string{by, last, c.postsKey("reported"), c.postsKey("hidden"), c.postsKey("distrust"),
		c.postsKey("gone"), c.postsKey("bytes"), c.postsKey("owner")},
		// The score only orders the set's trimming (oldest first): the
		// node's clock is good enough, and no test waits on it.
		[]string{sid, c.key(PostsChannel), strconv.FormatInt(time.Now().UnixMilli(), 10), strconv.Itoa(MaxDistrust),
			c.postsKey("")}).AsIntSlice()
	if err != nil {
		return 0, false, c.wrap("dismiss the reports of post "+sid, err)
	}
	if len(vs) != 3 {
		return 0, false, errors.New("dismiss script: unexpected reply")
	}
	return int(vs[0]), vs[1] == 1 && vs[2] == 0, nil
}

// Distrusted tells whether user's reports no longer count toward an
// automatic hide (a hide they helped make was dismissed).
func (c *Client) Distrusted(ctx context.Context, user string) (bool, error) {
	_, err := c.do(ctx, c.rc.B().Zscore().Key(c.postsKey("distrust")).Member(user).Build()).AsFloat64()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, c.wrap("look up the distrusted reporters", err)
}

// PostOwner returns the author of post id, or ErrPostNotFound.
func (c *Client) PostOwner(ctx context.Context, id uint64) (string, error) {
	sid := strconv.FormatUint(id, 10)
	s, err := c.do(ctx, c.rc.B().Hget().Key(c.postsKey("owner")).Field(sid).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", ErrPostNotFound
	}
	return s, c.wrap("read the author of post "+sid, err)
}

// RemovePost deletes post id as its author's delete would (the same
// script: every node drops it, subscribers with deletions get
// post_deleted, its reports go with it), for an operator. It returns the
// author and how many distinct reporters the post had, or ErrPostNotFound.
// A post its author deleted while queued is removed too: its snapshot and
// reports go, with no second deletion for the clients (RemoveEvidence).
func (c *Client) RemovePost(ctx context.Context, id uint64) (author string, reporters int, err error) {
	author, reporters, _, err = c.removePost(ctx, id)
	return author, reporters, err
}

// removePost is RemovePost, saying whether it was a snapshot's removal.
func (c *Client) removePost(ctx context.Context, id uint64) (author string, reporters int, gone bool, err error) {
	author, err = c.PostOwner(ctx, id)
	if errors.Is(err, ErrPostNotFound) {
		author, reporters, err = c.RemoveEvidence(ctx, id)
		return author, reporters, err == nil, err
	}
	if err != nil {
		return "", 0, false, err
	}
	sid := strconv.FormatUint(id, 10)
	by, _ := c.reportKeys(sid)
	n, err := c.do(ctx, c.rc.B().Hlen().Key(by).Build()).AsInt64()
	if err != nil {
		return author, 0, false, c.wrap("count the reporters of post "+sid, err)
	}
	// Post ids are never reused, so the author read above is still the
	// post's when the script runs; ErrPostNotFound here means it went
	// meanwhile (deleted by its author, expired).
	return author, int(n), false, c.DeletePost(ctx, id, author)
}

// removeEvidenceScript drops the snapshot of post id, a post its author
// deleted while queued, with its reports, queue entry and hidden mark
// (announcing the id deleted again when hidden, as the dismissal does).
// KEYS: gone, bytes, rby:<id>, rlast:<id>, reported, hidden. ARGV: id,
// the posts channel, the prefix of the review sets. Returns {0} when
// there is no snapshot, else {1, author, reporters}.
var removeEvidenceScript = newScript("post_remove_gone", luaDropGone+`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {0} end
local n = redis.call('HLEN', KEYS[3])
local author = dropgone(KEYS[1], KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('SREM', KEYS[6], ARGV[1]) == 1 then
  redis.call('SREM', ARGV[3] .. 'rv:' .. author, ARGV[1])
  redis.call('PUBLISH', ARGV[2], '{"op":"del","ids":[' .. ARGV[1] .. ']}')
end
return {1, author, n}`)

// RemoveEvidence removes the snapshot kept of post id, deleted by its
// author while queued, with its reports: an operator's removal of a post
// already gone. It returns the author and how many distinct reporters
// there were, or ErrPostNotFound when no snapshot is kept.
func (c *Client) RemoveEvidence(ctx context.Context, id uint64) (author string, reporters int, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	vs, err := removeEvidenceScript.Exec(ctx, c.rc, []string{c.postsKey("gone"), c.postsKey("bytes"), by, last,
		c.postsKey("reported"), c.postsKey("hidden")}, []string{sid, c.key(PostsChannel), c.postsKey("")}).ToArray()
	if err != nil {
		return "", 0, c.wrap("remove the snapshot of post "+sid, err)
	}
	if len(vs) == 0 {
		return "", 0, errors.New("remove snapshot script: empty reply")
	}
	if code, _ := vs[0].AsInt64(); code == 0 {
		return "", 0, ErrPostNotFound
	}
	if len(vs) != 3 {
		return "", 0, errors.New("remove snapshot script: unexpected reply")
	}
	author, _ = vs[1].ToString()
	n, _ := vs[2].AsInt64()
	return author, int(n), nil
}

// Evidence returns the snapshot kept of post id, deleted by its author
// while queued: its author and its JSON; found false when none is kept.
func (c *Client) Evidence(ctx context.Context, id uint64) (author, post string, found bool, err error) {
	sid := strconv.FormatUint(id, 10)
	s, err := c.do(ctx, c.rc.B().Hget().Key(c.postsKey("gone")).Field(sid).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, c.wrap("read the snapshot of post "+sid, err)
	}
	author, post, found = parseGone(s)
	return author, post, found, nil
}

// ScanEvidence calls fn with the JSON of every post kept in the gone
// hash (deleted by its author while queued), in batches as ScanPosts
// reads the posts; the hash is a subset of the queue, so it holds at most
// ReportBounds.Queue of them.
func (c *Client) ScanEvidence(ctx context.Context, fn func(post string)) error {
	cursor := uint64(0)
	for {
		cctx, cancel := c.bound(ctx)
		e, err := c.rc.Do(cctx, c.rc.B().Hscan().Key(c.postsKey("gone")).Cursor(cursor).Count(200).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return c.wrap("scan the posts kept for review", err)
		}
		for i := 1; i < len(e.Elements); i += 2 {
			if _, post, ok := parseGone(e.Elements[i]); ok {
				fn(post)
			}
		}
		if e.Cursor == 0 {
			return nil
		}
		cursor = e.Cursor
	}
}

// parseGone splits a snapshot of the gone hash into its author and the
// post's JSON; ok false when it is not in the delete script's format.
func parseGone(s string) (author, post string, ok bool) {
	const head, sep = `{"author":"`, `","post":`
	if !strings.HasPrefix(s, head) || !strings.HasSuffix(s, "}") {
		return "", "", false
	}
	rest := s[len(head) : len(s)-1]
	i := strings.Index(rest, sep)
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len(sep):], true
}

// RawDropReports does what an older node's dismissal did: post id's
// report keys and queue entry go, its id stays in the hidden set. Tests
// use it to plant what a rolling upgrade can leave.
func (c *Client) RawDropReports(ctx context.Context, id uint64) error {
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	if err := c.do(ctx, c.rc.B().Del().Key(by, last).Build()).Error(); err != nil {
		return c.wrap("drop the reports of "+sid, err)
	}
	return c.wrap("drop "+sid+" from the queue", c.do(ctx, c.rc.B().Zrem().Key(c.postsKey("reported")).Member(sid).Build()).Error())
}

// RawUnhide takes post id out of the hidden set and nothing else, as a
// node from before the review sets did when it dismissed or removed a
// hidden post. Tests use it to plant a stale review set.
func (c *Client) RawUnhide(ctx context.Context, id uint64) error {
	sid := strconv.FormatUint(id, 10)
	return c.wrap("unhide "+sid, c.do(ctx, c.rc.B().Srem().Key(c.postsKey("hidden")).Member(sid).Build()).Error())
}

// ReportKeys tells which of post id's report keys exist and whether it is
// in the review queue, for tests that check nothing outlives a post. A
// post in the hidden set counts as a key named "hidden", one with a
// snapshot in the gone hash as one named "gone".
func (c *Client) ReportKeys(ctx context.Context, id uint64) (keys []string, queued bool, err error) {
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	h, err := c.do(ctx, c.rc.B().Sismember().Key(c.postsKey("hidden")).Member(sid).Build()).AsBool()
	if err != nil {
		return nil, false, c.wrap("look up the hidden posts", err)
	}
	if h {
		keys = append(keys, "hidden")
	}
	g, err := c.do(ctx, c.rc.B().Hexists().Key(c.postsKey("gone")).Field(sid).Build()).AsBool()
	if err != nil {
		return nil, false, c.wrap("look up the snapshots", err)
	}
	if g {
		keys = append(keys, "gone")
	}
	for _, k := range []string{by, last} {
		n, err := c.do(ctx, c.rc.B().Exists().Key(k).Build()).AsInt64()
		if err != nil {
			return nil, false, c.wrap("look up "+k, err)
		}
		if n > 0 {
			keys = append(keys, strings.TrimPrefix(k, c.prefix))
		}
	}
	_, err = c.do(ctx, c.rc.B().Zscore().Key(c.postsKey("reported")).Member(sid).Build()).AsFloat64()
	if rueidis.IsRedisNil(err) {
		return keys, false, nil
	}
	if err != nil {
		return nil, false, c.wrap("look up the review queue", err)
	}
	return keys, true, nil
}

// forgetReporterScript takes user's reports out of a batch of reported
// posts, for an account deletion: its entry in each post's reporters and
// its full report, one reporter less in the queue's score, and the post's
// report keys and queue entry gone when it was the only reporter (a
// hidden post is then shown again: nothing is left for an operator to
// review; a post its author deleted loses its snapshot, and its id is
// announced deleted instead). A hidden post that keeps reporters stays
// hidden, even below the threshold: an operator decides. KEYS: reported,
// hidden, gone, bytes, owner. ARGV: the
// user, the prefix of the report keys ('<p>{posts}:'), the posts
// channel, then the post ids. The per-post keys are named in Lua (the reportScript's
// eviction does the same): they share the {posts} slot with KEYS[1].
// Returns how many posts the user had reported among them.
var forgetReporterScript = newScript("post_report_forget", luaDropGone+`
local user, head = ARGV[1], '{"by":"' .. ARGV[1] .. '",'
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local by, last = ARGV[2] .. 'rby:' .. id, ARGV[2] .. 'rlast:' .. id
  if redis.call('HDEL', by, user) == 1 then
    n = n + 1
    for _, e in ipairs(redis.call('LRANGE', last, 0, -1)) do
      if string.sub(e, 1, #head) == head then redis.call('LREM', last, 0, e) end
    end
    if redis.call('HLEN', by) == 0 then
      redis.call('DEL', by, last)
      redis.call('ZREM', KEYS[1], id)
      local op = 'show'
      local author = dropgone(KEYS[3], KEYS[4], id)
      if author then op = 'del' else author = redis.call('HGET', KEYS[5], id) end
      if redis.call('SREM', KEYS[2], id) == 1 then
        if author then redis.call('SREM', ARGV[2] .. 'rv:' .. author, id) end
        redis.call('PUBLISH', ARGV[3], '{"op":"' .. op .. '","ids":[' .. id .. ']}')
      end
    else
      redis.call('ZINCRBY', KEYS[1], -1, id)
    end
  end
end
return n`)

// ForgetReporter removes every report user made (an account deletion:
// nothing the user wrote stays with the operators): its entries in the
// reported posts, which then count one reporter less, and the posts it
// alone had reported leave the review queue. The queue is bounded
// (ReportBounds.Queue), so this is at most that many checks, in batches
// of forgetBatch posts a script; the user leaves the distrust set too.
// It returns how many posts the user had
// reported. A report the user makes meanwhile, from a session not closed
// yet, may stay; a second call takes it.
func (c *Client) ForgetReporter(ctx context.Context, user string) (int, error) {
	if err := c.do(ctx, c.rc.B().Zrem().Key(c.postsKey("distrust")).Member(user).Build()).Error(); err != nil {
		return 0, c.wrap("forget that "+user+" is distrusted", err)
	}
	ids, err := c.do(ctx, c.rc.B().Zrange().Key(c.postsKey("reported")).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return 0, c.wrap("read the review queue", err)
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), forgetBatch)]
		ids = ids[len(batch):]
		bctx, cancel := c.bound(ctx)
		r, err := forgetReporterScript.Exec(bctx, c.rc, []string{c.postsKey("reported"), c.postsKey("hidden"), c.postsKey("gone"), c.postsKey("bytes"),
			c.postsKey("owner")},
			append([]string{user, c.postsKey(""), c.key(PostsChannel)}, batch...)).AsInt64()
		cancel()
		if err != nil {
			return n, c.wrap("forget the reports of "+user, err)
		}
		n += int(r)
	}
	return n, nil
}

// eraseEvidenceScript drops, among a batch of queued posts, the
// snapshots whose author is ARGV[1] (an account deletion: nothing of the
// user stays), each with its reports, queue entry and hidden mark (the id
// announced deleted again when hidden). KEYS: reported, hidden, gone,
// bytes. ARGV: the user, the prefix of the report keys ('<p>{posts}:'),
// the posts channel, then the post ids. Returns how many it dropped.
var eraseEvidenceScript = newScript("post_gone_erase", luaDropGone+`
local head = '{"author":"' .. ARGV[1] .. '",'
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local s = redis.call('HGET', KEYS[3], id)
  if s and string.sub(s, 1, #head) == head then
    dropgone(KEYS[3], KEYS[4], id)
    redis.call('DEL', ARGV[2] .. 'rby:' .. id, ARGV[2] .. 'rlast:' .. id)
    redis.call('ZREM', KEYS[1], id)
    if redis.call('SREM', KEYS[2], id) == 1 then
      redis.call('PUBLISH', ARGV[3], '{"op":"del","ids":[' .. id .. ']}')
    end
    redis.call('SREM', ARGV[2] .. 'rv:' .. ARGV[1], id)
    n = n + 1
  end
end
return n`)

// EraseEvidenceOf drops every snapshot kept of user's posts, deleted by
// the user while queued, with their reports and queue entries: for an
// account deletion, after the user's live posts went (whose reports go
// with them). The gone hash is a subset of the queue, so this walks the
// queue (ReportBounds.Queue at most) in batches of forgetBatch posts, as
// ForgetReporter does; most cost one HGET of a field that is not there.
// It returns how many snapshots it dropped.
func (c *Client) EraseEvidenceOf(ctx context.Context, user string) (int, error) {
	n, err := c.do(ctx, c.rc.B().Hlen().Key(c.postsKey("gone")).Build()).AsInt64()
	if err != nil {
		return 0, c.wrap("count the snapshots", err)
	}
	if n == 0 {
		return 0, c.dropReview(ctx, user)
	}
	ids, err := c.do(ctx, c.rc.B().Zrange().Key(c.postsKey("reported")).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return 0, c.wrap("read the review queue", err)
	}
	done := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), forgetBatch)]
		ids = ids[len(batch):]
		bctx, cancel := c.bound(ctx)
		r, err := eraseEvidenceScript.Exec(bctx, c.rc, []string{c.postsKey("reported"), c.postsKey("hidden"), c.postsKey("gone"),
			c.postsKey("bytes")}, append([]string{user, c.postsKey(""), c.key(PostsChannel)}, batch...)).AsInt64()
		cancel()
		if err != nil {
			return done, c.wrap("erase the snapshots of "+user, err)
		}
		done += int(r)
	}
	return done, c.dropReview(ctx, user)
}

// UnderReview returns the ids of user's posts that keep user from
// publishing: hidden pending review, live or deleted by the user while
// hidden ("Under review"); ids no longer hidden, or no longer queued,
// are left out.
func (c *Client) UnderReview(ctx context.Context, user string) ([]uint64, error) {
	ss, err := c.do(ctx, c.rc.B().Smembers().Key(c.reviewKey(user)).Build()).AsStrSlice()
	if err != nil {
		return nil, c.wrap("read the posts of "+user+" under review", err)
	}
	var out []uint64
	for _, s := range ss {
		h, err := c.do(ctx, c.rc.B().Sismember().Key(c.postsKey("hidden")).Member(s).Build()).AsBool()
		if err != nil {
			return nil, c.wrap("look up the hidden posts", err)
		}
		_, qerr := c.do(ctx, c.rc.B().Zscore().Key(c.postsKey("reported")).Member(s).Build()).AsFloat64()
		if qerr != nil && !rueidis.IsRedisNil(qerr) {
			return nil, c.wrap("look up the review queue", qerr)
		}
		if id, perr := strconv.ParseUint(s, 10, 64); perr == nil && h && qerr == nil {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReviewSetLen is how many ids user's review set holds, stale ones
// included (tests check that it empties).
func (c *Client) ReviewSetLen(ctx context.Context, user string) (int, error) {
	n, err := c.do(ctx, c.rc.B().Scard().Key(c.reviewKey(user)).Build()).AsInt64()
	return int(n), c.wrap("count the review set of "+user, err)
}

// dropReview deletes user's review set, the last step of an account
// deletion: the user's hidden posts left it as they went, this takes what
// an older node's removal or a race left behind.
func (c *Client) dropReview(ctx context.Context, user string) error {
	return c.wrap("drop the review set of "+user, c.do(ctx, c.rc.B().Del().Key(c.reviewKey(user)).Build()).Error())
}

// forgetBatch is how many reported posts one ForgetReporter script checks:
// each costs an HDEL, so a batch holds Redis for well under a millisecond.
const forgetBatch = 200
