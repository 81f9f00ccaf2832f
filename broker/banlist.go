package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// The list of bans (docs/operations.md "Listing bans"). A ban itself is
// two fields of the user's hash u:{id} (ban.go); the operators' list of
// them is a sorted set, {bans}:list, member the user id and score the
// ban's time (Unix ms), so `occase moderate bans` reads it newest first
// in pages. The list needs one key that holds every ban, so it cannot
// carry each user's hash tag: it has its own, {bans}, and on a Redis
// Cluster it lives in another slot than u:{id}. The ban script therefore
// stays what it was (the ban, its announcement and the devices' removal
// in one atomic step: the ban holds even if the list is never written),
// and the list is written after it as a second step that is retried
// (recordAttempts) and, when it still fails, reported to the caller
// (ErrBanNotListed), whose rerun of the ban writes it.
//
// The list is a record, never the truth: a login reads the hash only.
// An entry whose account is gone (expired: a banned user does not log in,
// so its account expires --account-ttl after its last login; deleted
// after an unban) or whose ban was lifted by an unban whose second step
// failed is stale. Stale entries are cleaned (a) when a listing reads
// them, and (b) on every ban, among the oldest pruneOldest entries:
// a banned account expires in about the order of its ban, so the oldest
// entries are the ones whose accounts go first. Removal is conditional on
// the entry's score, so a cleaning never takes the entry of a ban made
// after it read the hash. The list holds at most MaxBanList entries;
// past that the oldest are dropped from the list (their bans still
// hold) and the ban says so.

// MaxBanList is the most entries the list of bans keeps (about 100 bytes
// of Redis each).
const MaxBanList = 100_000

// ErrBanNotListed: the ban (or unban) is made, but the list of bans was
// not updated; running the command again does it.
var ErrBanNotListed = errors.New("the list of bans was not updated")

const (
	recordAttempts = 3
	pruneOldest    = 4
)

// BanEntry is one ban as the list shows it: the time and note come from
// the user's hash (the truth), Listed is the list's score.
type BanEntry struct {
	User   string `json:"user"`
	At     int64  `json:"at"` // Unix ms the ban was made
	Note   string `json:"note,omitempty"`
	Listed int64  `json:"-"`
}

func (c *Client) banListKey() string { return c.prefix + "{bans}:list" }

// banListAddScript adds (or moves) a ban to the list and keeps the list
// under its bound: KEYS {bans}:list; ARGV the user, the time (ms), the
// bound. It returns the ids dropped, oldest first.
var banListAddScript = newScript("ban_list_add", `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over <= 0 then return {} end
local out = {}
for _, v in ipairs(redis.call('ZRANGE', KEYS[1], 0, over - 1)) do
  redis.call('ZREM', KEYS[1], v)
  out[#out + 1] = v
end
return out`)

// banListDropScript removes entries whose score is still the one read:
// KEYS {bans}:list; ARGV pairs of user and score. Returns how many went.
var banListDropScript = newScript("ban_list_drop", `
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n`)

// retry runs fn up to recordAttempts times, waiting a little between.
func retry(ctx context.Context, fn func(context.Context) error) error {
	bo := Backoff{First: 50 * time.Millisecond, Max: 400 * time.Millisecond}
	var err error
	for i := range recordAttempts {
		if i > 0 && !bo.Wait(ctx.Done()) {
			break
		}
		if err = fn(ctx); err == nil {
			return nil
		}
	}
	return err
}

// listBan writes user's ban at to the list, then cleans the oldest
// entries. Entries the bound drops are logged: their bans hold.
func (c *Client) listBan(ctx context.Context, user string, at int64) error {
	var dropped []string
	err := retry(ctx, func(ctx context.Context) error {
		bctx, cancel := c.bound(ctx)
		defer cancel()
		var err error
		dropped, err = banListAddScript.Exec(bctx, c.rc, []string{c.banListKey()},
			[]string{user, strconv.FormatInt(at, 10), strconv.Itoa(c.banListMax())}).AsStrSlice()
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBanNotListed, c.wrap("list the ban of "+user, err))
	}
	if len(dropped) > 0 {
		c.log.Warn("the list of bans is full: its oldest entries were dropped from it (their bans hold)",
			zap.Strings("users", dropped), zap.Int("max", c.banListMax()))
	}
	// Best effort: the next ban or listing cleans what this one did not.
	if old, err := c.banRange(ctx, false, 0, pruneOldest); err == nil {
		c.cleanBans(ctx, old)
	}
	return nil
}

// unlistBan takes user's entry off the list.
func (c *Client) unlistBan(ctx context.Context, user string) error {
	err := retry(ctx, func(ctx context.Context) error {
		return c.do(ctx, c.rc.B().Zrem().Key(c.banListKey()).Member(user).Build()).Error()
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBanNotListed, c.wrap("take the ban of "+user+" off the list", err))
	}
	return nil
}

func (c *Client) banListMax() int {
	if c.banListCap > 0 {
		return c.banListCap
	}
	return MaxBanList
}

// banRange reads entries of the list by rank: newest first when newest,
// else oldest first. Only User and Listed are set.
func (c *Client) banRange(ctx context.Context, newest bool, offset, limit int) ([]BanEntry, error) {
	cmd := c.rc.B().Zrange().Key(c.banListKey()).Min(strconv.Itoa(offset)).Max(strconv.Itoa(offset + limit - 1))
	var zs []rueidis.ZScore
	var err error
	if newest {
		zs, err = c.do(ctx, cmd.Rev().Withscores().Build()).AsZScores()
	} else {
		zs, err = c.do(ctx, cmd.Withscores().Build()).AsZScores()
	}
	if err != nil {
		return nil, c.wrap("read the list of bans", err)
	}
	out := make([]BanEntry, len(zs))
	for i, z := range zs {
		out[i] = BanEntry{User: z.Member, Listed: int64(z.Score)}
	}
	return out, nil
}

// cleanBans reads the hash of each listed user and drops the stale
// entries (account gone, or not banned); it returns the entries that
// stand, with the ban's time and note from the hash.
func (c *Client) cleanBans(ctx context.Context, es []BanEntry) ([]BanEntry, int, error) {
	if len(es) == 0 {
		return nil, 0, nil
	}
	cmds := make(rueidis.Commands, len(es))
	for i, e := range es {
		cmds[i] = c.rc.B().Hmget().Key(c.userKey("u", e.User)).Field("pwd", "ban", "bnote").Build()
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	var kept []BanEntry
	var stale []string
	for i, r := range c.rc.DoMulti(bctx, cmds...) {
		vs, err := r.ToArray()
		if err != nil || len(vs) != 3 {
			return nil, 0, c.wrap("read the bans listed", orShort(err))
		}
		e := es[i]
		at, aerr := vs[1].AsInt64()
		if vs[0].IsNil() || aerr != nil {
			stale = append(stale, e.User, strconv.FormatInt(e.Listed, 10))
			continue
		}
		e.At = at
		e.Note, _ = vs[2].ToString()
		kept = append(kept, e)
	}
	if len(stale) == 0 {
		return kept, 0, nil
	}
	n, err := banListDropScript.Exec(bctx, c.rc, []string{c.banListKey()}, stale).AsInt64()
	if err != nil {
		return kept, 0, c.wrap("clean the list of bans", err)
	}
	return kept, int(n), nil
}

// orShort is err, or the error of a reply shorter than asked for.
func orShort(err error) error {
	if err != nil {
		return err
	}
	return errors.New("a short reply")
}

// Bans lists the bans newest first: limit entries from rank offset. It
// cleans the stale entries it meets (their account is gone, or their
// ban lifted) and returns how many it cleaned; the next page starts at
// offset + len(list). total is the list's length after the cleaning.
func (c *Client) Bans(ctx context.Context, offset, limit int) (list []BanEntry, cleaned, total int, err error) {
	if offset < 0 || limit < 1 {
		return nil, 0, 0, fmt.Errorf("list bans: offset %d, limit %d", offset, limit)
	}
	es, err := c.banRange(ctx, true, offset, limit)
	if err != nil {
		return nil, 0, 0, err
	}
	list, cleaned, err = c.cleanBans(ctx, es)
	if err != nil {
		return nil, 0, 0, err
	}
	n, err := c.do(ctx, c.rc.B().Zcard().Key(c.banListKey()).Build()).AsInt64()
	if err != nil {
		return nil, 0, 0, c.wrap("count the bans", err)
	}
	return list, cleaned, int(n), nil
}

// BanPage is one page of the list of bans, as `occase moderate bans`
// shows it (and an API can serve it as JSON).
type BanPage struct {
	Bans    []BanEntry `json:"bans"`
	Offset  int        `json:"offset"`
	Next    int        `json:"next"`    // the offset of the next page; 0: none
	Total   int        `json:"total"`   // entries on the list
	Cleaned int        `json:"cleaned"` // stale entries this read took off
}

// ListBans is Bans as one page: limit bans from offset, newest first.
func (c *Client) ListBans(ctx context.Context, offset, limit int) (BanPage, error) {
	list, cleaned, total, err := c.Bans(ctx, offset, limit)
	if err != nil {
		return BanPage{}, err
	}
	p := BanPage{Bans: list, Offset: offset, Total: total, Cleaned: cleaned}
	if list == nil {
		p.Bans = []BanEntry{}
	}
	if n := offset + len(list); n < total {
		p.Next = n
	}
	return p, nil
}
