package posts

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

func TestBodyWords(t *testing.T) {
	body := func(s string) []byte { b, _ := json.Marshal(s); return b }
	for _, tc := range []struct{ body, want string }{
		{`{"title":"Café Crème","msg":"ÉTÉ, été; x","avatar":"ignored","price":12}`, "cafe creme ete"},
		{`plain text, not JSON: Golf-GTI 2016`, "2016 golf gti json not plain text"},
		{`{"title":"ﬁat São Paulo","images":["a/b.jpg"]}`, "fiat paulo sao"},
		{`{"title":"` + strings.Repeat("a", 40) + `"}`, strings.Repeat("a", maxWordRunes)},
		{`{"broken":`, "broken"},
	} {
		if got := strings.Join(bodyWords(body(tc.body)), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.body, got, tc.want)
		}
	}
	var many []string
	for i := 0; i < 3*maxPostWords; i++ {
		many = append(many, fmt.Sprintf("w%d", i))
	}
	if n := len(bodyWords(body(strings.Join(many, " ")))); n != maxPostWords {
		t.Fatalf("%d words indexed, want %d", n, maxPostWords)
	}
}

func TestParseSearch(t *testing.T) {
	for _, tc := range []struct{ q, want string }{
		{"golf", "[] golf"},
		{"golf ", "[golf] "},
		{"Café gti", "[cafe] gti"},
		{"gti golf gti x", "[golf gti] "},
		{"a golf", "[] golf"},
	} {
		s, err := parseSearch(tc.q)
		if err != nil {
			t.Fatalf("%q: %v", tc.q, err)
		}
		if got := fmt.Sprint(s.Words, " ", s.Prefix); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.q, got, tc.want)
		}
	}
	for _, q := range []string{"a", "  ", strings.Repeat("ab ", maxQueryWords+1), strings.Repeat("x", maxQueryBytes+1)} {
		if _, err := parseSearch(q); reason(err) != "bad_request" {
			t.Errorf("%q: %v, want bad_request", q, err)
		}
	}
}

var vocab = []string{"golf", "golfe", "gold", "polo", "café", "CAFE", "Cafeteria", "rouge", "rot", "red", "x5", "2016", "été", "Ete", "bmw", "honda"}

func randomPost(r *rand.Rand, id uint64) *Post {
	var title, msg []string
	for i := r.IntN(4); i > 0; i-- {
		title = append(title, vocab[r.IntN(len(vocab))])
	}
	for i := r.IntN(6); i > 0; i-- {
		msg = append(msg, vocab[r.IntN(len(vocab))])
	}
	inner, _ := json.Marshal(map[string]any{"title": strings.Join(title, " "), "msg": strings.Join(msg, ", "), "avatar": "golf"})
	d := &draft{loc: []uint64{0, 0, uint64(r.IntN(2))}, prod: []uint64{0, uint64(r.IntN(3)), 0}, features: 1 << r.IntN(3)}
	d.body, _ = json.Marshal(string(inner))
	js := fmt.Sprintf(`{"id":%d,%s}`, id, d.members("u", 1000))
	p, err := parseStored([]byte(js), 3, 3)
	if err != nil {
		panic(err)
	}
	return p
}

// brute answers a search by testing every live post's own words, without
// the word lists.
func brute(x *index, f *Filter) []uint64 {
	var out []uint64
	for _, p := range x.all.ps {
		if !p.alive() || !f.Match(p) {
			continue
		}
		ws := bodyWords(p.bodyRaw())
		ok := true
		for _, w := range f.Search.Words {
			ok = ok && slices.Contains(ws, w)
		}
		if f.Search.Prefix != "" {
			ok = ok && slices.ContainsFunc(ws, func(w string) bool { return strings.HasPrefix(w, f.Search.Prefix) })
		}
		if ok {
			out = append(out, p.ID)
		}
	}
	slices.Reverse(out)
	return out
}

// bodyRaw returns the raw "body" member of p's JSON.
func (p *Post) bodyRaw() []byte {
	var m map[string]json.RawMessage
	json.Unmarshal(p.JSON, &m)
	return m["body"]
}

// The word index answers exactly what testing every post would, through
// inserts, deletions, edits (a new version under the same id) and paging
// with the cursor at a small max-scan.
func TestSearchMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := newIndex(0)
	const n = 1500
	for id := uint64(1); id <= n; id++ {
		x.insert(randomPost(r, id))
	}
	for i := 0; i < 600; i++ {
		id := uint64(1 + r.IntN(n))
		if x.byID[id] == nil {
			continue
		}
		x.remove(id)
		if i%2 == 0 {
			x.insert(randomPost(r, id)) // an edit
		}
		x.tidy()
	}
	queries := []string{"golf", "gol", "cafe", "CAFÉ ", "caf", "golf rouge", "ete red", "x5 2016 bmw", "nothing", "golf nothing", "zz", "ro", "été rot"}
	for i := 0; i < 40; i++ {
		queries = append(queries, vocab[r.IntN(len(vocab))]+" "+vocab[r.IntN(len(vocab))][:2])
	}
	found := 0
	for _, q := range queries {
		for _, f := range []Filter{{}, {Prods: []uint64{h(0, 1, 0)}}, {Features: 2}, {Locs: []uint64{h(0, 0, 1)}, Prods: []uint64{h(0, 2, 0), h(0, 0, 0)}}} {
			s, err := parseSearch(q)
			if err != nil {
				t.Fatal(err)
			}
			f.Search = s
			want := brute(x, &f)
			var got []uint64
			from := uint64(0)
			for pages := 0; ; pages++ {
				res := x.scan(&f, 0, read{limit: 7, maxScan: 50, desc: true, from: from})
				for _, p := range res.posts {
					got = append(got, p.ID)
				}
				switch {
				case len(res.posts) == 7:
					from = res.posts[6].ID
				case res.next != 0:
					from = res.next
				default:
					from = 0
				}
				if from == 0 {
					break
				}
				if pages > 10*n {
					t.Fatal("no end")
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("q=%q filter %+v:\n got %v\nwant %v", q, f, got, want)
			}
			if c := x.count(&f, 0, 0, -1); c.n != len(want) {
				t.Fatalf("q=%q: count %d, want %d", q, c.n, len(want))
			}
			found += len(want)
		}
	}
	if found < 1000 {
		t.Fatalf("only %d matches in all: the test proves little", found)
	}
}

func h(a, b, c uint64) uint64 { return a<<42 | b<<21 | c }

// A search costs what its rarest word costs: a word on no post costs
// nothing, and a common word stops at max-scan with a cursor.
func TestSearchBounded(t *testing.T) {
	x := newIndex(0)
	body := func(s string) []byte { b, _ := json.Marshal(`{"title":"` + s + `"}`); return b }
	for id := uint64(1); id <= 5000; id++ {
		d := &draft{body: body("common words here"), loc: []uint64{0, 0, 0}, prod: []uint64{0, 0, 0}, features: 1}
		if id%1000 == 0 {
			d.body = body("common rare")
			d.features = 2
		}
		p, err := parseStored([]byte(fmt.Sprintf(`{"id":%d,%s}`, id, d.members("u", 1000))), 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		x.insert(p)
	}
	search := func(q string, features uint64) *Filter {
		s, err := parseSearch(q)
		if err != nil {
			t.Fatal(err)
		}
		return &Filter{Search: s, Features: features}
	}
	if r := x.scan(search("common absent", 0), 0, read{limit: 10, maxScan: 100, desc: true}); r.scanned != 0 || len(r.posts) != 0 || r.next != 0 {
		t.Fatalf("a word on no post: %+v", r)
	}
	if r := x.scan(search("zzz", 0), 0, read{limit: 10, maxScan: 100, desc: true}); r.scanned != 0 {
		t.Fatalf("a prefix of no word cost %d", r.scanned)
	}
	// The rare word drives the read: 5 posts examined, not 5000.
	if r := x.scan(search("common rare ", 0), 0, read{limit: 10, maxScan: 100, desc: true}); r.scanned != 5 || len(r.posts) != 5 {
		t.Fatalf("rare word: %d examined, %d found", r.scanned, len(r.posts))
	}
	// A common word with a filter that rejects nearly everything stops
	// at max-scan and says where to go on.
	r := x.scan(search("common", 2), 0, read{limit: 10, maxScan: 100, desc: true})
	if r.scanned != 100 || r.next != 4901 || len(r.posts) != 1 || r.posts[0].ID != 5000 {
		t.Fatalf("common word: %d examined, next %d, %d found", r.scanned, r.next, len(r.posts))
	}
	if c := x.count(search("common", 2), 0, 0, 100); c.next == 0 {
		t.Fatalf("count of a common word: %+v, want a cursor", c)
	}
}

// GET /api/posts?q= on a running node, combined with filters, cursor and
// count, and kept current by edits and deletions.
func TestHTTPSearch(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100})
		srv := serve(t, n)
		pub := newConn("7")
		var golfs []uint64
		for i := 0; i < 12; i++ {
			title := "Honda CB500F"
			if i%2 == 0 {
				title = fmt.Sprintf("VW Golf GTI nº%d", i)
			}
			frame := fmt.Sprintf(`{"cmd":"publish","items":[{"body":%q,"to":[[[0,0,0]],[[0,%d,0]]],"range_values":[%d]}]}`,
				fmt.Sprintf(`{"title":%q,"msg":"Très bon état"}`, title), i%3, 100*i)
			id := n.publish(t, pub, frame)
			if i%2 == 0 {
				golfs = append([]uint64{id}, golfs...)
			}
		}
		ids := func(query string) []uint64 {
			var got []uint64
			cursor := ""
			for pages := 0; pages < 50; pages++ {
				code, _, body := get(t, srv.URL+"/api/posts?limit=2&"+query+cursor)
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", query, code, body)
				}
				var p page
				if err := json.Unmarshal([]byte(body), &p); err != nil {
					t.Fatal(err)
				}
				for _, it := range p.Posts {
					got = append(got, it.ID)
				}
				if p.Next == "" {
					return got
				}
				cursor = "&before=" + p.Next
			}
			t.Fatal("no end")
			return nil
		}
		q := func(s string) string { return "q=" + url.QueryEscape(s) }
		if got := ids(q("golf")); !slices.Equal(got, golfs) {
			t.Fatalf("golf: %v, want %v", got, golfs)
		}
		if got := ids(q("ETAT gt")); !slices.Equal(got, golfs) {
			t.Fatalf("etat gt: %v, want %v", got, golfs)
		}
		if got := ids(q("golf") + "&product=" + fmt.Sprint(h(0, 1, 0))); len(got) != 2 {
			t.Fatalf("golf in product [0,1,0]: %v", got)
		}
		if _, _, body := get(t, srv.URL+"/api/posts?count=1&"+q("golf gti")); body != "{\"count\":6}\n" {
			t.Fatalf("count: %s", body)
		}
		if code, _, body := get(t, srv.URL+"/api/posts?"+q("a")); code != http.StatusBadRequest || !strings.Contains(body, "bad_request") {
			t.Fatalf("one-letter query: %d %s", code, body)
		}
		// An edit changes what the post is found by; a deletion removes it.
		up := fmt.Sprintf(`{"cmd":"update","id":%d,"items":[{"body":"{\"title\":\"Yamaha helmet\"}","to":[[[0,0,0]],[[1,2,0]]]}]}`, golfs[0])
		if err := n.Update(t.Context(), pub, req(t, up)); err != nil {
			t.Fatal(err)
		}
		n.until(t, "the edit", func() bool { return len(ids(q("helmet"))) == 1 })
		if got := ids(q("golf")); !slices.Equal(got, golfs[1:]) {
			t.Fatalf("golf after the edit: %v, want %v", got, golfs[1:])
		}
		if err := n.Delete(t.Context(), pub, req(t, fmt.Sprintf(`{"cmd":"delete","id":%d}`, golfs[1]))); err != nil {
			t.Fatal(err)
		}
		if got := ids(q("golf")); !slices.Equal(got, golfs[2:]) {
			t.Fatalf("golf after the deletion: %v, want %v", got, golfs[2:])
		}
		// Sold posts can be left out, or asked for.
		if err := n.SetStatus(t.Context(), pub, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"sold"}`, golfs[2]))); err != nil {
			t.Fatal(err)
		}
		n.until(t, "the status", func() bool { return len(ids(q("golf")+"&status=sold")) == 1 })
		if got := ids(q("golf") + "&status=available,reserved"); !slices.Equal(got, golfs[3:]) {
			t.Fatalf("golf not sold: %v, want %v", got, golfs[3:])
		}
		if _, _, body := get(t, srv.URL+"/api/posts?count=1&status=available"); body != "{\"count\":10}\n" {
			t.Fatalf("count of available posts: %s", body)
		}
		if code, _, _ := get(t, srv.URL+"/api/posts?status=gone"); code != http.StatusBadRequest {
			t.Fatalf("unknown status: %d", code)
		}
	})
}

// sort=price_asc|price_desc pages through every match in price order (no
// price last, ties newest first) when the matches fit in max-scan, and says
// "partial" when they do not.
func TestHTTPSortByPrice(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, MaxScan: 40})
		srv := serve(t, n)
		pub := newConn("7")
		r := rand.New(rand.NewPCG(3, 4))
		type post struct {
			id    uint64
			price int64
			has   bool
		}
		var ps []post
		for i := 0; i < 30; i++ {
			price := int64(r.IntN(10)*100 - 200)
			ranges := fmt.Sprint(price)
			if i%7 == 0 {
				ranges = ""
			}
			id := n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1<<(i%2), ranges))
			ps = append(ps, post{id, price, ranges != ""})
		}
		walk := func(query string) ([]uint64, bool) {
			var got []uint64
			partial := false
			cursor := ""
			for pages := 0; pages < 50; pages++ {
				code, _, body := get(t, srv.URL+"/api/posts?limit=4&"+query+cursor)
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", query, code, body)
				}
				var p struct {
					page
					Partial bool
				}
				if err := json.Unmarshal([]byte(body), &p); err != nil {
					t.Fatal(err)
				}
				partial = partial || p.Partial
				for _, it := range p.Posts {
					got = append(got, it.ID)
				}
				if p.Next == "" {
					return got, partial
				}
				cursor = "&before=" + url.QueryEscape(p.Next)
			}
			t.Fatal("no end")
			return nil, false
		}
		for _, desc := range []bool{false, true} {
			want := slices.Clone(ps)
			slices.SortFunc(want, func(a, b post) int {
				switch {
				case a.has != b.has:
					if a.has {
						return -1
					}
					return 1
				case a.has && a.price != b.price:
					if (a.price < b.price) != desc {
						return -1
					}
					return 1
				case a.id > b.id:
					return -1
				}
				return 1
			})
			var wantIDs []uint64
			for _, p := range want {
				wantIDs = append(wantIDs, p.id)
			}
			sort := map[bool]string{false: "price_asc", true: "price_desc"}[desc]
			got, partial := walk("sort=" + sort)
			if !slices.Equal(got, wantIDs) || partial {
				t.Fatalf("%s: partial %v\n got %v\nwant %v", sort, partial, got, wantIDs)
			}
		}
		if got, _ := walk("sort=date"); len(got) != 30 || got[0] != ps[29].id {
			t.Fatalf("sort=date: %v", got)
		}
		// More matches than max-scan: the order covers the newest 40.
		for i := 0; i < 20; i++ {
			n.publish(t, pub, publishFrame("[0,1,2]", "[0,3,7]", 1, "5"))
		}
		if got, partial := walk("sort=price_asc"); len(got) != 40 || !partial {
			t.Fatalf("past max-scan: %d posts, partial %v", len(got), partial)
		}
		for _, bad := range []string{"sort=price", "sort=price_asc&before=12", "sort=price_asc&before=x:1"} {
			if code, _, _ := get(t, srv.URL+"/api/posts?"+bad); code != http.StatusBadRequest {
				t.Fatalf("%s: %d", bad, code)
			}
		}
	})
}

// The vocabulary is bounded: words new to a full index are not indexed,
// and counted; the posts' other words still are.
func TestSearchVocabularyBound(t *testing.T) {
	x := newIndex(4)
	for id := uint64(1); id <= 3; id++ {
		body, _ := json.Marshal(fmt.Sprintf(`{"title":"golf word%d other%d"}`, id, id))
		p, err := parseStored([]byte(fmt.Sprintf(`{"id":%d,"from":"u","body":%s,"to":[[[0]],[[0]]],"features":0,"date":5,"range_values":[]}`, id, body)), 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		x.insert(p)
	}
	if len(x.words) != 4 || x.wordsDropped != 3 {
		t.Fatalf("%d words, %d dropped", len(x.words), x.wordsDropped)
	}
	find := func(q string) int {
		s, _ := parseSearch(q)
		return len(x.scan(&Filter{Search: s}, 0, read{limit: 10, maxScan: -1, desc: true}).posts)
	}
	if find("golf") != 3 || find("word1 ") != 1 || find("word3 ") != 0 {
		t.Fatalf("golf %d, word1 %d, word3 %d", find("golf"), find("word1 "), find("word3 "))
	}
	// Deleting the posts frees the vocabulary for new words.
	for id := uint64(1); id <= 3; id++ {
		x.remove(id)
	}
	x.compact()
	if len(x.words) != 0 || len(x.buckets) != 0 {
		t.Fatalf("after compaction: %d words, %d buckets", len(x.words), len(x.buckets))
	}
}

// Whatever the body, its indexed words are sorted, distinct, normalised,
// 2 to 32 runes, at most maxPostWords; a query built from any of them
// finds them.
func FuzzBodyWords(f *testing.F) {
	for _, s := range []string{`{"title":"Café Crème"}`, `plain ÉTÉ ﬁ x`, `{"a":"` + strings.Repeat("w ", 300) + `"}`, "\u0301\u0301", `{"t":"a\u0301b"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		body, _ := json.Marshal(s)
		ws := bodyWords(body)
		if len(ws) > maxPostWords || !slices.IsSorted(ws) || len(slices.Compact(slices.Clone(ws))) != len(ws) {
			t.Fatalf("%q: words %q", s, ws)
		}
		for _, w := range ws {
			n := len([]rune(w))
			if n < minWordRunes || n > maxWordRunes || w != strings.ToLower(w) {
				t.Fatalf("%q: word %q", s, w)
			}
			q, err := parseSearch(w + " ")
			if err != nil || len(q.Words) != 1 || q.Words[0] != w {
				t.Fatalf("%q: word %q reads back as %+v (%v)", s, w, q, err)
			}
		}
	})
}
