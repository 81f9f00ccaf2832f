package broker

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Group commit of chat messages (issue 13, item 1). What a stored message
// costs Redis is mostly the script call around it and that call's own
// network work, not the commands inside: one store call costs Redis about
// 19 µs unpipelined and a trivial EVAL 8 µs on the machine measured
// (docs/benchmarks.md). So the node stores the messages that arrive while
// one store call is in flight together, in one call of storeManyScript,
// which applies storeScript to each of them in turn: the same checks, ids,
// counts and publications, message by message, in the order given.

// storeManyScript runs the store script (StoreScriptSource, unchanged but
// for where it reads its keys and arguments) on several messages, in the
// order given. What a call costs Redis grows with its arguments (each is
// parsed, then made a Lua string), so those the messages of one call share
// come once, first: ARGV[1..6] are the store script's cap, ttl ms, now
// ms, publish command, sender's share and requeue flag (its ARGV[2], 3, 4,
// 6, 8, 9). Then each message has storeArgs arguments: members, channel,
// sender, push flag (its ARGV[1], 5, 7, 10), and storeKeys keys: u:{to},
// q:{to}, s:{to}, pd:{to}, pc:{to} (its KEYS[1], 2, 4, 5, 6; its KEYS[3],
// the recipient's block set, is named in the script from u:{to}: see
// offsetArgs). The reply has three values per message: what the store script
// returned ({id, prev, push}, or {code, 0, 0} for a refusal), or {-5,
// error, 0} when a command inside failed for that message (a wrong type
// left by a foreign writer, OOM): the error stays that message's own, as
// if it had had a call of its own, and the other messages go on. A
// script's changes are not rolled back, so stopping the whole call at one
// message's error would leave the messages before it stored and published
// but reported failed.
//
// On a cluster every key and the channel of one call must be in one slot:
// the caller groups messages by their recipient's slot.
var storeManyScript = newScript("chat_store_many", storeManySource)

const (
	storeKeys   = 5
	storeArgs   = 4
	storeShared = 6
)

var storeManySource = `local N1, N2, N3, N5 = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local function store(kb, ab)` + offsetArgs(StoreScriptSource) + `
end
local out = {}
for m = 0, #KEYS / ` + strconv.Itoa(storeKeys) + ` - 1 do
  local ok, r, prev, push = pcall(store, m * ` + strconv.Itoa(storeKeys) + `, ` + strconv.Itoa(storeShared) + ` + m * ` + strconv.Itoa(storeArgs) + `)
  if ok then
    out[3 * m + 1], out[3 * m + 2], out[3 * m + 3] = r, prev, push or 0
  else
    if type(r) == 'table' then r = r.err or r.message end
    out[3 * m + 1], out[3 * m + 2], out[3 * m + 3] = -5, tostring(r), 0
  end
end
return out`

// offsetArgs rewrites where the store script reads its keys and arguments
// (see storeManyScript): a message's own as KEYS[kb + i] and ARGV[ab + i],
// the shared ones as ARGV[i]; nothing is copied.
func offsetArgs(src string) string {
	keys := map[string]string{"1": "kb + 1", "2": "kb + 2", "4": "kb + 3", "5": "kb + 4", "6": "kb + 5"}
	args := map[string]string{"1": "ab + 1", "2": "1", "3": "2", "4": "3", "5": "ab + 2", "6": "4",
		"7": "ab + 3", "8": "5", "9": "6", "10": "ab + 4"}
	sub := func(re *regexp.Regexp, name string, to map[string]string) {
		src = re.ReplaceAllStringFunc(src, func(m string) string {
			i := re.FindStringSubmatch(m)[1]
			r, ok := to[i]
			if !ok {
				panic("store script reads " + m + ", which the gathered store does not pass")
			}
			return name + "[" + r + "]"
		})
	}
	// The shared numbers are read once per call (N1...), not per message.
	numbers := map[string]string{"2": "N1", "3": "N2", "4": "N3"}
	tonum := regexp.MustCompile(`tonumber\(ARGV\[(\d+)\]\)`)
	src = tonum.ReplaceAllStringFunc(src, func(m string) string {
		if n, ok := numbers[tonum.FindStringSubmatch(m)[1]]; ok {
			return n
		}
		return m
	})
	src = strings.Replace(src, "tonumber(ARGV[8] or '0') or 0", "N5 or 0", 1)
	// It returns its values as such, not in a table: one table less per
	// message.
	src = regexp.MustCompile(`return \{([^}]*)\}`).ReplaceAllString(src, "return $1")
	// The recipient's block set (its KEYS[3]) is named from its hash's key
	// (u:{to} -> bk:{to}, as userKey names it; the same hash tag, so the
	// same slot) instead of passed: a key more per message costs every
	// message its parsing, and the set is read only for a recipient who
	// blocks someone.
	src = strings.Replace(src, "KEYS[3]", "(string.gsub(KEYS[kb + 1], 'u:(%b{})$', 'bk:%1'))", 1)
	sub(regexp.MustCompile(`KEYS\[(\d+)\]`), "KEYS", keys)
	sub(regexp.MustCompile(`ARGV\[(\d+)\]`), "ARGV", args)
	return src
}

// StoreManySource is the text of the script that stores several messages
// in one call, exported so that scripts/ can run it under redis-benchmark.
var StoreManySource = storeManySource

// StoreReq is one message for StoreMany: what Store takes.
type StoreReq struct {
	To      string
	Members []byte
	Now     int64
	Opt     StoreOptions
	Notify  bool
}

// storeShared is what the messages of one gathered call share: the store
// script's arguments that are the same for every message of a node.
type storeSharedArgs struct {
	cap, ttl, share int64
	requeue         bool
}

func sharedOf(r *StoreReq) storeSharedArgs {
	return storeSharedArgs{r.Opt.Cap, r.Opt.TTLms, r.Opt.SenderShare, r.Opt.Requeue}
}

// appendStore appends one message's keys and arguments for storeManyScript.
func (c *Client) appendStore(keys, args []string, r *StoreReq) ([]string, []string) {
	ch := ""
	if r.Notify {
		ch = c.UserChannel(r.To)
	}
	keys = append(keys, c.userKey("u", r.To), c.userKey("q", r.To), c.userKey("s", r.To),
		c.userKey("pd", r.To), c.userKey("pc", r.To))
	from, push := r.Opt.From, "0"
	if r.Opt.Requeue {
		from = ""
	}
	if r.Opt.Push {
		push = "1"
	}
	return keys, append(args, string(r.Members), ch, from, push)
}

// storeErr turns a store script's reply code into Store's error.
func storeErr(id int64) error {
	switch id {
	case -1:
		return ErrNoUser
	case -2:
		return ErrQueueFull
	case -3:
		return ErrSenderShare
	case -4:
		return ErrInactive
	case -6:
		return ErrBlocked
	}
	return nil
}

// StoreMany stores several messages, each exactly as Store would, in one
// script call (on a cluster, one per hash slot of the recipients,
// pipelined), in the order given: two messages to one recipient get
// increasing ids in that order. sts[i] and errs[i] are what Store would
// have returned for reqs[i]: an id, or ErrNoUser, ErrQueueFull,
// ErrSenderShare, ErrInactive, or an error of its own. A call that fails
// as a whole (Redis unreachable, a timeout) fails every message it carried
// with that error, as a failed Store does: such a message may or may not
// have been stored, and is never acknowledged.
func (c *Client) StoreMany(ctx context.Context, reqs []StoreReq) (sts []Stored, errs []error) {
	if len(reqs) == 1 {
		// The store script itself: the same work, and the call keeps its
		// name in the metrics.
		r := &reqs[0]
		st, err := c.Store(ctx, r.To, r.Members, r.Now, r.Opt, r.Notify)
		return []Stored{st}, []error{err}
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	sts = make([]Stored, len(reqs))
	errs = make([]error, len(reqs))
	// One call per group: the messages that share the arguments passed
	// once (on a node, all of them), and on a cluster a hash slot.
	type groupKey struct {
		shared storeSharedArgs
		slot   uint16
	}
	var groups [][]int
	byKey := map[groupKey]int{}
	cluster := c.cluster.Load()
	for i := range reqs {
		k := groupKey{shared: sharedOf(&reqs[i])}
		if cluster {
			k.slot = keySlot(c.userKey("u", reqs[i].To))
		}
		g, ok := byKey[k]
		if !ok {
			g = len(groups)
			byKey[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	pub := c.publishCmd(c.UserChannel("0"))
	execs := make([]rueidis.LuaExec, len(groups))
	for g, idx := range groups {
		first := &reqs[idx[0]]
		// The call's now is its latest message's: ids and expiries come
		// from the time of the call, as they would for the last message
		// stored alone.
		now := first.Now
		for _, i := range idx {
			now = max(now, reqs[i].Now)
		}
		requeue := "0"
		if first.Opt.Requeue {
			requeue = "1"
		}
		e := rueidis.LuaExec{Keys: make([]string, 0, storeKeys*len(idx)), Args: make([]string, 0, storeShared+storeArgs*len(idx))}
		e.Args = append(e.Args, strconv.FormatInt(first.Opt.Cap, 10), strconv.FormatInt(first.Opt.TTLms, 10),
			strconv.FormatInt(now, 10), pub, strconv.FormatInt(first.Opt.SenderShare, 10), requeue)
		for _, i := range idx {
			e.Keys, e.Args = c.appendStore(e.Keys, e.Args, &reqs[i])
		}
		execs[g] = e
	}
	rs := make([]rueidis.RedisResult, len(execs))
	var acked []int64
	switch {
	case c.waitN > 0:
		// WAIT after each call, on its connection (storeReplicated).
		acked = make([]int64, len(execs))
		for g, e := range execs {
			rs[g], acked[g] = c.evalReplicated(ctx, storeManySHA, storeManySource, e.Keys, e.Args)
		}
	case len(execs) == 1:
		rs[0] = storeManyScript.Exec(ctx, c.rc, execs[0].Keys, execs[0].Args)
	default:
		rs = storeManyScript.ExecMulti(ctx, c.rc, execs...)
	}
	for g, r := range rs {
		idx := groups[g]
		v, err := r.ToArray()
		if err == nil && len(v) != 3*len(idx) {
			err = fmt.Errorf("store script replied %d values, want %d", len(v), 3*len(idx))
		}
		if err == nil && acked != nil && acked[g] < int64(c.waitN) {
			err = fmt.Errorf("%w: the messages reached %d of %d replicas", ErrUnavailable, acked[g], c.waitN)
		}
		for k, i := range idx {
			if err != nil {
				errs[i] = c.wrap("store message for "+reqs[i].To, err)
				continue
			}
			st, e := storedOfValues(v[3*k : 3*k+3])
			if e != nil {
				errs[i] = c.wrap("store message for "+reqs[i].To, e)
				continue
			}
			if e = storeErr(st.ID); e != nil {
				errs[i] = e
				continue
			}
			sts[i] = st
		}
	}
	return sts, errs
}

var storeManySHA = sha1hex(storeManySource)

// storedOfValues reads one message's three values of a StoreMany reply.
func storedOfValues(v []rueidis.RedisMessage) (Stored, error) {
	id, err := v[0].AsInt64()
	if err != nil {
		return Stored{}, err
	}
	if id == -5 {
		msg, _ := v[1].ToString()
		return Stored{}, scriptError(msg)
	}
	st := Stored{ID: id}
	if st.Prev, err = v[1].AsInt64(); err != nil {
		return Stored{}, err
	}
	st.Push, err = v[2].AsInt64()
	return st, err
}

// scriptError is the error a command inside a script call raised, as the
// call's own reply would have been: a Redis that is failing over or at a
// replica (READONLY...) is unavailable, anything else (a wrong type, OOM)
// is that error.
func scriptError(msg string) error {
	// Redis prefixes errors raised inside a script with "ERR " in some
	// versions and not in others.
	m := strings.TrimPrefix(msg, "ERR ")
	for _, p := range []string{"READONLY", "MASTERDOWN", "NOREPLICAS", "UNAVAILABLE", "CLUSTERDOWN", "TRYAGAIN", "LOADING"} {
		if strings.HasPrefix(m, p) {
			return fmt.Errorf("%w: %s", ErrUnavailable, msg)
		}
	}
	return errors.New(msg)
}

// evalReplicated runs a script and then WAIT on the same connection, and
// returns the script's reply and the number of replicas WAIT counted.
func (c *Client) evalReplicated(ctx context.Context, sha, src string, keys, args []string) (res rueidis.RedisResult, acked int64) {
	err := c.rc.Dedicated(func(dc rueidis.DedicatedClient) error {
		wait := dc.B().Wait().Numreplicas(int64(c.waitN)).Timeout(c.tmo.Milliseconds()).Build()
		rs := dc.DoMulti(ctx, dc.B().Evalsha().Sha1(sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		if re, ok := rueidis.IsRedisErr(rs[0].Error()); ok && re.IsNoScript() {
			wait = dc.B().Wait().Numreplicas(int64(c.waitN)).Timeout(c.tmo.Milliseconds()).Build()
			rs = dc.DoMulti(ctx, dc.B().Eval().Script(src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		}
		res = rs[0]
		var err error
		if res.Error() == nil {
			acked, err = rs[1].AsInt64()
		}
		return err
	})
	if err != nil && res.Error() == nil {
		res = rueidis.NewErrorResult(err)
	}
	return res, acked
}
