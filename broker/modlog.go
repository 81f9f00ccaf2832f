package broker

import (
	"context"
	"strconv"
)

// The moderation log (docs/operations.md "Who did what: the moderation
// log"): one JSON line per operator's action, newest first, in the list
// {modlog}:log. The moderation package writes and reads the lines; this
// file only keeps the list bounded: each append is one script, LPUSH and
// LTRIM together, so the list never holds more than MaxModLog entries
// even for a moment, and a crash between the two cannot leave it over.
// It is a record for the operators, never read by anything that decides.

// MaxModLog is the most entries the moderation log keeps; the oldest go
// first. An entry is at most a few KB (a ban note is at most MaxBanNote
// bytes), so the list stays within a few tens of MB of Redis at worst.
const MaxModLog = 10_000

func (c *Client) modLogKey() string { return c.prefix + "{modlog}:log" }

// modLogAddScript: KEYS {modlog}:log; ARGV the line, the bound.
var modLogAddScript = newScript("modlog_add", `
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1`)

// AppendModLog adds line, newest first, dropping the oldest past
// MaxModLog.
func (c *Client) AppendModLog(ctx context.Context, line []byte) error {
	bctx, cancel := c.bound(ctx)
	defer cancel()
	err := modLogAddScript.Exec(bctx, c.rc, []string{c.modLogKey()},
		[]string{string(line), strconv.Itoa(MaxModLog)}).Error()
	return c.wrap("append to the moderation log", err)
}

// ModLog reads limit lines of the moderation log from offset, newest
// first, and how many it holds.
func (c *Client) ModLog(ctx context.Context, offset, limit int) ([]string, int, error) {
	if limit < 1 {
		return nil, 0, nil
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	rs := c.rc.DoMulti(bctx,
		c.rc.B().Lrange().Key(c.modLogKey()).Start(int64(offset)).Stop(int64(offset+limit-1)).Build(),
		c.rc.B().Llen().Key(c.modLogKey()).Build())
	lines, err := rs[0].AsStrSlice()
	if err != nil {
		return nil, 0, c.wrap("read the moderation log", err)
	}
	n, err := rs[1].AsInt64()
	if err != nil {
		return nil, 0, c.wrap("read the moderation log's length", err)
	}
	return lines, int(n), nil
}
