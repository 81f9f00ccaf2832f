package posts

import (
	"slices"
	"sort"
)

// index is a node's view of the live posts and of its connections'
// subscriptions. It is not safe for concurrent use: the Service guards it.
//
// Posts are kept in id order twice: in one list of all posts (for "all
// products" queries) and in one list per product hash (for queries naming
// products), so that a catch-up reads only the products it asked for.
// Removal only marks a post dead; the lists are compacted when a quarter of
// them is dead, so that deleting or expiring is O(1) and no list is copied
// per removal.
//
// Subscriptions are indexed by product hash, plus one wildcard list of those
// that asked for every product, so that a post is matched against the
// subscriptions of its own product and the wildcard ones only, never
// against every connection. Each subscription remembers its position in
// each list it is on, so leaving is O(products · log products), not a scan.
type index struct {
	all    []*Post
	byID   map[uint64]*Post
	byProd map[uint64][]*Post
	dead   int

	subs     map[Conn]*sub
	prodSubs map[uint64][]*sub
	wild     []*sub
}

type sub struct {
	c     Conn
	f     *Filter
	slots []int // slots[i]: position in prodSubs[f.Prods[i]] (or in wild, when f.Prods is empty)
}

func newIndex() *index {
	return &index{byID: map[uint64]*Post{}, byProd: map[uint64][]*Post{},
		subs: map[Conn]*sub{}, prodSubs: map[uint64][]*sub{}}
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
	x.all = insertByID(x.all, p)
	x.byProd[p.Prod] = insertByID(x.byProd[p.Prod], p)
	return true
}

func insertByID(l []*Post, p *Post) []*Post {
	// Posts almost always arrive in id order; appending is the fast path.
	if len(l) == 0 || l[len(l)-1].ID < p.ID {
		return append(l, p)
	}
	i := sort.Search(len(l), func(i int) bool { return l[i].ID >= p.ID })
	return slices.Insert(l, i, p)
}

func (x *index) remove(id uint64) bool {
	p, ok := x.byID[id]
	if !ok {
		return false
	}
	delete(x.byID, id)
	p.JSON = nil
	x.dead++
	return true
}

// tidy compacts the lists once enough of them is dead. Callers run it after
// a batch of removals, never while iterating the lists.
func (x *index) tidy() {
	if x.dead > 64 && x.dead > len(x.all)/4 {
		x.compact()
	}
}

func (x *index) compact() {
	keep := func(p *Post) bool { return !p.alive() }
	x.all = slices.DeleteFunc(x.all, keep)
	for h, l := range x.byProd {
		if l = slices.DeleteFunc(l, keep); len(l) == 0 {
			delete(x.byProd, h)
		} else {
			x.byProd[h] = l
		}
	}
	x.dead = 0
}

// removeOlder drops every post dated at or before cutoff and returns how
// many went.
func (x *index) removeOlder(cutoff int64) int {
	n := 0
	for _, p := range x.all {
		if p.alive() && p.Date <= cutoff {
			x.remove(p.ID)
			n++
		}
	}
	x.tidy()
	return n
}

func (x *index) len() int { return len(x.byID) }

// query returns up to limit live posts matching f and dated after cutoff:
// ascending from f.After when !desc (catch-up), or descending from below
// before when desc (newest first; before 0 = from the newest).
func (x *index) query(f *Filter, cutoff int64, limit int, desc bool, before uint64) []*Post {
	if limit <= 0 {
		return nil
	}
	ok := func(p *Post) bool { return p.alive() && p.Date > cutoff && f.Match(p) }
	if len(f.Prods) == 0 {
		return collect(x.all, f.After, before, desc, limit, ok, nil)
	}
	// Each product list yields at most limit candidates; the best limit of
	// their union are the answer.
	var out []*Post
	for _, h := range f.Prods {
		out = collect(x.byProd[h], f.After, before, desc, limit, ok, out)
	}
	if desc {
		slices.SortFunc(out, func(a, b *Post) int { return cmpID(b, a) })
	} else {
		slices.SortFunc(out, cmpID)
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out
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

// collect appends to out up to limit posts of l (sorted by id) that pass
// ok: the first ones above after, or, when desc, the last ones below before.
func collect(l []*Post, after, before uint64, desc bool, limit int, ok func(*Post) bool, out []*Post) []*Post {
	n := 0
	if !desc {
		i := sort.Search(len(l), func(i int) bool { return l[i].ID > after })
		for ; i < len(l) && n < limit; i++ {
			if ok(l[i]) {
				out = append(out, l[i])
				n++
			}
		}
		return out
	}
	i := len(l)
	if before > 0 {
		i = sort.Search(len(l), func(i int) bool { return l[i].ID >= before })
	}
	for i--; i >= 0 && n < limit; i-- {
		if ok(l[i]) {
			out = append(out, l[i])
			n++
		}
	}
	return out
}

// count returns how many live posts match f.
func (x *index) count(f *Filter, cutoff int64) int {
	n := 0
	ok := func(p *Post) bool { return p.alive() && p.Date > cutoff && f.Match(p) }
	lists := [][]*Post{x.all}
	if len(f.Prods) > 0 {
		lists = lists[:0]
		for _, h := range f.Prods {
			lists = append(lists, x.byProd[h])
		}
	}
	for _, l := range lists {
		for _, p := range l {
			if ok(p) {
				n++
			}
		}
	}
	return n
}

// subscribe sets c's subscription to f, replacing any earlier one.
func (x *index) subscribe(c Conn, f *Filter) {
	x.leave(c)
	s := &sub{c: c, f: f}
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
			if s.c != skip && p.ID > s.f.After && s.f.matchRest(p) {
				s.c.SendLive(frame)
				n++
			}
		}
	}
	return n
}
