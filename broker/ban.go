package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// Banning a user (docs/protocol.md "Banned accounts", docs/operations.md
// "Banning a user"). A ban is two fields of the user's hash u:{id}: "ban",
// the time it was made (Unix ms), and "bnote", the operator's note. The
// login script reads "ban" in the HMGET it makes anyway (loginFetchScript),
// so a ban costs a login nothing. The ban script sets the fields and
// announces 'b' on the user's channel in one step: a login whose script ran
// before it is subscribed to that channel already (roles attaches before it
// logs in) and hears the announcement; a login whose script runs after it
// finds the field. Either way no login survives a ban.
//
// The ban lives in the account's hash, so it lasts as long as the account:
// a banned user does not log in, so the account is not renewed, and with an
// account lifetime (--account-ttl) it expires that long after the user's last
// login, ban and all. The id is never given out again (ids come from an
// INCR), so nobody can register it anew.

// ErrBanned: the user is banned; the login changed nothing.
var ErrBanned = errors.New("the user is banned")

// MaxBanNote is the most bytes a ban's note may hold.
const MaxBanNote = 1000

// Ban is a user's ban as stored.
type Ban struct {
	At   int64  // Unix ms the ban was made (0: not banned)
	Note string // the operator's note, "" when none
}

// banScript bans the user of KEYS u:{id} and forgets its push devices
// (KEYS[2], pd:{id}: a banned user gets no notifications, and an unbanned
// one's app registers its device again at its next start): ARGV now (ms),
// the note, the user's channel, the publish command. It returns -1 when there is no such
// account (nothing changed, nothing published), 0 when the user was not
// banned, 1 when it was (its time and note are replaced). Every ban
// announces 'b', so a session that an old node let in (one that does not
// read the field) is closed again.
var banScript = newScript("ban_user", `
if redis.call('HEXISTS', KEYS[1], 'pwd') == 0 then return -1 end
local was = redis.call('HEXISTS', KEYS[1], 'ban')
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'bnote')
  redis.call('HSET', KEYS[1], 'ban', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'ban', ARGV[1], 'bnote', ARGV[2])
end
redis.call('DEL', KEYS[2])
redis.call(ARGV[4], ARGV[3], 'b')
return was`)

// BanUser bans user id at now (Unix ms) with note, and closes every live
// session of the user on every node (payload "b" on the user's channel), in
// one atomic step. It returns whether the user was banned already (its ban
// is replaced), or ErrNoUser when there is no such account. The list of
// bans is written after that step (banlist.go): ErrBanNotListed, with the
// ban made, when it could not be; a rerun writes it. The account,
// its offline queue and its posts are kept; its push devices are not.
func (c *Client) BanUser(ctx context.Context, id string, now int64, note string) (already bool, err error) {
	if len(note) > MaxBanNote {
		return false, fmt.Errorf("a ban note holds at most %d bytes, not %d", MaxBanNote, len(note))
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	ch := c.UserChannel(id)
	r, err := banScript.Exec(bctx, c.rc, []string{c.userKey("u", id), c.userKey("pd", id)},
		[]string{strconv.FormatInt(now, 10), note, ch, c.publishCmd(ch)}).AsInt64()
	if err != nil {
		return false, c.wrap("ban user "+id, err)
	}
	if r < 0 {
		return false, ErrNoUser
	}
	// The list of bans is another slot's key: a second step (banlist.go).
	return r == 1, c.listBan(ctx, id, now)
}

// unbanScript lifts the ban of KEYS u:{id}: -1 when there is no such
// account, 0 when it was not banned, 1 when it was.
var unbanScript = newScript("unban_user", `
if redis.call('HEXISTS', KEYS[1], 'pwd') == 0 then return -1 end
local was = redis.call('HEXISTS', KEYS[1], 'ban')
redis.call('HDEL', KEYS[1], 'ban', 'bnote')
return was`)

// UnbanUser lifts user id's ban: the user may log in again. It returns
// whether there was a ban, or ErrNoUser when there is no such account;
// ErrBanNotListed, with the ban lifted, when its entry could not be taken
// off the list of bans (a listing cleans it, a rerun takes it).
func (c *Client) UnbanUser(ctx context.Context, id string) (was bool, err error) {
	bctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := unbanScript.Exec(bctx, c.rc, []string{c.userKey("u", id)}, nil).AsInt64()
	if err != nil {
		return false, c.wrap("unban user "+id, err)
	}
	if r < 0 {
		return false, ErrNoUser
	}
	// Taken off the list even when there was no ban, so that a rerun
	// after a failed second step finishes it.
	return r == 1, c.unlistBan(ctx, id)
}

// BanOf returns user id's ban (At 0: not banned), or ErrNoUser when there
// is no such account.
func (c *Client) BanOf(ctx context.Context, id string) (Ban, error) {
	vs, err := c.do(ctx, c.rc.B().Hmget().Key(c.userKey("u", id)).Field("pwd", "ban", "bnote").Build()).ToArray()
	if err != nil {
		return Ban{}, c.wrap("read the ban of "+id, err)
	}
	if len(vs) != 3 {
		return Ban{}, fmt.Errorf("read the ban of %s: %d values", id, len(vs))
	}
	if vs[0].IsNil() {
		return Ban{}, ErrNoUser
	}
	var b Ban
	if s, err := vs[1].ToString(); err == nil {
		if b.At, err = strconv.ParseInt(s, 10, 64); err != nil {
			return Ban{}, fmt.Errorf("the ban of %s: not a time: %q", id, s)
		}
	} else if !rueidis.IsRedisNil(err) {
		return Ban{}, c.wrap("read the ban of "+id, err)
	}
	if s, err := vs[2].ToString(); err == nil {
		b.Note = s
	}
	return b, nil
}

// PostsOf returns the ids of user's stored posts, from the owner hash
// ({posts}:owner) read in HSCAN batches, so it never blocks Redis for long
// and needs no node's index (the operator's CLI has none). The hash holds
// one field per stored post, which --max-posts bounds. A post stored or
// deleted meanwhile may be missed or listed.
func (c *Client) PostsOf(ctx context.Context, user string) ([]uint64, error) {
	seen := map[uint64]bool{}
	var ids []uint64
	for cursor := uint64(0); ; {
		cctx, cancel := c.bound(ctx)
		e, err := c.rc.Do(cctx, c.rc.B().Hscan().Key(c.postsKey("owner")).Cursor(cursor).Count(1000).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return nil, c.wrap("scan the posts of "+user, err)
		}
		// Elements alternate field (the post id) and value (its author).
		for i := 0; i+1 < len(e.Elements); i += 2 {
			if e.Elements[i+1] != user {
				continue
			}
			id, err := strconv.ParseUint(e.Elements[i], 10, 64)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			ids = append(ids, id)
		}
		if e.Cursor == 0 {
			return ids, nil
		}
		cursor = e.Cursor
	}
}
