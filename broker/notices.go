package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// Notices (docs/protocol.md "Notices"): what the operators tell a user,
// today why a post of theirs was removed. A user's notices are a list,
// nt:{id}, oldest first, of JSON objects '{"id":N,...}' whose ids grow
// (the counter is the field "nseq" of the user's hash). A notice is
// informational, not an acknowledged message: the list keeps the newest
// MaxNotices, dropping the oldest, and expires like the user's offline
// queue. It shares the user's hash tag and goes with the account (its
// key is among accountKeys). The script that adds one publishes it on the
// user's channel ('o' and the notice), so a live session that asked for
// notices gets it at once.

// MaxNotices is the most notices a user's list keeps.
const MaxNotices = 20

// MaxNoticeNote is the most bytes an operator's note to a user may hold;
// MaxNoticeTitle the most characters of the post's title a notice keeps.
const (
	MaxNoticeNote  = 280
	MaxNoticeTitle = 100
)

// NoticePostRemoved is the kind of a notice that a post was removed.
const NoticePostRemoved = "post_removed"

// RemovalReasons are the stable codes of why an operator removed a post.
var RemovalReasons = []string{"spam", "scam", "prohibited", "offensive", "other"}

// Notice is one notice as stored and sent, less its id.
type Notice struct {
	Kind   string `json:"kind"`
	Post   uint64 `json:"post,omitempty"`
	Title  string `json:"title,omitempty"`
	Reason string `json:"reason"`
	Note   string `json:"note,omitempty"`
	At     int64  `json:"at"` // Unix ms
}

// MaxToldPosts is how many posts a user's ntp:{id} remembers having told
// of (see addNoticeScript).
const MaxToldPosts = 100

// addNoticeScript: KEYS u:{id}, nt:{id}, ntp:{id}; ARGV the notice's JSON
// without its opening brace, the list's bound, its lifetime (ms; 0:
// none), the user's channel, the publish command, the post the notice
// tells of ("" for none), MaxToldPosts. Returns the notice's id, or -1
// when there is no such account (nothing stored nor published).
//
// A post's removal is told once: ntp:{id} (a sorted set, post id scored
// by its notice's id, the newest MaxToldPosts kept, living as long as
// the notices) remembers the posts told of, and a second notice of the
// same post returns the first one's id, storing and publishing nothing.
// So a kept notice written by one resend whose drop from {posts}:unsent
// failed, or written by two resends at once (an operator's and a
// node's), reaches its author once, even after the author has cleared
// it: the set outlives every kept notice it could meet (both live the
// notice's lifetime, the set from a later start).
var addNoticeScript = newScript("notice_add", `
if redis.call('HEXISTS', KEYS[1], 'pwd') == 0 then return -1 end
local ttl = tonumber(ARGV[3])
if ARGV[6] ~= '' then
  local told = redis.call('ZSCORE', KEYS[3], ARGV[6])
  if told then return tonumber(told) end
end
local id = redis.call('HINCRBY', KEYS[1], 'nseq', 1)
local e = '{"id":' .. string.format('%d', id) .. ',' .. ARGV[1]
redis.call('RPUSH', KEYS[2], e)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], id, ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[7]) - 1)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
redis.call(ARGV[5], ARGV[4], 'o' .. e)
return id`)

// AddNotice stores notice n for user and pushes it to the user's live
// sessions; it lives ttl (the offline queue's lifetime; 0: as long as the
// account). It returns the notice's id, or ErrNoUser. A notice of a post
// the user was told of already (within the last MaxToldPosts and ttl) is
// not made again: the first one's id is returned.
func (c *Client) AddNotice(ctx context.Context, user string, n Notice, ttl time.Duration) (int64, error) {
	if err := n.Check(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(n)
	if err != nil {
		return 0, err
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ch := c.UserChannel(user)
	post := ""
	if n.Post > 0 {
		post = strconv.FormatUint(n.Post, 10)
	}
	id, err := addNoticeScript.Exec(ctx, c.rc, []string{c.userKey("u", user), c.userKey("nt", user), c.userKey("ntp", user)},
		[]string{string(b[1:]), strconv.Itoa(MaxNotices), strconv.FormatInt(ttl.Milliseconds(), 10), ch, c.publishCmd(ch),
			post, strconv.Itoa(MaxToldPosts)}).AsInt64()
	if err != nil {
		return 0, c.wrap("store a notice for "+user, err)
	}
	if id < 0 {
		return 0, ErrNoUser
	}
	return id, nil
}

// Check bounds every field, so that a notice stays small (under 1 KiB).
func (n Notice) Check() error {
	switch {
	case n.Kind != NoticePostRemoved:
		return fmt.Errorf("a notice of kind %q", n.Kind)
	case !slices.Contains(RemovalReasons, n.Reason):
		return fmt.Errorf("%q is not a removal reason (%s)", n.Reason, strings.Join(RemovalReasons, ", "))
	case len(n.Note) > MaxNoticeNote:
		return fmt.Errorf("a note to the author holds at most %d bytes, not %d", MaxNoticeNote, len(n.Note))
	case !utf8.ValidString(n.Note) || !utf8.ValidString(n.Title):
		return fmt.Errorf("a notice's note and title must be UTF-8")
	case utf8.RuneCountInString(n.Title) > MaxNoticeTitle:
		return fmt.Errorf("a notice's title holds at most %d characters", MaxNoticeTitle)
	case strings.IndexFunc(n.Note, controlRune) >= 0:
		return fmt.Errorf("a note to the author may not hold control or formatting characters (a new line is fine)")
	}
	return nil
}

// controlRune: a control or formatting character other than a new line,
// or a line or paragraph separator (U+2028, U+2029: a line break to some
// terminals and text views), which a note may not hold and a title has
// made a space.
func controlRune(r rune) bool {
	return r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp))
}

// Notices returns user's notices, oldest first, each the JSON object
// sent to the client.
func (c *Client) Notices(ctx context.Context, user string) ([]string, error) {
	l, err := c.do(ctx, c.rc.B().Lrange().Key(c.userKey("nt", user)).Start(0).Stop(MaxNotices-1).Build()).AsStrSlice()
	if err != nil {
		return nil, c.wrap("read the notices of "+user, err)
	}
	return l, nil
}

// noticesSeenScript drops the notices whose id is at most ARGV[1] from
// KEYS nt:{id}; returns how many are left.
var noticesSeenScript = newScript("notices_seen", `
local upto = tonumber(ARGV[1])
while true do
  local h = redis.call('LINDEX', KEYS[1], 0)
  if not h then break end
  local id = tonumber(string.match(h, '^{"id":(%d+),'))
  if id ~= nil and id > upto then break end
  redis.call('LPOP', KEYS[1])
end
return redis.call('LLEN', KEYS[1])`)

// NoticesSeen drops user's notices up to id upto; it returns how many
// are left.
func (c *Client) NoticesSeen(ctx context.Context, user string, upto uint64) (int, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := noticesSeenScript.Exec(ctx, c.rc, []string{c.userKey("nt", user)}, []string{strconv.FormatUint(upto, 10)}).AsInt64()
	if err != nil {
		return 0, c.wrap("clear the notices of "+user, err)
	}
	return int(n), nil
}

// PostTitle is the title a stored post's app body carries ("title" of the
// body's JSON), cut to MaxNoticeTitle characters; "" when it has none.
func PostTitle(data string) string {
	var p struct {
		Body string `json:"body"`
	}
	var b struct {
		Title string `json:"title"`
	}
	if json.Unmarshal([]byte(data), &p) != nil || json.Unmarshal([]byte(p.Body), &b) != nil {
		return ""
	}
	t := strings.Map(func(r rune) rune {
		if r == '\n' || controlRune(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(b.Title, ""))
	if utf8.RuneCountInString(t) > MaxNoticeTitle {
		t = string([]rune(t)[:MaxNoticeTitle-1]) + "…"
	}
	return t
}

// Removal is why an operator removes a post, for its author (a notice);
// Reason "" tells the author nothing.
type Removal struct {
	Reason string
	Note   string
	At     int64         // Unix ms
	TTL    time.Duration // the notice's lifetime: the offline queue's
	// RetryFor bounds how long a failing notice write is retried after
	// the removal (0: DefaultNoticeRetry), within ctx's deadline.
	RetryFor time.Duration
}

// Removed is what RemoveWithNotice (or ResendNotice) did.
type Removed struct {
	Author    string
	Reporters int   // distinct reporters the post had
	Notice    int64 // the notice's id; 0: none made
	// Reason is the notice's (ResendNotice: the one kept).
	Reason string
	// Kept: the notice could not be written and is kept among the unsent
	// ones, for ResendNotice.
	Kept bool
	// DeletedByAuthor: the post was gone already, deleted by its author
	// while queued; what was removed is its snapshot and its reports
	// (reports.go, "Evidence kept"), and no client was told again.
	DeletedByAuthor bool
}

// Unsent notices. A removal's notice is written to its author's keys
// ({author}), the post's removal to the posts' ({posts}): two slots, so
// no one script can do both on a Redis Cluster. Instead the notice is
// first kept in the posts' slot (the hash {posts}:unsent, post id ->
// author, lifetime and notice), then the post removed, then the notice
// written (retried for DefaultNoticeRetry) and only then dropped from
// the hash. A notice still unwritten stays there, and ResendNotice (the
// same removal again) writes it: nothing is lost to a Redis that failed
// for longer than the retries, and nothing is told of a removal that did
// not happen (a post still there is never told of; post ids are never
// reused). The hash holds MaxUnsentNotices at most: when full, the kept
// notices past their lifetime (that of the notice itself: the author's
// offline queue's) are dropped, then, still full, a removal goes on
// without keeping its notice (the old behaviour), with a warning. So an
// entry whose author deleted the account, or that nobody resent, lasts
// no longer than the notice would have.
const (
	MaxUnsentNotices   = 1000
	DefaultNoticeRetry = 10 * time.Second
)

// unsent is one kept notice. Exp leads, so that the script that makes
// room reads it without a JSON parser.
type unsent struct {
	Exp    int64  `json:"exp"` // Unix ms the notice's lifetime ends; 0: never
	Author string `json:"author"`
	TTL    int64  `json:"ttl"` // ms
	Notice Notice `json:"notice"`
}

// keepUnsentScript: KEYS {posts}:unsent, {posts}:unsent:next; ARGV the
// post id, the entry, the bound, now (Unix ms). Returns 1 when kept, 0
// when the hash is full of notices still living.
var keepUnsentScript = newScript("notice_keep", `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  local all, now = redis.call('HGETALL', KEYS[1]), tonumber(ARGV[4])
  for i = 1, #all, 2 do
    local exp = tonumber(string.match(all[i+1], '^{"exp":(%d+),'))
    if exp == nil or (exp > 0 and exp <= now) then
      redis.call('HDEL', KEYS[1], all[i])
      redis.call('HDEL', KEYS[2], all[i])
    end
  end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// retryFor runs fn until it succeeds, waiting 50 ms, then twice as long
// each time up to 1 s, for at most budget, and never past 1 s before
// ctx's deadline (left for what the caller does after).
func retryFor(ctx context.Context, budget time.Duration, fn func(context.Context) error) error {
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)-time.Second)
	}
	end := time.Now().Add(budget)
	bo := Backoff{First: 50 * time.Millisecond, Max: time.Second}
	err := fn(ctx)
	for err != nil && time.Now().Before(end) && bo.Wait(ctx.Done()) {
		err = fn(ctx)
	}
	return err
}

// RemoveWithNotice removes post id as RemovePost does and, when r has a
// reason, tells its author why with a notice (AddNotice), made after the
// removal so that no notice tells of a removal that failed. The notice
// is kept first (see "Unsent notices"); its write is retried for
// r.RetryFor, and an error after the post is gone says so, with
// Removed.Kept when ResendNotice can still send it. ErrPostNotFound when
// there is no such post.
func (c *Client) RemoveWithNotice(ctx context.Context, id uint64, r Removal) (Removed, error) {
	if r.Reason == "" {
		author, reporters, gone, err := c.removePost(ctx, id)
		return Removed{Author: author, Reporters: reporters, DeletedByAuthor: gone}, err
	}
	sid := strconv.FormatUint(id, 10)
	n := Notice{Kind: NoticePostRemoved, Post: id, Reason: r.Reason, Note: r.Note, At: r.At}
	if err := n.Check(); err != nil {
		return Removed{}, err
	}
	data, err := c.do(ctx, c.rc.B().Hget().Key(c.postsKey("data")).Field(sid).Build()).ToString()
	var author string
	if rueidis.IsRedisNil(err) {
		// Deleted by its author while queued: the snapshot tells who and
		// what (its removal below is RemoveEvidence's).
		var found bool
		if author, data, found, err = c.Evidence(ctx, id); err != nil {
			return Removed{}, err
		} else if !found {
			return Removed{}, ErrPostNotFound
		}
	} else if err != nil {
		return Removed{}, c.wrap("read post "+sid, err)
	} else if author, err = c.PostOwner(ctx, id); err != nil {
		return Removed{}, err
	}
	n.Title = PostTitle(data)
	u := unsent{Author: author, TTL: r.TTL.Milliseconds(), Notice: n}
	if u.TTL > 0 {
		u.Exp = r.At + u.TTL
	}
	b, err := json.Marshal(u)
	if err != nil {
		return Removed{}, err
	}
	bctx, cancel := c.bound(ctx)
	kept, err := keepUnsentScript.Exec(bctx, c.rc, []string{c.postsKey("unsent"), c.postsKey("unsent:next")},
		[]string{sid, string(b), strconv.Itoa(MaxUnsentNotices), strconv.FormatInt(r.At, 10)}).AsInt64()
	cancel()
	if err != nil {
		// Nothing is done yet: better refused than told of never.
		return Removed{}, c.wrap("keep the notice of post "+sid, err)
	}
	if kept == 0 {
		c.log.Warn("unsent notices full: a removal's notice is not kept to resend", zap.Uint64("post", id), zap.Int("max", MaxUnsentNotices))
	}
	removedBy, reporters, gone, err := c.removePost(ctx, id)
	if err != nil {
		if kept == 1 {
			c.dropUnsent(ctx, sid)
		}
		return Removed{Author: removedBy}, err
	}
	out, err := c.sendUnsent(ctx, sid, u, kept == 1, cmp.Or(r.RetryFor, DefaultNoticeRetry))
	out.Reporters, out.DeletedByAuthor = reporters, gone
	if err != nil {
		return out, fmt.Errorf("post %d is removed, but its author %s could not be told why: %w", id, author, err)
	}
	return out, nil
}

// sendUnsent writes u's notice, retried for budget, then drops it from
// the unsent ones (when kept there). An account gone is nobody to tell.
func (c *Client) sendUnsent(ctx context.Context, sid string, u unsent, kept bool, budget time.Duration) (Removed, error) {
	out := Removed{Author: u.Author, Reason: u.Notice.Reason}
	err := retryFor(ctx, budget, func(ctx context.Context) error {
		var err error
		out.Notice, err = c.AddNotice(ctx, u.Author, u.Notice, time.Duration(u.TTL)*time.Millisecond)
		if err == ErrNoUser {
			return nil
		}
		return err
	})
	if err != nil {
		out.Kept = kept
		return out, err
	}
	if kept {
		c.dropUnsent(ctx, sid)
	}
	return out, nil
}

// dropUnsentScript: KEYS {posts}:unsent, {posts}:unsent:next; ARGV the
// post id.
var dropUnsentScript = newScript("notice_drop", `
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])`)

// dropUnsent forgets post sid's kept notice and its resend's pace
// (retried briefly; left, a later ResendNotice finds its author told
// already: addNoticeScript).
func (c *Client) dropUnsent(ctx context.Context, sid string) {
	err := retry(ctx, func(ctx context.Context) error {
		ctx, cancel := c.bound(ctx)
		defer cancel()
		return dropUnsentScript.Exec(ctx, c.rc, []string{c.postsKey("unsent"), c.postsKey("unsent:next")}, []string{sid}).Error()
	})
	if err != nil {
		c.log.Warn("an unsent notice not dropped after it was sent", zap.String("post", sid), zap.Error(err))
	}
}

// ResendNotice writes the notice kept for post id, removed earlier, whose
// write failed (RemoveWithNotice's Kept): found false when none is kept.
// A notice whose lifetime has passed since the removal (at now, Unix
// ms) is dropped unsent; a post that is still there is never told of.
func (c *Client) ResendNotice(ctx context.Context, id uint64, now int64, retryFor time.Duration) (Removed, bool, error) {
	sid := strconv.FormatUint(id, 10)
	s, err := c.do(ctx, c.rc.B().Hget().Key(c.postsKey("unsent")).Field(sid).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return Removed{}, false, nil
	}
	if err != nil {
		return Removed{}, false, c.wrap("read the unsent notice of post "+sid, err)
	}
	var u unsent
	if json.Unmarshal([]byte(s), &u) != nil || u.Author == "" || (u.Exp > 0 && now >= u.Exp) {
		c.dropUnsent(ctx, sid)
		return Removed{}, false, nil
	}
	if _, err := c.PostOwner(ctx, id); err == nil {
		// Kept by a removal that failed: the post is there, nothing to tell.
		c.dropUnsent(ctx, sid)
		return Removed{}, false, nil
	} else if !errors.Is(err, ErrPostNotFound) {
		return Removed{}, false, err
	}
	out, err := c.sendUnsent(ctx, sid, u, true, cmp.Or(retryFor, DefaultNoticeRetry))
	if err != nil {
		return out, true, fmt.Errorf("post %d: its author %s could not be told why: %w", id, u.Author, err)
	}
	return out, true, nil
}

// UnsentNotices is how many removal notices are kept unsent, for tests
// and the operators.
func (c *Client) UnsentNotices(ctx context.Context) (int, error) {
	n, err := c.do(ctx, c.rc.B().Hlen().Key(c.postsKey("unsent")).Build()).AsInt64()
	return int(n), c.wrap("count the unsent notices", err)
}

// KeptNotice is one notice kept unsent, as the nodes' automatic resend
// sees it (moderation.Resender).
type KeptNotice struct {
	Post   uint64
	Author string
	At     int64 // Unix ms of the removal
	Exp    int64 // Unix ms its lifetime ends; 0: never
}

// KeptNotices lists the notices kept unsent, at most MaxUnsentNotices
// (the hash's bound; one filled past it by hand is read that far), read
// in HSCAN batches. An entry that does not parse is listed with Post
// alone (ResendNotice drops it).
func (c *Client) KeptNotices(ctx context.Context) ([]KeptNotice, error) {
	var out []KeptNotice
	seen := map[uint64]bool{}
	for cursor := uint64(0); ; {
		cctx, cancel := c.bound(ctx)
		e, err := c.rc.Do(cctx, c.rc.B().Hscan().Key(c.postsKey("unsent")).Cursor(cursor).Count(200).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return out, c.wrap("list the unsent notices", err)
		}
		for i := 0; i+1 < len(e.Elements) && len(out) < MaxUnsentNotices; i += 2 {
			id, err := strconv.ParseUint(e.Elements[i], 10, 64)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			var u unsent
			json.Unmarshal([]byte(e.Elements[i+1]), &u)
			out = append(out, KeptNotice{Post: id, Author: u.Author, At: u.Notice.At, Exp: u.Exp})
		}
		if e.Cursor == 0 || len(out) >= MaxUnsentNotices {
			return out, nil
		}
		cursor = e.Cursor
	}
}

// The automatic resend's pace (moderation.Resender) is kept beside the
// notices, in {posts}:unsent:next (post id -> Unix ms before which no
// node tries it again), so that the nodes together try each notice at
// that pace and never two at once. A lease would not do: the embedded
// server expires no key by the clock. A field goes with its notice
// (dropUnsentScript, keepUnsentScript's making room), and the claim
// empties the hash should it ever hold more fields than twice
// MaxUnsentNotices (fields left by drops that failed half way): the
// paces start over, nothing else is lost.

// claimUnsentScript: KEYS {posts}:unsent, {posts}:unsent:next; ARGV the
// post id, now (Unix ms), the wait (ms), the bound. Returns 1 when the
// caller is to try the notice now (and no node is until now + wait), 0
// when another has it until later, -1 when no notice is kept for it.
var claimUnsentScript = newScript("notice_claim", `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return -1
end
if redis.call('HLEN', KEYS[2]) > tonumber(ARGV[4]) then redis.call('DEL', KEYS[2]) end
local now = tonumber(ARGV[2])
local next = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if next ~= nil and next > now then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', now + tonumber(ARGV[3])))
return 1`)

// ClaimKeptNotice reports whether the caller is to try post id's kept
// notice now (at now, Unix ms); if so no caller is given it again before
// now + wait. found false: none is kept.
func (c *Client) ClaimKeptNotice(ctx context.Context, id uint64, now int64, wait time.Duration) (claimed, found bool, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := claimUnsentScript.Exec(ctx, c.rc, []string{c.postsKey("unsent"), c.postsKey("unsent:next")},
		[]string{strconv.FormatUint(id, 10), strconv.FormatInt(now, 10), strconv.FormatInt(wait.Milliseconds(), 10),
			strconv.Itoa(2 * MaxUnsentNotices)}).AsInt64()
	if err != nil {
		return false, false, c.wrap("claim the unsent notice of post "+strconv.FormatUint(id, 10), err)
	}
	return r == 1, r >= 0, nil
}
