package broker

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"

	"github.com/redis/rueidis"
)

// Logins gathered per call (issue 13, item 2). Under a login storm Redis
// timed the login script's EVALSHA at about 17 µs a call where the same
// script costs about 6 µs on an idle Redis: the call, not the commands, is
// most of the price (docs/benchmarks.md, "Logins, session 5"). As for chat
// stores (chatbatch.go), a node's logins that arrive while one login call
// is in flight go together in the next call, one call of loginManyScript
// (one per hash slot on a cluster), which applies the login script to each
// in turn. A login that finds no call in flight makes its own, with the
// login script itself, on its own goroutine: no latency added at low load,
// and the call keeps its name in the metrics.

// maxLoginBatch bounds the logins of one gathered call.
const maxLoginBatch = 64

const (
	loginKeysN   = 6 // u, q, s, pq, bk, nt of the user
	loginArgsN   = 2 // digest, channel
	loginSharedN = 8
)

// loginManyScript runs the login script (loginFetchSource, unchanged but
// for where it reads its keys and arguments) on several logins, in the
// order given. The arguments the logins of one call share come once,
// first: ARGV[1..8] are the login script's now, queue lifetime, account
// lifetime, publish command, quota now, quota n, quota period and batch
// (its ARGV[1], 2, 3, 6, 7, 8, 9, 10; now and quota now are the call's
// latest). Then each login has loginArgsN arguments, the digest and the
// user's channel (its ARGV[4], 5), and loginKeysN keys (its KEYS[1..6]).
// The reply is, per login, the count n of the values the login script
// returned and those n values; or -5 and the error, when a command inside
// failed for that login (a wrong type left by a foreign writer, OOM): that
// error is the login's own, and the others go on (a script's changes are
// not rolled back, so failing the whole call would report failed logins
// that happened, with their kicks).
//
// On a cluster every key and the channel of one call must be in one slot:
// the caller groups logins by their user's slot.
var loginManyScript = newScript("login_many", loginManySource)

var loginManySource = `local N2, N3, N7, N8, N9, N10 = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function login(kb, ab)` + loginOffsetArgs(loginFetchSource) + `
end
local out, n = {}, 0
for m = 0, #KEYS / ` + strconv.Itoa(loginKeysN) + ` - 1 do
  local ok, r = pcall(login, m * ` + strconv.Itoa(loginKeysN) + `, ` + strconv.Itoa(loginSharedN) + ` + m * ` + strconv.Itoa(loginArgsN) + `)
  if ok then
    out[n + 1] = #r
    for i = 1, #r do out[n + 1 + i] = r[i] end
    n = n + 1 + #r
  else
    if type(r) == 'table' then r = r.err or r.message end
    out[n + 1], out[n + 2] = -5, tostring(r)
    n = n + 2
  end
end
return out`

// loginOffsetArgs rewrites where the login script reads its keys and
// arguments (see loginManyScript): a login's own as KEYS[kb + i] and
// ARGV[ab + i], the shared ones as ARGV[i], their numbers parsed once per
// call (N2...).
func loginOffsetArgs(src string) string {
	numbers := map[string]string{"2": "N2", "3": "N3", "7": "N7", "8": "N8", "9": "N9", "10": "N10"}
	tonum := regexp.MustCompile(`tonumber\(ARGV\[(\d+)\]\)`)
	src = tonum.ReplaceAllStringFunc(src, func(m string) string {
		if n, ok := numbers[tonum.FindStringSubmatch(m)[1]]; ok {
			return n
		}
		return m
	})
	keys := map[string]string{}
	for i := 1; i <= loginKeysN; i++ {
		keys[strconv.Itoa(i)] = "kb + " + strconv.Itoa(i)
	}
	args := map[string]string{"1": "1", "2": "2", "3": "3", "4": "ab + 1", "5": "ab + 2", "6": "4",
		"7": "5", "8": "6", "9": "7", "10": "8"}
	return renameArgs(src, keys, args, "login")
}

// LoginManySource is the text of the gathered login script, exported so
// that scripts/ can run it under redis-benchmark.
var LoginManySource = loginManySource

// LoginItem is one login for LoginMany: what LoginFetch takes.
type LoginItem struct {
	ID  string
	Req LoginRequest
}

// LoginResult is what LoginFetch would have returned for one LoginItem.
type LoginResult struct {
	State LoginState
	OK    bool
	Err   error
}

// LoginMany logs in several users, each exactly as LoginFetch would, in
// one script call (on a cluster, one per hash slot of the users,
// pipelined), in the order given. res[i] is what LoginFetch would have
// returned for items[i]. A call that fails as a whole (Redis unreachable,
// a timeout) fails every login it carried with that error, as a failed
// LoginFetch does: such a login may or may not have happened (its
// generation, its kick), and is never acknowledged.
func (c *Client) LoginMany(ctx context.Context, items []LoginItem) []LoginResult {
	res := make([]LoginResult, len(items))
	if len(items) == 1 {
		r := &res[0]
		r.State, r.OK, r.Err = c.loginOne(ctx, items[0].ID, items[0].Req)
		return res
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	type groupKey struct {
		qttl, quotaN, period int64
		batch                int
		pub                  string
		slot                 uint16
	}
	var groups [][]int
	byKey := map[groupKey]int{}
	cluster := c.cluster.Load()
	for i := range items {
		r := &items[i].Req
		k := groupKey{qttl: r.TTLms, quotaN: int64(r.Quota.N), period: r.Quota.PeriodMs, batch: r.Batch,
			pub: c.publishCmd(c.UserChannel(items[i].ID))}
		if cluster {
			k.slot = keySlot(c.userKey("u", items[i].ID))
		}
		g, ok := byKey[k]
		if !ok {
			g = len(groups)
			byKey[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	acct := strconv.FormatInt(c.accountTTL.Milliseconds(), 10)
	execs := make([]rueidis.LuaExec, len(groups))
	for g, idx := range groups {
		first := &items[idx[0]]
		// The call's now (and the quota's) is its latest login's, as for
		// the last login made alone.
		now, qnow := first.Req.Now, first.Req.QuotaNow
		for _, i := range idx {
			now, qnow = max(now, items[i].Req.Now), max(qnow, items[i].Req.QuotaNow)
		}
		r := &first.Req
		e := rueidis.LuaExec{Keys: make([]string, 0, loginKeysN*len(idx)), Args: make([]string, 0, loginSharedN+loginArgsN*len(idx))}
		e.Args = append(e.Args, strconv.FormatInt(now, 10), strconv.FormatInt(r.TTLms, 10), acct,
			c.publishCmd(c.UserChannel(first.ID)), strconv.FormatInt(qnow, 10), strconv.Itoa(r.Quota.N),
			strconv.FormatInt(r.Quota.PeriodMs, 10), strconv.Itoa(r.Batch))
		for _, i := range idx {
			e.Keys = c.loginKeys(e.Keys, items[i].ID)
			e.Args = append(e.Args, items[i].Req.Digest, c.UserChannel(items[i].ID))
		}
		execs[g] = e
	}
	var rs []rueidis.RedisResult
	if len(execs) == 1 {
		rs = []rueidis.RedisResult{loginManyScript.Exec(ctx, c.rc, execs[0].Keys, execs[0].Args)}
	} else {
		rs = loginManyScript.ExecMulti(ctx, c.rc, execs...)
	}
	for g, r := range rs {
		idx := groups[g]
		v, err := r.ToArray()
		p := 0
		for _, i := range idx {
			id := items[i].ID
			if err != nil {
				res[i].Err = c.wrap("login "+id, err)
				continue
			}
			var n int64
			if p < len(v) {
				n, err = v[p].AsInt64()
			}
			switch {
			case err != nil:
				err = fmt.Errorf("login script: %w", err)
				res[i].Err = c.wrap("login "+id, err)
			case n == -5 && p+1 < len(v):
				msg, _ := v[p+1].ToString()
				res[i].Err = c.wrap("login "+id, scriptError(msg))
				p += 2
			case n < 1 || p+1+int(n) > len(v):
				// The reply does not hold this login: a bug, not Redis'
				// word on the login. This and the rest fail.
				err = fmt.Errorf("login script replied %d values for %d logins", len(v), len(idx))
				res[i].Err = err
			default:
				res[i].State, res[i].OK, res[i].Err = c.loginOfValues(id, v[p+1:p+1+int(n)])
				p += 1 + int(n)
			}
		}
	}
	return res
}

// loginCall is one login waiting for a gathered call.
type loginCall struct {
	item LoginItem
	res  LoginResult
	done chan struct{} // buffered 1
}

var loginCalls = sync.Pool{New: func() any { return &loginCall{done: make(chan struct{}, 1)} }}

// loginGather is a node's gatherer of logins: at most one gathered call in
// flight, and the logins that came meanwhile.
type loginGather struct {
	mu      sync.Mutex
	running bool // a call is in flight (a lone login's or the loop's)
	pending []*loginCall
}

// gatherLogin is LoginFetch: a login that finds no call in flight makes
// its own (loginOne, under its caller's context, as before); one that
// finds a call in flight waits for the next, gathered with the others that
// came meanwhile (LoginMany). A caller whose context ends while it waits
// returns its error, as a call cut short does: the login may still happen.
func (c *Client) gatherLogin(ctx context.Context, id string, r LoginRequest) (LoginState, bool, error) {
	lg := &c.logins
	lg.mu.Lock()
	if !lg.running {
		lg.running = true
		lg.mu.Unlock()
		st, ok, err := c.loginOne(ctx, id, r)
		c.loginNext()
		return st, ok, err
	}
	call := loginCalls.Get().(*loginCall)
	call.item = LoginItem{ID: id, Req: r}
	lg.pending = append(lg.pending, call)
	lg.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		// The loop still answers the call (done is buffered); it is not
		// given back to the pool.
		return LoginState{}, false, c.wrap("login "+id, ctx.Err())
	}
	res := call.res
	*call = loginCall{done: call.done}
	loginCalls.Put(call)
	return res.State, res.OK, res.Err
}

// loginNext ends a call: the loop starts for the logins that came
// meanwhile, or the gatherer is idle.
func (c *Client) loginNext() {
	lg := &c.logins
	lg.mu.Lock()
	if len(lg.pending) == 0 {
		lg.running = false
		lg.mu.Unlock()
		return
	}
	lg.mu.Unlock()
	go c.loginLoop()
}

// loginLoop runs while logins wait: it takes those waiting (at most
// maxLoginBatch), makes their call, answers each, and goes again for those
// that came meanwhile. The call is bounded by the broker's timeout, not by
// any one caller's context.
func (c *Client) loginLoop() {
	lg := &c.logins
	var batch []*loginCall
	var items []LoginItem
	for {
		lg.mu.Lock()
		n := min(len(lg.pending), maxLoginBatch)
		if n == 0 {
			lg.running = false
			lg.mu.Unlock()
			return
		}
		batch = append(batch[:0], lg.pending[:n]...)
		rest := copy(lg.pending, lg.pending[n:])
		clear(lg.pending[rest:])
		lg.pending = lg.pending[:rest]
		lg.mu.Unlock()

		items = items[:0]
		for _, call := range batch {
			items = append(items, call.item)
		}
		res := c.LoginMany(context.Background(), items)
		for i, call := range batch {
			call.res = res[i]
			call.done <- struct{}{}
		}
		clear(batch)
		clear(items)
	}
}
