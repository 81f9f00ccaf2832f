package broker

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

// An author's posts in Redis (docs/protocol.md "My listings beyond a
// node's bound"): {posts}:mine:<user>, a sorted set of the author's
// stored post ids scored by id, in the posts' slot, so that the store,
// delete and expiry scripts keep it in the same step as the post (no
// round trip more, no write in another slot). A node whose index dropped
// its oldest posts (--max-posts lower than the publishing node's) reads
// an author's listings from it, a page at a time. The set goes with the
// author's last post (an empty sorted set is no key), so it holds no
// more than the posts Redis holds (--max-posts).
//
// Posts stored before the set existed, or by a node of an older version
// during a rolling upgrade, are put in it by BackfillMine, which a node
// runs once, after its index first drops a post (the only node that then
// reads the sets).

func (c *Client) mineKey(user string) string { return c.postsKey("mine:" + user) }

// MaxMinePage bounds a page of MinePosts.
const MaxMinePage = 1000

// minePostsScript: KEYS mine:<user>, data; ARGV the highest id wanted
// ('+inf' or '(<before>'), how many. Returns the ids, newest first, each
// followed by its post's JSON (false: gone meanwhile, or a member an
// older node left).
var minePostsScript = newScript("post_mine", `
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  out[#out+1] = id
  out[#out+1] = redis.call('HGET', KEYS[2], id)
end
return out`)

// MinePosts returns up to n (at most MaxMinePage) of user's stored posts
// with ids below before (0: from the newest), newest first, each the
// stored JSON, as one read. A stale member (its post gone) is skipped.
func (c *Client) MinePosts(ctx context.Context, user string, before uint64, n int) ([]string, error) {
	n = min(max(n, 0), MaxMinePage)
	if n == 0 {
		return nil, nil
	}
	top := "+inf"
	if before > 0 {
		top = "(" + strconv.FormatUint(before, 10)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	vs, err := minePostsScript.Exec(ctx, c.rc, []string{c.mineKey(user), c.postsKey("data")}, []string{top, strconv.Itoa(n)}).ToArray()
	if err != nil {
		return nil, c.wrap("read the posts of "+user, err)
	}
	out := make([]string, 0, len(vs)/2)
	for i := 1; i < len(vs); i += 2 {
		if js, err := vs[i].ToString(); err == nil {
			out = append(out, js)
		} else if !rueidis.IsRedisNil(err) {
			return nil, c.wrap("read the posts of "+user, err)
		}
	}
	return out, nil
}

// backfillMineScript: KEYS owner; ARGV the prefix of the posts' keys
// ('<p>{posts}:'), then post ids. Puts each post still stored in its
// author's mine:<user>; returns how many were added. The authors' keys
// are named here (all in the {posts} slot of KEYS[1]).
var backfillMineScript = newScript("post_mine_backfill", `
local n = 0
for i = 2, #ARGV do
  local author = redis.call('HGET', KEYS[1], ARGV[i])
  if author then n = n + redis.call('ZADD', ARGV[1] .. 'mine:' .. author, ARGV[i], ARGV[i]) end
end
return n`)

// BackfillMine puts every stored post in its author's mine:<user> (an
// HSCAN of the owner hash, 500 posts a script): what a node of an older
// version stored is listed from Redis too. Idempotent; a post deleted
// meanwhile is not added (the script checks it is still stored). It
// returns how many posts it added.
func (c *Client) BackfillMine(ctx context.Context) (int, error) {
	added := 0
	for cursor := uint64(0); ; {
		cctx, cancel := c.bound(ctx)
		e, err := c.rc.Do(cctx, c.rc.B().Hscan().Key(c.postsKey("owner")).Cursor(cursor).Count(500).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return added, c.wrap("scan the posts' authors", err)
		}
		args := []string{c.postsKey("")}
		for i := 0; i < len(e.Elements); i += 2 {
			args = append(args, e.Elements[i])
		}
		if len(args) > 1 {
			cctx, cancel := c.bound(ctx)
			n, err := backfillMineScript.Exec(cctx, c.rc, []string{c.postsKey("owner")}, args).AsInt64()
			cancel()
			if err != nil {
				return added, c.wrap("list the posts by author", err)
			}
			added += int(n)
		}
		if e.Cursor == 0 {
			return added, nil
		}
		cursor = e.Cursor
	}
}

// MineIDs returns user's stored post ids from {posts}:mine:<user>, all
// of them, read MaxMinePage at a time (one ZRANGE each): an account
// deletion's list on a node whose index let some go. The set holds no
// more than the posts Redis holds.
func (c *Client) MineIDs(ctx context.Context, user string) ([]uint64, error) {
	var out []uint64
	for start := int64(0); ; start += MaxMinePage {
		vs, err := c.do(ctx, c.rc.B().Zrange().Key(c.mineKey(user)).Min(strconv.FormatInt(start, 10)).
			Max(strconv.FormatInt(start+MaxMinePage-1, 10)).Build()).AsStrSlice()
		if err != nil {
			return out, c.wrap("list the posts of "+user, err)
		}
		for _, v := range vs {
			if id, err := strconv.ParseUint(v, 10, 64); err == nil {
				out = append(out, id)
			}
		}
		if len(vs) < MaxMinePage {
			return out, nil
		}
	}
}

// pruneMineScript: KEYS mine:<user>, data; ARGV post ids. Drops each id
// whose post is no longer stored; returns how many.
var pruneMineScript = newScript("post_mine_prune", `
local n = 0
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then n = n + redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return n`)

// PruneMine drops from user's {posts}:mine:<user> the members whose post
// is gone without the set being told (a node of the version before it
// deleted or expired the post during a rolling upgrade), so that the key
// goes with the account: MaxMinePage ids a script. It returns how many.
func (c *Client) PruneMine(ctx context.Context, user string) (int, error) {
	ids, err := c.MineIDs(ctx, user)
	if err != nil {
		return 0, err
	}
	n := 0
	for len(ids) > 0 {
		k := min(len(ids), MaxMinePage)
		args := make([]string, k)
		for i, id := range ids[:k] {
			args[i] = strconv.FormatUint(id, 10)
		}
		ids = ids[k:]
		cctx, cancel := c.bound(ctx)
		r, err := pruneMineScript.Exec(cctx, c.rc, []string{c.mineKey(user), c.postsKey("data")}, args).AsInt64()
		cancel()
		if err != nil {
			return n, c.wrap("prune the posts of "+user, err)
		}
		n += int(r)
	}
	return n, nil
}
