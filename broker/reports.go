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
//
// A post is in the queue exactly when its two report keys exist: the
// report script makes all three, the dismiss, delete and expiry scripts
// remove all three.
//
// The queue is bounded in total, not only per post: when it holds
// ReportBounds.Queue posts, a report of a post not in it yet evicts the
// lowest entry (the fewest reporters, then the lowest id: the oldest post)
// if that entry has a single reporter, and is not stored otherwise. So a
// flood of single reports can push out other single reports, never a
// post that several users report (docs/security.md "Reports").

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

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
	// other two caps. Zero or less, in any field: DefaultReportBounds'
	// (OrDefaults).
	Queue int
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
}

func (c *Client) reportKeys(sid string) (by, last string) {
	return c.postsKey("rby:" + sid), c.postsKey("rlast:" + sid)
}

// reportScript stores one report. KEYS: owner, rby:<id>, rlast:<id>,
// reported. ARGV: id, reporter, reason, the report's JSON (it starts
// '{"by":"<reporter>",'), max reporters, max details, max queued posts,
// the prefix of the report keys ('<p>{posts}:'), the id's tie fraction
// (reportTie).
// Returns {1, n, evicted} stored (evicted: the id of the post taken out
// of the full queue to make room, empty: none), {2, n} stored again (a
// repeat: reason and text replaced, not counted), {3, n} capped (nothing
// stored), {4, 0} the queue is full of posts with several reporters
// (nothing stored), {0} no such post, {-1} the reporter is the author.
//
// An evicted post's report keys are named here, not passed: which post
// goes is known only inside the script, and its keys carry the {posts}
// tag of the keys passed, so they are in the script's slot on a cluster
// (as the expiry script does).
var reportScript = newScript("post_report", `
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then return {0} end
if owner == ARGV[2] then return {-1} end
local again = redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1
local n = redis.call('HLEN', KEYS[2])
if not again and n >= tonumber(ARGV[5]) then return {3, n} end
local evicted = ''
if not redis.call('ZSCORE', KEYS[4], ARGV[1]) and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[7]) then
  local low = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if tonumber(low[2]) >= 2 then return {4, 0} end
  evicted = low[1]
  redis.call('ZREM', KEYS[4], evicted)
  redis.call('DEL', ARGV[8] .. 'rby:' .. evicted, ARGV[8] .. 'rlast:' .. evicted)
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
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
if again then return {2, n} end
return {1, n, evicted}`)

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
	vs, err := reportScript.Exec(ctx, c.rc, []string{c.postsKey("owner"), by, last, c.postsKey("reported")},
		[]string{sid, r.By, r.Reason, string(detail), strconv.Itoa(b.Reporters), strconv.Itoa(b.Details),
			strconv.Itoa(b.Queue), c.postsKey(""), reportTie(id)}).ToArray()
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
	switch code {
	case 0:
		return ReportResult{}, ErrPostNotFound
	case -1:
		return ReportResult{}, ErrOwnPost
	case 1:
		res := ReportResult{Reporters: int(n)}
		if len(vs) > 2 {
			if e, _ := vs[2].ToString(); e != "" {
				res.Evicted, _ = strconv.ParseUint(e, 10, 64)
			}
		}
		return res, nil
	case 2:
		return ReportResult{Reporters: int(n), Again: true}, nil
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
}

// ReportedPosts returns up to limit posts of the review queue, most
// reported first (ties: higher id first), each with its latest details
// (at most details of them).
func (c *Client) ReportedPosts(ctx context.Context, limit, details int) ([]ReportedPost, error) {
	if limit <= 0 {
		return nil, nil
	}
	ids, err := c.do(ctx, c.rc.B().Zrange().Key(c.postsKey("reported")).Min("+inf").Max("-inf").
		Byscore().Rev().Limit(0, int64(limit)).Withscores().Build()).AsZScores()
	if err != nil {
		return nil, c.wrap("read the reported posts", err)
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
			c.rc.B().Lrange().Key(last).Start(0).Stop(int64(max(details, 1))-1).Build())
		cancel()
		p := ReportedPost{ID: id, Reasons: map[string]int{}}
		var rerr error
		if p.Author, rerr = rs[0].ToString(); rerr != nil && !rueidis.IsRedisNil(rerr) {
			return out, c.wrap("read reported post "+z.Member, rerr)
		}
		if p.Post, rerr = rs[1].ToString(); rerr != nil && !rueidis.IsRedisNil(rerr) {
			return out, c.wrap("read reported post "+z.Member, rerr)
		}
		reasons, rerr := rs[2].AsStrSlice()
		if rerr != nil {
			return out, c.wrap("read the reporters of post "+z.Member, rerr)
		}
		for _, r := range reasons {
			p.Reasons[r]++
		}
		p.Reporters = len(reasons)
		if p.Latest, rerr = rs[3].AsStrSlice(); rerr != nil {
			return out, c.wrap("read the reports of post "+z.Member, rerr)
		}
		out = append(out, p)
	}
	return out, nil
}

// dismissScript removes a post's reports and its queue entry.
// KEYS: rby:<id>, rlast:<id>, reported. ARGV: id. Returns how many
// reporters there were.
var dismissScript = newScript("post_dismiss", `
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return n`)

// DismissReports clears post id's reports (the post stays) and returns how
// many distinct reporters it had; 0: it had none.
func (c *Client) DismissReports(ctx context.Context, id uint64) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
	n, err := dismissScript.Exec(ctx, c.rc, []string{by, last, c.postsKey("reported")}, []string{sid}).AsInt64()
	if err != nil {
		return 0, c.wrap("dismiss the reports of post "+sid, err)
	}
	return int(n), nil
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
func (c *Client) RemovePost(ctx context.Context, id uint64) (author string, reporters int, err error) {
	author, err = c.PostOwner(ctx, id)
	if err != nil {
		return "", 0, err
	}
	sid := strconv.FormatUint(id, 10)
	by, _ := c.reportKeys(sid)
	n, err := c.do(ctx, c.rc.B().Hlen().Key(by).Build()).AsInt64()
	if err != nil {
		return author, 0, c.wrap("count the reporters of post "+sid, err)
	}
	// Post ids are never reused, so the author read above is still the
	// post's when the script runs; ErrPostNotFound here means it went
	// meanwhile (deleted by its author, expired).
	return author, int(n), c.DeletePost(ctx, id, author)
}

// ReportKeys tells which of post id's report keys exist and whether it is
// in the review queue, for tests that check nothing outlives a post.
func (c *Client) ReportKeys(ctx context.Context, id uint64) (keys []string, queued bool, err error) {
	sid := strconv.FormatUint(id, 10)
	by, last := c.reportKeys(sid)
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
// report keys and queue entry gone when it was the only reporter. KEYS:
// reported. ARGV: the user, the prefix of the report keys ('<p>{posts}:'),
// then the post ids. The per-post keys are named in Lua (the reportScript's
// eviction does the same): they share the {posts} slot with KEYS[1].
// Returns how many posts the user had reported among them.
var forgetReporterScript = newScript("post_report_forget", `
local user, head = ARGV[1], '{"by":"' .. ARGV[1] .. '",'
local n = 0
for i = 3, #ARGV do
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
// of forgetBatch posts a script. It returns how many posts the user had
// reported. A report the user makes meanwhile, from a session not closed
// yet, may stay; a second call takes it.
func (c *Client) ForgetReporter(ctx context.Context, user string) (int, error) {
	ids, err := c.do(ctx, c.rc.B().Zrange().Key(c.postsKey("reported")).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return 0, c.wrap("read the review queue", err)
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), forgetBatch)]
		ids = ids[len(batch):]
		bctx, cancel := c.bound(ctx)
		r, err := forgetReporterScript.Exec(bctx, c.rc, []string{c.postsKey("reported")},
			append([]string{user, c.postsKey("")}, batch...)).AsInt64()
		cancel()
		if err != nil {
			return n, c.wrap("forget the reports of "+user, err)
		}
		n += int(r)
	}
	return n, nil
}

// forgetBatch is how many reported posts one ForgetReporter script checks:
// each costs an HDEL, so a batch holds Redis for well under a millisecond.
const forgetBatch = 200
