package posts

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/occase/occase/wire"
)

func req(t testing.TB, frame string) *wire.Request {
	t.Helper()
	r, err := wire.ParseRequest([]byte(frame))
	if err != nil {
		t.Fatalf("parse %s: %v", frame, err)
	}
	return r
}

// verdict names how a decoder answered: ok, "malformed" (close), or the
// reason of a failed reply.
func verdict(err error) string {
	if err == nil {
		return "ok"
	}
	if isMalformed(err) {
		return "malformed"
	}
	var we *wire.Error
	if !errors.As(err, &we) {
		return "not a *wire.Error: " + err.Error()
	}
	return we.Reason
}

func TestDecodePublish(t *testing.T) {
	lim := Limits{MaxBody: 80}
	lim.defaults()
	good := `"body":"hi","to":[[[0,1,2]],[[0,3,7]]],"features":5,"range_values":[27000,-3]`
	tests := []struct {
		name, frame, want string
	}{
		{"valid", `{"cmd":"publish","items":[{` + good + `}]}`, "ok"},
		{"server fields ignored", `{"cmd":"publish","items":[{"id":-1,"from":"x","date":0,` + good + `}]}`, "ok"},
		{"optional features and ranges", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1,2,3,4,5,6,7]]]}]}`, "ok"},
		{"nulls", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]]],"features":null,"range_values":null}]}`, "ok"},
		{"app 7351342 shape", `{"cmd":"publish","items":[{"from":"17","to":2097154,"filter":0,"id":-1,"features":4,"body":"{\"msg\":\"x\",\"channel\":[[[0,1,2]],[[0,0,0,0,0,0,0]]]}","date":0,"range_values":[45000,2015,80000]}]}`, "ok"},
		{"app shape without channel", `{"cmd":"publish","items":[{"to":2097154,"filter":0,"body":"{\"msg\":\"x\"}"}]}`, wire.BadRequest},
		{"app shape, body not JSON", `{"cmd":"publish","items":[{"to":2097154,"filter":0,"body":"hello"}]}`, wire.BadRequest},
		{"no items", `{"cmd":"publish"}`, "malformed"},
		{"items not array", `{"cmd":"publish","items":{}}`, "malformed"},
		{"no item", `{"cmd":"publish","items":[]}`, "malformed"},
		{"two items", `{"cmd":"publish","items":[{` + good + `},{` + good + `}]}`, "malformed"},
		{"item not object", `{"cmd":"publish","items":[3]}`, "malformed"},
		{"no body", `{"cmd":"publish","items":[{"to":[[[0]],[[1]]]}]}`, "malformed"},
		{"body object", `{"cmd":"publish","items":[{"body":{},"to":[[[0]],[[1]]]}]}`, "malformed"},
		{"body too large", `{"cmd":"publish","items":[{"body":"` + strings.Repeat("x", 80) + `","to":[[[0]],[[1]]]}]}`, wire.TooLarge},
		{"no to", `{"cmd":"publish","items":[{"body":""}]}`, "malformed"},
		{"to number, no body channel", `{"cmd":"publish","items":[{"body":"","to":2097154}]}`, wire.BadRequest},
		{"to string", `{"cmd":"publish","items":[{"body":"","to":"x"}]}`, "malformed"},
		{"to flat", `{"cmd":"publish","items":[{"body":"","to":[[0,1,2],[0,3,7]]}]}`, "malformed"},
		{"code of strings", `{"cmd":"publish","items":[{"body":"","to":[[["a"]],[[1]]]}]}`, "malformed"},
		{"one side", `{"cmd":"publish","items":[{"body":"","to":[[[0]]]}]}`, wire.BadRequest},
		{"three sides", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]],[[2]]]}]}`, wire.BadRequest},
		{"two location codes", `{"cmd":"publish","items":[{"body":"","to":[[[0],[1]],[[1]]]}]}`, wire.BadRequest},
		{"empty code", `{"cmd":"publish","items":[{"body":"","to":[[[]],[[1]]]}]}`, wire.BadRequest},
		{"negative component", `{"cmd":"publish","items":[{"body":"","to":[[[-1]],[[1]]]}]}`, wire.BadRequest},
		{"float component", `{"cmd":"publish","items":[{"body":"","to":[[[0.5]],[[1]]]}]}`, wire.BadRequest},
		{"huge component", `{"cmd":"publish","items":[{"body":"","to":[[[18446744073709551616]],[[1]]]}]}`, wire.BadRequest},
		{"code too long", `{"cmd":"publish","items":[{"body":"","to":[[[` + strings.Repeat("0,", 16) + `0]],[[1]]]}]}`, wire.BadRequest},
		{"features string", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]]],"features":"1"}]}`, "malformed"},
		{"features negative", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]]],"features":-1}]}`, wire.BadRequest},
		{"ranges not array", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]]],"range_values":5}]}`, "malformed"},
		{"ranges float", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]]],"range_values":[1.5]}]}`, wire.BadRequest},
		{"too many ranges", `{"cmd":"publish","items":[{"body":"","to":[[[0]],[[1]]],"range_values":[1,2,3,4,5,6,7,8,9]}]}`, wire.BadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodePublish(req(t, tc.frame), &lim)
			if got := verdict(err); got != tc.want {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}

func TestPublishedPostFormat(t *testing.T) {
	lim := Limits{}
	lim.defaults()
	d, err := decodePublish(req(t, `{"cmd":"publish","items":[{"body":"{\"msg\":\"é\"}","to":[[[0,1,2]],[[0,3,7]]],"features":1,"range_values":[27000,2016,150000],"extra":1}]}`), &lim)
	if err != nil {
		t.Fatal(err)
	}
	js := `{"id":17,` + string(d.members("42", 1570970000)) + `}`
	want := `{"id":17,"from":"42","body":"{\"msg\":\"é\"}","to":[[[0,1,2]],[[0,3,7]]],"features":1,"date":1570970000,"range_values":[27000,2016,150000]}`
	if js != want {
		t.Fatalf("stored post\n got %s\nwant %s", js, want)
	}
	p, err := parseStored([]byte(js), 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != 17 || p.From != "42" || p.Loc != 2097154 || p.Prod != 6291463 || p.Features != 1 ||
		p.Date != 1570970000 || fmt.Sprint(p.Ranges) != "[27000 2016 150000]" {
		t.Fatalf("parsed %+v", p)
	}
}

func TestParseStoredRejects(t *testing.T) {
	for _, js := range []string{
		``, `garbage`, `[]`, `{}`,
		`{"id":0,"from":"1","date":1,"to":[[[0]],[[0]]]}`,
		`{"id":1,"from":1,"date":1,"to":[[[0]],[[0]]]}`,
		`{"id":1,"from":"1","date":1}`,
		`{"id":1,"from":"1","date":1,"to":[[[0,9999999,0]],[[0]]]}`, // too wide for depth 3
		`{"id":1,"from":"1","date":"x","to":[[[0]],[[0]]]}`,
		`{"id":1,"from":"1","date":1,"to":[[[0]],[[0]]],"range_values":["a"]}`,
	} {
		if p, err := parseStored([]byte(js), 3, 3); err == nil {
			t.Errorf("%q parsed as %+v, want an error", js, p)
		}
	}
}

func TestDecodeSubscribe(t *testing.T) {
	lim := Limits{MaxLocations: 3, MaxProducts: 4, MaxRangeValues: 2}
	lim.defaults()
	tests := []struct {
		name, frame, want string
		check             string // fmt of the filter, when ok
	}{
		{"full", `{"cmd":"subscribe","channels":[[5,1,5],[9]],"any_of_features":6,"last_post_id":42,"ranges":[0,10,1,2]}`, "ok",
			"&{[1 5] [9] 6 [0 10 1 2] 42 false <nil> 0}"},
		{"bare", `{"cmd":"subscribe"}`, "ok", "&{[] [] 0 [] 0 false <nil> 0}"},
		{"deletions", `{"cmd":"subscribe","deletions":true}`, "ok", "&{[] [] 0 [] 0 true <nil> 0}"},
		{"deletions null", `{"cmd":"subscribe","deletions":null}`, "ok", "&{[] [] 0 [] 0 false <nil> 0}"},
		{"deletions number", `{"cmd":"subscribe","deletions":1}`, "malformed", ""},
		{"empty lists", `{"cmd":"subscribe","channels":[[],[]],"ranges":[]}`, "ok", "&{[] [] 0 [] 0 false <nil> 0}"},
		{"big hash", `{"cmd":"subscribe","channels":[[18446744073709551615],[]]}`, "ok", "&{[18446744073709551615] [] 0 [] 0 false <nil> 0}"},
		{"app 7351342 shape", `{"cmd":"subscribe","last_post_id":42,"channels":[4398046511104,4398048608257],"filters":[7,3],"any_of_features":6,"ranges":[0,5120000,0,2030]}`, "ok",
			"&{[4398046511104 4398048608257] [3 7] 6 [0 5120000 0 2030] 42 false <nil> 0}"},
		{"app shape, empty lists", `{"cmd":"subscribe","channels":[],"filters":[]}`, "ok", "&{[] [] 0 [] 0 false <nil> 0}"},
		{"app shape, bad filters", `{"cmd":"subscribe","channels":[1],"filters":{}}`, "malformed", ""},
		{"app shape, too many", `{"cmd":"subscribe","channels":[1,2,3,4]}`, wire.BadRequest, ""},
		{"mixed numbers and lists", `{"cmd":"subscribe","channels":[1,[2]]}`, "malformed", ""},
		{"mixed lists and numbers", `{"cmd":"subscribe","channels":[[1],2]}`, "malformed", ""},
		{"channels object", `{"cmd":"subscribe","channels":{}}`, "malformed", ""},
		{"one list", `{"cmd":"subscribe","channels":[[1]]}`, wire.BadRequest, ""},
		{"three lists", `{"cmd":"subscribe","channels":[[1],[2],[3]]}`, wire.BadRequest, ""},
		{"hash string", `{"cmd":"subscribe","channels":[["1"],[]]}`, "malformed", ""},
		{"hash negative", `{"cmd":"subscribe","channels":[[-1],[]]}`, wire.BadRequest, ""},
		{"hash float", `{"cmd":"subscribe","channels":[[],[1e3]]}`, wire.BadRequest, ""},
		{"too many locations", `{"cmd":"subscribe","channels":[[1,2,3,4],[]]}`, wire.BadRequest, ""},
		{"too many products", `{"cmd":"subscribe","channels":[[],[1,2,3,4,5]]}`, wire.BadRequest, ""},
		{"last_post_id string", `{"cmd":"subscribe","last_post_id":"3"}`, "malformed", ""},
		{"last_post_id negative", `{"cmd":"subscribe","last_post_id":-1}`, wire.BadRequest, ""},
		{"features bool", `{"cmd":"subscribe","any_of_features":true}`, "malformed", ""},
		{"odd ranges", `{"cmd":"subscribe","ranges":[1,2,3]}`, wire.BadRequest, ""},
		{"too many ranges", `{"cmd":"subscribe","ranges":[1,2,3,4,5,6]}`, wire.BadRequest, ""},
		{"ranges string", `{"cmd":"subscribe","ranges":"1,2"}`, "malformed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decodeSubscribe(req(t, tc.frame), &lim)
			if got := verdict(err); got != tc.want {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
			if err == nil {
				if got := fmt.Sprint(f); got != tc.check {
					t.Fatalf("filter %s, want %s", got, tc.check)
				}
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	p := &Post{ID: 10, Loc: 100, Prod: 200, Features: 0b0100, Ranges: []int64{27000, 2016}}
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"everything", Filter{}, true},
		{"after below", Filter{After: 9}, true},
		{"after equal", Filter{After: 10}, false},
		{"product listed", Filter{Prods: []uint64{1, 200}}, true},
		{"product not listed", Filter{Prods: []uint64{1, 201}}, false},
		{"location listed", Filter{Locs: []uint64{100}}, true},
		{"location not listed", Filter{Locs: []uint64{101}}, false},
		{"long location list", Filter{Locs: seq(0, 300)}, true},
		{"long location list without it", Filter{Locs: seq(101, 300)}, false},
		{"feature shared", Filter{Features: 0b0110}, true},
		{"feature not shared", Filter{Features: 0b1001}, false},
		{"range inside", Filter{Ranges: []int64{0, 30000, 2010, 2020}}, true},
		{"range bounds inclusive", Filter{Ranges: []int64{27000, 27000, 2016, 2016}}, true},
		{"range below", Filter{Ranges: []int64{27001, 30000}}, false},
		{"second range above", Filter{Ranges: []int64{0, 30000, 2000, 2015}}, false},
		{"range the post has no value for", Filter{Ranges: []int64{0, 30000, 0, 3000, 5, 5}}, true},
		{"all at once", Filter{Prods: []uint64{200}, Locs: []uint64{100}, Features: 4, Ranges: []int64{0, 1 << 40}, After: 3}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(p); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// The original app's publish carries hashes in "to"/"filter" (0 for its
// 7-long product codes); the codes come from its body's "channel", and the
// stored post gets them in the protocol's "to".
func TestAppShapePublishTakesCodesFromBody(t *testing.T) {
	lim := Limits{}
	lim.defaults()
	d, err := decodePublish(req(t, `{"cmd":"publish","items":[{"from":"17","to":2097154,"filter":0,"id":-1,"features":4,`+
		`"body":"{\"msg\":\"x\",\"channel\":[[[0,1,2]],[[0,2,0,0,1,0,0]]]}","date":0,"range_values":[45000,2015,80000]}]}`), &lim)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseStored([]byte(`{"id":1,`+string(d.members("17", 5))+`}`), 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d.loc, d.prod) != "[0 1 2] [0 2 0 0 1 0 0]" || p.Loc != 2097154 || p.Prod != 4194304 || p.Features != 4 {
		t.Fatalf("codes %v %v, hashes %d %d", d.loc, d.prod, p.Loc, p.Prod)
	}
}
