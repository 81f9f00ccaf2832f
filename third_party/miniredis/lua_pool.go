package miniredis

// Patched in occase's copy (see README.md in this directory): upstream
// builds a new gopher-lua state, standard library included, for every
// EVAL/EVALSHA, which costs about 100 us and 220 KB per call. This file
// keeps prepared states between calls instead, and makes sure one call
// cannot see what another left behind.

import (
	"bufio"
	"bytes"
	"reflect"
	"sync"

	lua "github.com/yuin/gopher-lua"

	luajson "github.com/alicebob/miniredis/v2/gopher-json"
	"github.com/alicebob/miniredis/v2/server"
)

// luaPoolSize is how many idle states are kept. Scripts run under the
// server's lock, one at a time, so one is nearly always enough.
const luaPoolSize = 4

// luaBufKeep is the largest inner-command buffer a pooled state keeps; a
// script that read a larger reply gives its buffer back to the GC.
const luaBufKeep = 64 << 10

// luaPool holds idle prepared states.
type luaPool struct {
	mu   sync.Mutex
	free []*luaState
	made int // states built so far (tests)
}

func (p *luaPool) get() *luaState {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		st := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return st
	}
	p.made++
	p.mu.Unlock()
	return newLuaState()
}

// put keeps st for a later call if the call that used it ended without a
// Lua error and left every table it could reach as it found it; otherwise
// st is dropped.
func (p *luaPool) put(st *luaState, ok bool) {
	if !ok || !st.clean() {
		st.l.Close()
		return
	}
	p.mu.Lock()
	if len(p.free) < luaPoolSize {
		p.free = append(p.free, st)
		st = nil
	}
	p.mu.Unlock()
	if st != nil {
		st.l.Close()
	}
}

// luaCall is the script run a pooled state serves now: what the redis
// module's functions (mkLua) act for.
type luaCall struct {
	srv      *server.Server
	c        *server.Peer
	sha      string
	readOnly bool
	// the nested connections' contexts of redis.call and redis.pcall,
	// made on first use in a run
	callCtx, pcallCtx *connCtx
	// reused by every inner command
	buf bytes.Buffer
	wr  *bufio.Writer
	rd  *bufio.Reader
}

func (call *luaCall) start(srv *server.Server, c *server.Peer, sha string, readOnly bool) {
	call.srv, call.c, call.sha, call.readOnly = srv, c, sha, readOnly
	call.callCtx, call.pcallCtx = nil, nil
}

// end drops the references to the connection, so an idle state holds none.
func (call *luaCall) end() {
	call.srv, call.c = nil, nil
	call.callCtx, call.pcallCtx = nil, nil
	if call.buf.Cap() > luaBufKeep {
		call.buf = bytes.Buffer{}
	}
}

// ctx is the context of the nested connection that redis.call (failFast)
// or redis.pcall runs commands on, one per run as upstream has it.
func (call *luaCall) ctx(failFast bool) *connCtx {
	p := &call.pcallCtx
	if failFast {
		p = &call.callCtx
	}
	if *p == nil {
		cc := getCtx(call.c)
		*p = &connCtx{
			authenticated: cc.authenticated,
			nested:        true,
			nestedSHA:     call.sha,
			selectedDB:    cc.selectedDB,
		}
	}
	return *p
}

// buffers returns the writer an inner command writes its reply to and the
// reader that parses it, both emptied.
func (call *luaCall) buffers() (*bufio.Writer, *bufio.Reader) {
	call.buf.Reset()
	if call.wr == nil {
		call.wr = bufio.NewWriter(&call.buf)
		call.rd = bufio.NewReader(&call.buf)
	}
	call.wr.Reset(&call.buf)
	call.rd.Reset(&call.buf)
	return call.wr, call.rd
}

// luaState is a prepared interpreter: the libraries upstream opens per
// call, opened once, and a snapshot of every table a script can reach
// from its globals, to check after each call.
type luaState struct {
	l       *lua.LState
	call    *luaCall
	globals *lua.LTable
	tables  []tableSnap
	funcs   []funcSnap
	samples []lua.LValue // luaTypeSamples
	mts     []lua.LValue // their metatables
}

type tableSnap struct {
	t    *lua.LTable
	mt   lua.LValue
	size [4]int // see tableSize
	strs []strEntry
	rest []anyEntry // entries under keys that are not strings
}

type strEntry struct {
	k string
	v lua.LValue
}

type anyEntry struct {
	k, v lua.LValue
}

// LTable's unexported parts whose lengths only a write changes: the array
// part, the two hash maps, and the key list (it only grows, even when an
// entry is deleted). Reading lengths through reflect costs no allocation,
// unlike walking a table with ForEach. Should gopher-lua's LTable not have
// them (another version), every check walks the tables instead.
var tableSizeFields = func() []int {
	t := reflect.TypeOf(lua.LTable{})
	var idx []int
	for _, name := range []string{"array", "dict", "strdict", "keys"} {
		f, ok := t.FieldByName(name)
		if !ok || (f.Type.Kind() != reflect.Slice && f.Type.Kind() != reflect.Map) {
			return nil
		}
		idx = append(idx, f.Index[0])
	}
	return idx
}()

func tableSize(t *lua.LTable) (n [4]int) {
	v := reflect.ValueOf(t).Elem()
	for i, f := range tableSizeFields {
		n[i] = v.Field(f).Len()
	}
	return n
}

type funcSnap struct {
	f   *lua.LFunction
	env *lua.LTable
}

var (
	luaKeys = lua.LString("KEYS")
	luaArgv = lua.LString("ARGV")
)

// luaTypeSamples has one value of each type whose metatable is per state
// rather than per value (debug.setmetatable can change it).
func luaTypeSamples(l *lua.LState) []lua.LValue {
	return []lua.LValue{lua.LNil, lua.LFalse, lua.LNumber(0), lua.LString(""), l.NewFunction(func(*lua.LState) int { return 0 }), l, lua.LChannel(nil)}
}

func newLuaState() *luaState {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})

	// Taken from the go-lua manual
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.CoroutineLibName, lua.OpenCoroutine},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.DebugLibName, lua.OpenDebug},
	} {
		if err := l.CallByParam(lua.P{
			Fn:      l.NewFunction(pair.f),
			NRet:    0,
			Protect: true,
		}, lua.LString(pair.n)); err != nil {
			panic(err)
		}
	}

	luajson.Preload(l)
	requireGlobal(l, "cjson", "json")

	st := &luaState{l: l, call: &luaCall{}, globals: l.G.Global}
	// KEYS and ARGV exist from the start, replaced by every call.
	st.globals.RawSetString("KEYS", l.NewTable())
	st.globals.RawSetString("ARGV", l.NewTable())

	redisFuncs, redisConstants := mkLua(st.call)
	redisMod := l.CreateTable(0, len(redisFuncs)+len(redisConstants))
	for fname, fn := range redisFuncs {
		redisMod.RawSetString(fname, l.NewFunction(fn))
	}
	for k, v := range redisConstants {
		redisMod.RawSetString(k, v)
	}
	for _, name := range []string{"redis", "server"} {
		l.SetGlobal(name, redisMod)
	}

	l.RegisterModule("os", mkLuaOS())
	l.Pop(l.GetTop())

	_ = doScript(l, protectGlobals)
	l.SetTop(0)

	st.snapshot()
	return st
}

// snapshot records every table reachable from the globals (through
// values, keys and metatables), the environment of every function found
// there, and the metatables of the non-table types.
func (st *luaState) snapshot() {
	seen := map[*lua.LTable]bool{}
	seenF := map[*lua.LFunction]bool{}
	var visit func(v lua.LValue)
	visit = func(v lua.LValue) {
		switch x := v.(type) {
		case *lua.LTable:
			if x == nil || seen[x] {
				return
			}
			seen[x] = true
			snap := tableSnap{t: x, mt: x.Metatable, size: tableSize(x)}
			var next []lua.LValue
			x.ForEach(func(k, v lua.LValue) {
				if x == st.globals && (k == luaKeys || k == luaArgv) {
					return
				}
				if ks, ok := k.(lua.LString); ok {
					snap.strs = append(snap.strs, strEntry{string(ks), v})
				} else {
					snap.rest = append(snap.rest, anyEntry{k, v})
				}
				next = append(next, k, v)
			})
			st.tables = append(st.tables, snap)
			next = append(next, x.Metatable)
			for _, n := range next {
				visit(n)
			}
		case *lua.LFunction:
			if x == nil || seenF[x] {
				return
			}
			seenF[x] = true
			st.funcs = append(st.funcs, funcSnap{f: x, env: x.Env})
			visit(x.Env)
		}
	}
	visit(st.globals)
	st.samples = luaTypeSamples(st.l)
	for _, v := range st.samples {
		mt := st.l.GetMetatable(v)
		st.mts = append(st.mts, mt)
		visit(mt)
	}
}

// clean tells whether the last call left the state as it was prepared:
// the same globals environment, every recorded table with the same
// metatable and the same entries (new ones included), every recorded
// function with the same environment, the same per-type metatables. KEYS
// and ARGV are the only globals a call changes.
func (st *luaState) clean() bool {
	l := st.l
	if l.Env != st.globals || l.G.Global != st.globals {
		return false
	}
	for i, v := range st.samples {
		if l.GetMetatable(v) != st.mts[i] {
			return false
		}
	}
	for _, f := range st.funcs {
		if f.f.Env != f.env {
			return false
		}
	}
	for i := range st.tables {
		if !st.tables[i].same(st) {
			return false
		}
	}
	return true
}

// same tells whether s.t still has the metatable and exactly the entries
// it had when snapshotted (KEYS and ARGV aside in the globals).
func (s *tableSnap) same(st *luaState) bool {
	t := s.t
	if t.Metatable != s.mt {
		return false
	}
	if tableSizeFields == nil {
		return s.walk(st)
	}
	// KEYS and ARGV are replaced, never added, so the sizes stay.
	if tableSize(t) != s.size {
		return false
	}
	for _, e := range s.strs {
		if t.RawGetString(e.k) != e.v {
			return false
		}
	}
	for _, e := range s.rest {
		if t.RawGet(e.k) != e.v {
			return false
		}
	}
	return true
}

// walk is same without tableSize: t's entries are counted by walking it.
func (s *tableSnap) walk(st *luaState) bool {
	// Every snapshotted entry is still there (checked below), so with as
	// many entries as then there is nothing else.
	n := 0
	s.t.ForEach(func(k, v lua.LValue) {
		if s.t == st.globals && (k == luaKeys || k == luaArgv) {
			return
		}
		n++
	})
	if n != len(s.strs)+len(s.rest) {
		return false
	}
	for _, e := range s.strs {
		if s.t.RawGetString(e.k) != e.v {
			return false
		}
	}
	for _, e := range s.rest {
		if s.t.RawGet(e.k) != e.v {
			return false
		}
	}
	return true
}
