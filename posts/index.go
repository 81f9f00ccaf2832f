package posts

import (
	"container/heap"
	"math/bits"
	"slices"
	"sort"
)

// index is a node's view of the live posts and of its connections'
// subscriptions. It is not safe for concurrent use: the Service guards it.
//
// Posts are kept in id order in several lists, so that a read touches only
// the posts its channels name and its cost follows the size of its answer,
// not the size of the index: one list of all posts, one per product hash,
// one per location hash and one per (location, product) pair. A read picks
// the lists that cover its channels exactly (or, for a very long cross
// product, the cheaper single dimension), merges them by id with a heap from
// its cursor, and tests the rest of the filter (features, ranges, date) on
// each post it meets; at most maxScan posts are examined per read, after
// which it returns a cursor to continue from. Removal only marks a post
// dead; the lists are compacted when a quarter of them is dead, so that
// deleting or expiring is O(1) and no list is copied per removal.
//
// Subscriptions are indexed by product hash, plus one wildcard list of those
// that asked for every product, so that a post is matched against the
// subscriptions of its own product and the wildcard ones only, never
// against every connection. Each subscription remembers its position in
// each list it is on, so leaving is O(products · log products), not a scan.
type index struct {
	all    plist
	byID   map[uint64]*Post
	byProd map[uint64]*plist
	byLoc  map[uint64]*plist
	byPair map[pair]*plist
	// byFrom holds each author's live posts in id order, exactly (a
	// removal takes the post out at once): the author's own list
	// (mine.go) costs O(the author's posts), never a walk of the index.
	byFrom map[string][]*Post
	dead   int
	bytes  int // JSON bytes of the live posts
	head   int // all.ps[:head] holds no live post (for evicting the oldest)

	// gen counts inserts; recent[gen%len(recent)] is the post of insert gen,
	// so that a subscribe whose catch-up was read under the read lock finds
	// what arrived before it took the write lock.
	gen    uint64
	recent [1024]*Post

	subs     map[Conn]*sub
	prodSubs map[uint64][]*sub
	wild     []*sub

	// words: the id-ordered posts of each indexed word (search.go);
	// buckets: the words, sorted, by their first minWordRunes runes, for
	// prefix queries.
	words   map[string]*wlist
	buckets map[string][]string
	// maxVocab bounds len(words) (0: no bound); wordsDropped counts the
	// words of posts left unindexed at that bound.
	maxVocab     int
	wordsDropped uint64

	// feats[b] counts the live posts with feature bit b, and featMask has
	// bit b set while feats[b] > 0: a read whose features name no bit of
	// featMask matches nothing and is answered without a walk (a filter on
	// a feature no post has walked MaxScan posts for an empty answer).
	feats    [64]int32
	featMask uint64
}

// plist is one id-ordered list of posts and how many of them are alive.
type plist struct {
	ps   []*Post
	live int
}

type pair struct{ loc, prod uint64 }

// maxPairs bounds the (location, product) lists one read merges; a longer
// cross product reads one dimension's lists and filters the other.
const maxPairs = 1024

type sub struct {
	c     Conn
	f     *Filter
	floor uint64 // live posts need an id above it (see Service.Subscribe)
	slots []int  // slots[i]: position in prodSubs[f.Prods[i]] (or in wild, when f.Prods is empty)
}

// match tells whether a live post goes to s.
func (s *sub) match(p *Post) bool {
	return p.ID > s.floor && s.f.matchProd(p) && s.f.matchRest(p)
}

func newIndex(maxVocab int) *index {
	return &index{maxVocab: maxVocab, byID: map[uint64]*Post{}, byProd: map[uint64]*plist{},
		byLoc: map[uint64]*plist{}, byPair: map[pair]*plist{}, byFrom: map[string][]*Post{},
		subs: map[Conn]*sub{}, prodSubs: map[uint64][]*sub{},
		words: map[string]*wlist{}, buckets: map[string][]string{}}
}

// alive marks a post as present; a dead post stays in the lists until the
// next compaction.
func (p *Post) alive() bool { return p.JSON != nil }

// insert adds p and reports false when a post with its id is already there
// (reloads and broadcasts meet the same post more than once).
func (x *index) insert(p *Post) bool {
	if _, ok := x.byID[p.ID]; ok {
		return false
	}
	x.byID[p.ID] = p
	x.bytes += len(p.JSON)
	x.all.add(p)
	listOf(x.byProd, p.Prod).add(p)
	listOf(x.byLoc, p.Loc).add(p)
	listOf(x.byPair, pair{p.Loc, p.Prod}).add(p)
	x.byFrom[p.From] = addByID(x.byFrom[p.From], p)
	x.addWords(p)
	for m := p.Features; m != 0; m &= m - 1 {
		b := bits.TrailingZeros64(m)
		x.feats[b]++
		x.featMask |= 1 << b
	}
	x.gen++
	p.ins = x.gen
	x.recent[x.gen%uint64(len(x.recent))] = p
	return true
}

func listOf[K comparable](m map[K]*plist, k K) *plist {
	l := m[k]
	if l == nil {
		l = &plist{}
		m[k] = l
	}
	return l
}

func (l *plist) add(p *Post) {
	l.live++
	// Posts almost always arrive in id order; appending is the fast path.
	if len(l.ps) == 0 || l.ps[len(l.ps)-1].ID < p.ID {
		l.ps = append(l.ps, p)
		return
	}
	i := sort.Search(len(l.ps), func(i int) bool { return l.ps[i].ID >= p.ID })
	l.ps = slices.Insert(l.ps, i, p)
}

// remove marks post id dead and returns it (nil when it is not there). The
// returned post keeps its fields but not its JSON.
func (x *index) remove(id uint64) *Post {
	p, ok := x.byID[id]
	if !ok {
		return nil
	}
	delete(x.byID, id)
	x.bytes -= len(p.JSON)
	p.JSON = nil
	x.dead++
	x.all.live--
	x.byProd[p.Prod].live--
	x.byLoc[p.Loc].live--
	x.byPair[pair{p.Loc, p.Prod}].live--
	if l := dropByID(x.byFrom[p.From], p.ID); len(l) == 0 {
		delete(x.byFrom, p.From)
	} else {
		x.byFrom[p.From] = l
	}
	x.removeWords(p)
	for m := p.Features; m != 0; m &= m - 1 {
		b := bits.TrailingZeros64(m)
		if x.feats[b]--; x.feats[b] == 0 {
			x.featMask &^= 1 << b
		}
	}
	return p
}

// tidy compacts the lists once enough of them is dead. Callers run it after
// a batch of removals, never while iterating the lists.
func (x *index) tidy() {
	if x.dead > 64 && x.dead > len(x.all.ps)/4 {
		x.compact()
	}
}

func (x *index) compact() {
	keep := func(p *Post) bool { return !p.alive() }
	x.all.ps = slices.DeleteFunc(x.all.ps, keep)
	x.head = 0
	compactMap(x.byProd, keep)
	compactMap(x.byLoc, keep)
	compactMap(x.byPair, keep)
	x.compactWords(keep)
	x.dead = 0
}

func compactMap[K comparable](m map[K]*plist, dead func(*Post) bool) {
	for k, l := range m {
		if l.ps = slices.DeleteFunc(l.ps, dead); len(l.ps) == 0 {
			delete(m, k)
		}
	}
}

// oldest returns the live post with the lowest id, nil when there is none.
func (x *index) oldest() *Post {
	for ; x.head < len(x.all.ps); x.head++ {
		if p := x.all.ps[x.head]; p.alive() {
			return p
		}
	}
	return nil
}

// newest returns the highest live id, 0 when there is none.
func (x *index) newest() uint64 {
	for i := len(x.all.ps) - 1; i >= 0; i-- {
		if p := x.all.ps[i]; p.alive() {
			return p.ID
		}
	}
	return 0
}

// removeOlder drops every post dated (or renewed last) at or before cutoff
// and returns them.
func (x *index) removeOlder(cutoff int64) []*Post {
	var out []*Post
	for _, p := range x.all.ps {
		if p.alive() && p.expired(cutoff) {
			out = append(out, x.remove(p.ID))
		}
	}
	x.tidy()
	return out
}

func (x *index) len() int { return len(x.byID) }

// lists returns the lists that hold every post f's channels can match, and
// whether they hold nothing else (then only features, ranges and dates are
// left to test).
func (x *index) lists(f *Filter) ([]*plist, bool) {
	var out []*plist
	add := func(l *plist) {
		if l != nil && l.live > 0 {
			out = append(out, l)
		}
	}
	nl, np := len(f.Locs), len(f.Prods)
	switch {
	case nl == 0 && np == 0:
		add(&x.all)
		return out, true
	case nl > 0 && np > 0 && nl*np <= maxPairs:
		for _, l := range f.Locs {
			for _, p := range f.Prods {
				add(x.byPair[pair{l, p}])
			}
		}
		return out, true
	case np == 0 || nl > 0 && x.sum(x.byLoc, f.Locs) < x.sum(x.byProd, f.Prods):
		for _, h := range f.Locs {
			add(x.byLoc[h])
		}
		return out, np == 0
	default:
		for _, h := range f.Prods {
			add(x.byProd[h])
		}
		return out, nl == 0
	}
}

func (x *index) sum(m map[uint64]*plist, hs []uint64) int {
	n := 0
	for _, h := range hs {
		if l := m[h]; l != nil {
			n += l.live
		}
	}
	return n
}

// read is one bounded walk over the index.
type read struct {
	limit   int    // matches to collect; 0 = count only, no limit
	maxScan int    // posts to examine at most (dead ones included)
	desc    bool   // newest first, from below from; else oldest first, from above from
	from    uint64 // cursor: desc: ids below it (0 = from the newest); asc: ids above it
}

// readResult is what a read found. next is 0 when the read saw every
// candidate; otherwise the read stopped at maxScan and next is the cursor
// to continue from (ids below it when desc, above it when not).
type readResult struct {
	posts   []*Post
	n       int
	next    uint64
	scanned int // list entries examined (the read's cost)
}

// scan walks the posts matching f and dated after cutoff in id order from
// r.from, collecting up to r.limit of them (or counting them when r.limit
// is 0), and examining at most r.maxScan posts.
func (x *index) scan(f *Filter, cutoff int64, r read) readResult {
	var res readResult
	if f.Features != 0 && f.Features&x.featMask == 0 {
		return res // no live post has any of the features asked for
	}
	ls := x.drivers(f)
	if len(ls) == 0 {
		return res
	}
	h := &cursors{desc: r.desc}
	for _, l := range ls {
		var i int
		if r.desc {
			i = len(l.ps)
			if r.from > 0 {
				i = sort.Search(len(l.ps), func(j int) bool { return l.ps[j].ID >= r.from })
			}
			i--
			if i < 0 {
				continue
			}
		} else {
			i = sort.Search(len(l.ps), func(j int) bool { return l.ps[j].ID > r.from })
			if i == len(l.ps) {
				continue
			}
		}
		h.cs = append(h.cs, cursor{l.ps, i})
	}
	heap.Init(h)
	// A post may be met more than once: on the lists of two words of a
	// prefix, or as the dead and the live version of an edited post. seen
	// holds the posts met at the current id.
	var seen []*Post
	for h.Len() > 0 {
		// Never stop between two entries of one id: the cursor would
		// skip the second.
		if r.maxScan >= 0 && res.scanned >= r.maxScan && h.top() != h.lastID {
			res.next = h.lastID
			return res
		}
		atID := h.lastID
		p := h.next()
		res.scanned++
		if p.ID != atID {
			seen = seen[:0]
		} else if slices.Contains(seen, p) {
			continue
		}
		seen = append(seen, p)
		if !p.alive() || p.expired(cutoff) || !f.matchProd(p) || !f.matchRest(p) ||
			f.Search != nil && !f.Search.match(p) || f.Status != 0 && f.Status&p.status == 0 {
			continue
		}
		res.n++
		if r.limit > 0 {
			res.posts = append(res.posts, p)
			if len(res.posts) == r.limit {
				return res
			}
		}
	}
	return res
}

// count returns how many live posts match f, dated after cutoff, below
// before (0: any), examining at most maxScan posts; next as in scan. A
// filter of channels only is answered from the lists' sizes without a walk.
func (x *index) count(f *Filter, cutoff int64, before uint64, maxScan int) readResult {
	ls, exact := x.lists(f)
	if !exact || before != 0 || f.Features != 0 || len(f.Ranges) > 0 || f.Search != nil || f.Status != 0 {
		return x.scan(f, cutoff, read{maxScan: maxScan, desc: true, from: before})
	}
	var res readResult
	budget := maxScan
	for _, l := range ls {
		res.n += l.live
		// Posts are dated in id order but for clock skew between
		// nodes, so those past the cutoff that the sweep has not removed
		// yet sit at the front, among the renewed ones (old dates, not
		// expired).
		for _, p := range l.ps {
			if p.alive() && p.Date > cutoff {
				break
			}
			if budget == 0 {
				// Many expired or renewed posts at the front.
				return x.scan(f, cutoff, read{maxScan: maxScan, desc: true})
			}
			budget--
			if p.alive() && p.expired(cutoff) {
				res.n--
			}
		}
	}
	return res
}

// cursor is a position in one list.
type cursor struct {
	ps []*Post
	i  int
}

// cursors merges lists by id: a min-heap on the current id (a max-heap
// when desc).
type cursors struct {
	cs     []cursor
	desc   bool
	lastID uint64
}

func (h *cursors) Len() int { return len(h.cs) }
func (h *cursors) Less(a, b int) bool {
	x, y := h.cs[a].ps[h.cs[a].i].ID, h.cs[b].ps[h.cs[b].i].ID
	if h.desc {
		return x > y
	}
	return x < y
}
func (h *cursors) Swap(a, b int) { h.cs[a], h.cs[b] = h.cs[b], h.cs[a] }
func (h *cursors) Push(v any)    { h.cs = append(h.cs, v.(cursor)) }
func (h *cursors) Pop() any {
	v := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return v
}

// top is the id at the top; 0 when the heap is empty.
func (h *cursors) top() uint64 {
	if len(h.cs) == 0 {
		return 0
	}
	c := &h.cs[0]
	return c.ps[c.i].ID
}

// next returns the post at the top and moves that list on.
func (h *cursors) next() *Post {
	c := &h.cs[0]
	p := c.ps[c.i]
	h.lastID = p.ID
	if h.desc {
		c.i--
	} else {
		c.i++
	}
	if c.i < 0 || c.i >= len(c.ps) {
		heap.Pop(h)
	} else if len(h.cs) > 1 {
		heap.Fix(h, 0)
	}
	return p
}

// query is scan for callers that want the posts only.
func (x *index) query(f *Filter, cutoff int64, limit int, desc bool, before uint64) []*Post {
	if limit <= 0 {
		return nil
	}
	from := before
	if !desc {
		from = f.After
	}
	return x.scan(f, cutoff, read{limit: limit, maxScan: -1, desc: desc, from: from}).posts
}

func cmpID(a, b *Post) int {
	switch {
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}

// subscribe sets c's subscription to f, replacing any earlier one.
func (x *index) subscribe(c Conn, f *Filter, floor uint64) {
	x.leave(c)
	s := &sub{c: c, f: f, floor: floor}
	x.subs[c] = s
	if len(f.Prods) == 0 {
		s.slots = []int{len(x.wild)}
		x.wild = append(x.wild, s)
		return
	}
	s.slots = make([]int, len(f.Prods))
	for i, h := range f.Prods {
		l := x.prodSubs[h]
		s.slots[i] = len(l)
		x.prodSubs[h] = append(l, s)
	}
}

func (x *index) leave(c Conn) {
	s, ok := x.subs[c]
	if !ok {
		return
	}
	delete(x.subs, c)
	if len(s.f.Prods) == 0 {
		x.wild = dropSlot(x.wild, s.slots[0], 0, false)
		return
	}
	for i, h := range s.f.Prods {
		l := dropSlot(x.prodSubs[h], s.slots[i], h, true)
		if len(l) == 0 {
			delete(x.prodSubs, h)
		} else {
			x.prodSubs[h] = l
		}
	}
}

// dropSlot removes l[i] by moving the last element into its place and
// updating that element's own record of where it sits in the list of
// product h (or in the wildcard list).
func dropSlot(l []*sub, i int, h uint64, byProd bool) []*sub {
	last := len(l) - 1
	if i != last {
		m := l[last]
		l[i] = m
		j := 0
		if byProd {
			j, _ = slices.BinarySearch(m.f.Prods, h)
		}
		m.slots[j] = i
	}
	l[last] = nil
	return l[:last]
}

// fanout sends frame to every subscription that matches p, except skip. It
// returns how many got it.
func (x *index) fanout(p *Post, frame []byte, skip Conn) int {
	n := 0
	for _, l := range [2][]*sub{x.prodSubs[p.Prod], x.wild} {
		for _, s := range l {
			if s.c != skip && p.ID > s.floor && s.f.matchRest(p) {
				s.c.SendLive(frame)
				n++
			}
		}
	}
	return n
}

// fanoutDeleted tells every subscription that asked for deletions and
// matches p (whatever its floor: the client may hold p from elsewhere) that
// p is gone. It returns how many were told.
func (x *index) fanoutDeleted(p *Post) int {
	var frame []byte
	n := 0
	for _, l := range [2][]*sub{x.prodSubs[p.Prod], x.wild} {
		for _, s := range l {
			if s.f.Deletions && s.f.matchRest(p) {
				if frame == nil {
					frame = deletedFrame(p.ID)
				}
				s.c.SendLive(frame)
				n++
			}
		}
	}
	return n
}
