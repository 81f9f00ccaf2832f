package posts

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/occase/occase/wire"
	"golang.org/x/text/unicode/norm"
)

// Text search (GET /api/posts?q=...): every node keeps a word index of its
// live posts, next to the channel lists. A post's words come from its body
// (an opaque JSON string): when the body holds a JSON object, from the
// string values of its top-level members (at most maxTextFields of them,
// "avatar" left out); otherwise from the whole string. Words are runs of
// letters and digits, in Unicode compatibility decomposition with the
// combining marks dropped (é -> e, ﬁ -> fi) and lowercased; words of fewer
// than minWordRunes are not indexed, longer ones than maxWordRunes are cut
// there, and at most maxPostWords distinct words of a post are indexed (the
// first ones of the text). Every bound holds for an adversary's body: the
// body is at most Limits.MaxBody bytes and is read once, outside the lock.
const (
	minWordRunes   = 2
	maxWordRunes   = 32
	maxPostWords   = 200
	maxTextFields  = 32
	maxQueryWords  = 8
	maxQueryBytes  = 256
	maxPrefixWords = 64
)

// Search is a parsed text query: every word of Words must be a word of the
// post, and when Prefix is not "" one of the post's words must start with
// it (AND semantics).
type Search struct {
	Words  []string
	Prefix string
}

// bodyWords returns the distinct indexed words of a post's body, sorted.
func bodyWords(body []byte) []string {
	s, ok := wire.String(body)
	if !ok {
		return nil
	}
	set := map[string]struct{}{}
	var out []string
	add := func(text string) {
		if len(out) < maxPostWords {
			eachWord(text, func(w string) bool {
				if _, ok := set[w]; !ok {
					set[w] = struct{}{}
					out = append(out, w)
				}
				return len(out) < maxPostWords
			})
		}
	}
	if t := strings.TrimSpace(s); len(t) > 0 && t[0] == '{' {
		var texts []string
		if wire.Scan([]byte(t), func(f wire.Field) {
			if len(texts) >= maxTextFields || f.Key == "avatar" {
				return
			}
			if v, ok := wire.String(f.Value); ok {
				texts = append(texts, v)
			}
		}) == nil {
			for _, v := range texts {
				add(v)
			}
			slices.Sort(out)
			return out
		}
	}
	add(s)
	slices.Sort(out)
	return out
}

// eachWord calls fn with each normalised word of text, in order, until fn
// returns false. It reports whether text ends inside a word it passed to
// fn (no separator after it), for the prefix of a query.
func eachWord(text string, fn func(w string) bool) (open bool) {
	if !isASCII(text) {
		text = norm.NFKD.String(text)
	}
	var b strings.Builder
	n := 0
	flush := func() bool {
		w := b.String()
		b.Reset()
		ok := n >= minWordRunes
		n = 0
		if ok {
			return fn(w)
		}
		return true
	}
	for _, r := range text {
		switch {
		case unicode.Is(unicode.Mn, r):
			// A combining mark (an accent after decomposition): dropped.
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if n < maxWordRunes {
				b.WriteRune(unicode.ToLower(r))
			}
			n++
		default:
			if n > 0 && !flush() {
				return false
			}
		}
	}
	if n > 0 {
		ok := n >= minWordRunes
		return flush() && ok
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// parseSearch reads the q parameter: at most maxQueryBytes bytes and
// maxQueryWords words (of at least minWordRunes letters or digits; shorter
// ones are ignored). The last word is a prefix unless q ends with a
// separator (a space). nil, nil when q is empty.
func parseSearch(q string) (*Search, error) {
	if q == "" {
		return nil, nil
	}
	if len(q) > maxQueryBytes {
		return nil, wire.Errorf(wire.BadRequest, "q is %d bytes, the limit is %d", len(q), maxQueryBytes)
	}
	var ws []string
	open := eachWord(q, func(w string) bool { ws = append(ws, w); return true })
	if len(ws) == 0 {
		return nil, wire.Errorf(wire.BadRequest, "q holds no word of %d or more letters or digits", minWordRunes)
	}
	if len(ws) > maxQueryWords {
		return nil, wire.Errorf(wire.BadRequest, "q has %d words, the limit is %d", len(ws), maxQueryWords)
	}
	// A query word cut at maxWordRunes matches the post words cut there.
	s := &Search{}
	if open {
		s.Prefix = ws[len(ws)-1]
		ws = ws[:len(ws)-1]
	}
	slices.Sort(ws)
	s.Words = slices.Compact(ws)
	return s, nil
}

// match tells whether p's words satisfy s.
func (s *Search) match(p *Post) bool {
	for _, w := range s.Words {
		if _, ok := slices.BinarySearch(p.words, w); !ok {
			return false
		}
	}
	if s.Prefix != "" {
		i := sort.SearchStrings(p.words, s.Prefix)
		return i < len(p.words) && strings.HasPrefix(p.words[i], s.Prefix)
	}
	return true
}

// wlist is the id-ordered list of the posts holding one word.
type wlist struct {
	plist
	w string
}

// bucketKey is the first minWordRunes runes of w, the key of the sorted
// word list prefix queries look up.
func bucketKey(w string) string {
	i, n := 0, 0
	for i < len(w) && n < minWordRunes {
		_, sz := utf8.DecodeRuneInString(w[i:])
		i += sz
		n++
	}
	return w[:i]
}

// addWords puts p on the list of each of its words and makes p.words share
// the index's copy of each word. When the vocabulary holds maxVocab words,
// a word new to it is not indexed (dropped from p.words, counted): an
// adversary's bodies of random words cannot grow it without bound.
func (x *index) addWords(p *Post) {
	kept := p.words[:0]
	for _, w := range p.words {
		l := x.words[w]
		if l == nil {
			if x.maxVocab > 0 && len(x.words) >= x.maxVocab {
				x.wordsDropped++
				continue
			}
			l = &wlist{w: w}
			x.words[w] = l
			k := bucketKey(w)
			b := x.buckets[k]
			j, _ := slices.BinarySearch(b, w)
			x.buckets[k] = slices.Insert(b, j, w)
		}
		kept = append(kept, l.w)
		l.add(p)
	}
	p.words = kept
}

func (x *index) removeWords(p *Post) {
	for _, w := range p.words {
		if l := x.words[w]; l != nil {
			l.live--
		}
	}
}

// compactWords drops dead posts from the word lists, and the words left
// without posts.
func (x *index) compactWords(dead func(*Post) bool) {
	for w, l := range x.words {
		if l.ps = slices.DeleteFunc(l.ps, dead); len(l.ps) == 0 {
			delete(x.words, w)
			k := bucketKey(w)
			b := x.buckets[k]
			if j, ok := slices.BinarySearch(b, w); ok {
				b = slices.Delete(b, j, j+1)
			}
			if len(b) == 0 {
				delete(x.buckets, k)
			} else {
				x.buckets[k] = b
			}
		}
	}
}

// expand returns the lists of the words that start with pre, and their
// live posts in all; ok is false (and the lists nil) when more than
// maxPrefixWords words do: the prefix is then tested post by post instead.
func (x *index) expand(pre string) (ls []*plist, live int, ok bool) {
	b := x.buckets[bucketKey(pre)]
	for i := sort.SearchStrings(b, pre); i < len(b) && strings.HasPrefix(b[i], pre); i++ {
		if len(ls) == maxPrefixWords {
			return nil, 0, false
		}
		if l := x.words[b[i]]; l != nil && l.live > 0 {
			ls = append(ls, &l.plist)
			live += l.live
		}
	}
	return ls, live, true
}

// drivers returns the lists a read of f walks: those of its channels, or,
// when f searches text and a word's list is shorter, that list (or the
// lists of the words its prefix expands to). Every other condition is
// tested on each post met. nil when a word of the query is on no live
// post: the read then costs nothing.
func (x *index) drivers(f *Filter) []*plist {
	ls, _ := x.lists(f)
	s := f.Search
	if s == nil || len(ls) == 0 {
		return ls
	}
	cost := 0
	for _, l := range ls {
		cost += l.live
	}
	for _, w := range s.Words {
		l := x.words[w]
		if l == nil || l.live == 0 {
			return nil
		}
		if l.live < cost {
			ls, cost = []*plist{&l.plist}, l.live
		}
	}
	if s.Prefix != "" {
		exp, live, ok := x.expand(s.Prefix)
		if ok && live == 0 {
			return nil
		}
		if ok && live < cost {
			ls = exp
		}
	}
	return ls
}

// priceKey orders posts by price (range_values[0], the demo menu's and the
// web app's convention): posts with a price first, by price, ties newest
// first; posts without one last, newest first.
type priceKey struct {
	has   bool
	price int64
	id    uint64
}

func keyOf(p *Post) priceKey {
	if len(p.Ranges) == 0 {
		return priceKey{id: p.ID}
	}
	return priceKey{has: true, price: p.Ranges[0], id: p.ID}
}

// before tells whether a comes before b in price order (desc: dearest
// first).
func (a priceKey) before(b priceKey, desc bool) bool {
	if a.has != b.has {
		return a.has
	}
	if a.has && a.price != b.price {
		return a.price < b.price != desc
	}
	return a.id > b.id
}

// String is the cursor form: "<price>:<id>", or ":<id>" without a price.
func (a priceKey) String() string {
	s := ""
	if a.has {
		s = strconv.FormatInt(a.price, 10)
	}
	return s + ":" + strconv.FormatUint(a.id, 10)
}

func parsePriceKey(v string) (priceKey, error) {
	bad := wire.Errorf(wire.BadRequest, `before must be a cursor "<price>:<id>" of a price sort`)
	p, id, ok := strings.Cut(v, ":")
	if !ok {
		return priceKey{}, bad
	}
	k := priceKey{}
	var err error
	if k.id, err = strconv.ParseUint(id, 10, 64); err != nil {
		return priceKey{}, bad
	}
	if p != "" {
		k.has = true
		if k.price, err = strconv.ParseInt(p, 10, 64); err != nil {
			return priceKey{}, bad
		}
	}
	return k, nil
}

// byPrice returns up to limit posts matching f in price order after
// cursor (nil: from the start), and whether more follow. The order is
// exact among the newest posts a read of at most maxScan examined; capped
// tells that the read stopped there, so older matches are left out.
func (x *index) byPrice(f *Filter, cutoff int64, maxScan, limit int, desc bool, cursor *priceKey) (ps []*Post, more, capped bool) {
	r := x.scan(f, cutoff, read{limit: maxScan + 1, maxScan: maxScan, desc: true})
	cand := r.posts[:0:0]
	for _, p := range r.posts {
		if cursor == nil || cursor.before(keyOf(p), desc) {
			cand = append(cand, p)
		}
	}
	slices.SortFunc(cand, func(a, b *Post) int {
		ka, kb := keyOf(a), keyOf(b)
		switch {
		case ka.before(kb, desc):
			return -1
		case kb.before(ka, desc):
			return 1
		}
		return 0
	})
	if len(cand) > limit {
		return cand[:limit], true, r.next != 0
	}
	return cand, false, r.next != 0
}
