package broker

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// Rebuilding the list of bans (docs/operations.md "Listing bans"): a ban
// made by a version before the list, or whose list write failed and was
// never rerun, is a ban (the hash u:{id} holds it) the list lacks.
// RebuildBanList finds them by SCAN of the user hashes, COUNT
// rebuildBatch keys a step on each master (never KEYS: each step is
// short, Redis serves others between them), reads each batch's ban
// fields in one HMGET pipeline and adds the banned users the list lacks,
// with their ban's time, in one script per batch that keeps the list's
// bound. An entry already listed is left as it is (ZADD NX), so a rerun
// adds nothing. SCAN may return a key more than once: the NX makes that
// harmless, but the counts may then count it twice.

const rebuildBatch = 1000

// BanRebuild counts what RebuildBanList did.
type BanRebuild struct {
	Scanned int `json:"scanned"` // user hashes read
	Banned  int `json:"banned"`  // of them, banned
	Added   int `json:"added"`   // of those, put on the list
	Listed  int `json:"listed"`  // of those, on the list already
	// Dropped: oldest entries the list's bound took off (their bans hold).
	Dropped int `json:"dropped"`
}

// banListFillScript adds bans the list lacks and keeps its bound: KEYS
// {bans}:list; ARGV the bound, then pairs of user and time (ms). It
// returns {added, dropped}.
var banListFillScript = newScript("ban_list_fill", `
local added = 0
for i = 2, #ARGV, 2 do
  added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) else over = 0 end
return {added, over}`)

// globEscape escapes the characters SCAN's MATCH reads as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scanNodes are the servers whose keys a SCAN must visit: each master of
// a Redis Cluster (a replica's keys are its master's), else the one
// connection.
func (c *Client) scanNodes(ctx context.Context) ([]rueidis.Client, error) {
	if !c.cluster.Load() {
		return []rueidis.Client{c.rc}, nil
	}
	nodes := c.rc.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	var out []rueidis.Client
	for _, a := range addrs {
		n := nodes[a]
		bctx, cancel := c.bound(ctx)
		role, err := n.Do(bctx, n.B().Role().Build()).ToArray()
		cancel()
		if err != nil || len(role) == 0 {
			return nil, c.wrap("ask "+a+" its role", orShort(err))
		}
		if r, _ := role[0].ToString(); r == "master" {
			out = append(out, n)
		}
	}
	return out, nil
}

// RebuildBanList puts on the list of bans every banned user it lacks
// (see above). It stops at ctx's end or at an error, with the counts so
// far; a rerun goes on where the list stands.
func (c *Client) RebuildBanList(ctx context.Context) (BanRebuild, error) {
	var res BanRebuild
	nodes, err := c.scanNodes(ctx)
	if err != nil {
		return res, err
	}
	head := c.prefix + "u:{"
	match := globEscape(head) + "*}"
	for _, n := range nodes {
		var cur uint64
		for {
			bctx, cancel := c.bound(ctx)
			e, err := n.Do(bctx, n.B().Scan().Cursor(cur).Match(match).Count(rebuildBatch).Build()).AsScanEntry()
			cancel()
			if err != nil {
				return res, c.wrap("scan the user hashes", err)
			}
			if err := c.fillBans(ctx, head, e.Elements, &res); err != nil {
				return res, err
			}
			if cur = e.Cursor; cur == 0 {
				break
			}
		}
	}
	return res, nil
}

// fillBans reads the ban of each key of one SCAN step and lists those
// the list lacks.
func (c *Client) fillBans(ctx context.Context, head string, keys []string, res *BanRebuild) error {
	var ids []string
	for _, k := range keys {
		id := strings.TrimSuffix(strings.TrimPrefix(k, head), "}")
		if id != "" && len(id)+len(head)+1 == len(k) && !strings.ContainsAny(id, "{}") {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = c.rc.B().Hmget().Key(c.userKey("u", id)).Field("pwd", "ban").Build()
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	args := []string{strconv.Itoa(c.banListMax())}
	for i, r := range c.rc.DoMulti(bctx, cmds...) {
		vs, err := r.ToArray()
		if _, isReply := rueidis.IsRedisErr(err); isReply {
			continue // not a hash: not an account
		}
		if err != nil || len(vs) != 2 {
			return c.wrap("read the bans", orShort(err))
		}
		res.Scanned++
		at, aerr := vs[1].AsInt64()
		if vs[0].IsNil() || aerr != nil {
			continue
		}
		res.Banned++
		args = append(args, ids[i], strconv.FormatInt(at, 10))
	}
	if len(args) == 1 {
		return nil
	}
	r, err := banListFillScript.Exec(bctx, c.rc, []string{c.banListKey()}, args).AsIntSlice()
	if err != nil || len(r) != 2 {
		return c.wrap("list the bans found", orShort(err))
	}
	found := (len(args) - 1) / 2
	res.Added += int(r[0])
	res.Listed += found - int(r[0])
	if r[1] > 0 {
		res.Dropped += int(r[1])
		c.log.Warn("the list of bans is full: its oldest entries were dropped from it (their bans hold)",
			zap.Int64("dropped", r[1]), zap.Int("max", c.banListMax()))
	}
	return nil
}
