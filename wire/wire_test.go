package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestChannelHash(t *testing.T) {
	tests := []struct {
		name    string
		code    []uint64
		d       int
		want    uint64
		wantErr bool
	}{
		{"d3 spec example 1", []uint64{0, 1, 2}, 3, 2097154, false},
		{"d3 spec example 2", []uint64{0, 3, 7}, 3, 6291463, false},
		{"d3 spec example 3", []uint64{1, 1, 0}, 3, 4398048608256, false},
		{"d3 leaf one", []uint64{0, 0, 1}, 3, 1, false},
		{"d4 original example", []uint64{1, 1, 0, 1}, 4, 281479271677953, false},
		{"d2 original example", []uint64{2, 5}, 2, 8589934597, false},
		{"d1", []uint64{7}, 1, 7, false},
		{"longer code is cut", []uint64{0, 1, 2, 9, 9}, 3, 2097154, false},
		{"shorter code hashes to 0", []uint64{0, 1}, 3, 0, false},
		{"empty code", nil, 3, 0, false},
		{"component too wide d3", []uint64{0, 1 << 21, 0}, 3, 0, true},
		{"first component too wide d3", []uint64{1 << 22, 0, 0}, 3, 0, true},
		{"component too wide d4", []uint64{0, 0, 0, 1 << 16}, 4, 0, true},
		{"depth 5 unsupported", []uint64{0, 0, 0, 0, 0}, 5, 0, true},
		{"depth 0 unsupported", []uint64{0}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChannelHash(tt.code, tt.d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		frame   string
		cmd     string
		wantErr error  // sentinel, or nil
		reason  string // reason of a *Error, or ""
	}{
		{"login", `{"cmd":"login","user":"42","password":"x"}`, "login", nil, ""},
		{"spaces", " { \"cmd\" : \"register\" } ", "register", nil, ""},
		{"escaped key", `{"c\u006dd":"register"}`, "register", nil, ""},
		{"duplicate cmd keeps last", `{"cmd":"login","cmd":"register"}`, "register", nil, ""},
		{"not json", `{"cmd":`, "", ErrNotJSON, ""},
		{"bad utf8", "{\"cmd\":\"\xff\"}", "", ErrNotJSON, ""},
		{"array", `[1,2]`, "", nil, BadRequest},
		{"no cmd", `{"user":"1"}`, "", nil, BadRequest},
		{"cmd number", `{"cmd":1}`, "", nil, BadRequest},
		{"empty object", `{}`, "", nil, BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tt.frame))
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.reason != "":
				var we *Error
				if !errors.As(err, &we) || we.Reason != tt.reason {
					t.Fatalf("err = %v, want reason %s", err, tt.reason)
				}
			default:
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if r.Cmd != tt.cmd {
					t.Fatalf("cmd = %q, want %q", r.Cmd, tt.cmd)
				}
			}
		})
	}
}

func TestAppendMembersDropsAndKeepsBytes(t *testing.T) {
	frame := `{"cmd":"message","from":"999","to":"57","msg":"a \"q\" \u00e9","x":{"n":[1,2.5e3,null]},"to":"58"}`
	r, err := ParseRequest([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(`{"from":"7",`), r.AppendMembers(nil, "from")...)
	out = append(out, '}')
	want := `{"from":"7","cmd":"message","msg":"a \"q\" \u00e9","x":{"n":[1,2.5e3,null]},"to":"58"}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}

func TestTypedFields(t *testing.T) {
	r, err := ParseRequest([]byte(`{"cmd":"delete","id":18446744073709551615,"neg":-1,"f":1.5,"s":"x","b":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.U64("id"); err != nil || v != 18446744073709551615 {
		t.Fatalf("U64(id) = %d, %v", v, err)
	}
	for _, k := range []string{"neg", "f", "s", "missing"} {
		if _, err := r.U64(k); err == nil {
			t.Fatalf("U64(%s) accepted", k)
		}
	}
	if _, err := r.Str("id"); err == nil {
		t.Fatal("Str(id) accepted a number")
	}
	if v, ok := Bool(r.Get("b")); !ok || !v {
		t.Fatal("Bool(b)")
	}
	if v, ok := Int64(r.Get("neg")); !ok || v != -1 {
		t.Fatal("Int64(neg)")
	}
}

// FuzzParseRequest checks the scanner against encoding/json: the same
// accept/reject decision, the same fields, and a member rewrite that stays
// valid JSON with the same values.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"login","user":"42","password":"abc"}`,
		`{"cmd":"message","type":"chat","to":"57","msg":"hi","refers_to":-1,"post_id":17,"is_sender_post":false,"nick":"Ana","id":23}`,
		`{"cmd":"subscribe","channels":[[1,2],[3]],"any_of_features":0,"last_post_id":0,"ranges":[0,10]}`,
		`{"cmd":"publish","items":[{"body":"{\"a\":1}","to":[[[0,1,2]],[[0,3,7]]],"features":1,"range_values":[1,2]}]}`,
		`{"c\u006dd":"x","a":{"b":["}",{"c":"]"}]},"z":null}`,
		`[]`, `"cmd"`, `{`, `{"cmd":1}`, ` {"cmd" : "register" , "e":{}} `,
	} {
		f.Add([]byte(s))
	}
	// Many fields, with and without repeated keys: the rewrite switches
	// from a pairwise duplicate check to a map above pairwiseFields.
	f.Add(manyFields(40, 0, 0))
	f.Add(manyFields(40, 25, 0))
	f.Add(manyFields(pairwiseFields+1, 3, 0))
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := ParseRequest(frame)
		var m map[string]json.RawMessage
		jerr := json.Unmarshal(frame, &m)
		if !utf8.Valid(frame) {
			// WebSocket text must be UTF-8; encoding/json would replace bad bytes.
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("accepted invalid UTF-8 %q", frame)
			}
			return
		}
		if errors.Is(err, ErrNotJSON) {
			var v any
			if json.Unmarshal(frame, &v) == nil {
				t.Fatalf("scanner rejected valid JSON %q", frame)
			}
			return
		}
		if jerr != nil {
			// Valid JSON that is not an object: must be a bad_request.
			if err == nil {
				t.Fatalf("accepted non-object %q", frame)
			}
			return
		}
		if err != nil {
			// An object: only a missing or non-string cmd may fail (encoding/json
			// would decode null into a string; it is not one).
			var cmd string
			if raw, ok := m["cmd"]; ok && string(raw) != "null" && json.Unmarshal(raw, &cmd) == nil {
				t.Fatalf("rejected object with string cmd %q: %v", frame, err)
			}
			return
		}
		for k, v := range m {
			if got := r.Get(k); !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(v)) {
				t.Fatalf("field %q = %q, encoding/json says %q", k, got, v)
			}
		}
		out := append([]byte{'{'}, r.AppendMembers(nil)...)
		out = append(out, '}')
		var back map[string]json.RawMessage
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("rewrite %q is not JSON: %v", out, err)
		}
		var a, b any
		json.Unmarshal(frame, &a)
		json.Unmarshal(out, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("rewrite changed the object: %q -> %q", frame, out)
		}
	})
}

func TestEachElement(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
		ok   bool
	}{
		{`[]`, nil, true},
		{` [ 1 , "a,]" , [2,[3]] , {"k":"]"} ] `, []string{`1`, `"a,]"`, `[2,[3]]`, `{"k":"]"}`}, true},
		{`{"a":1}`, nil, false},
		{`"x"`, nil, false},
	}
	for _, tt := range tests {
		var got []string
		ok := EachElement([]byte(tt.raw), func(v []byte) bool { got = append(got, string(v)); return true })
		if ok != tt.ok || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("EachElement(%s) = %v %q, want %v %q", tt.raw, ok, got, tt.ok, tt.want)
		}
	}
	// fn stops it.
	n := 0
	if EachElement([]byte(`[1,2,3]`), func([]byte) bool { n++; return n < 2 }) || n != 2 {
		t.Errorf("stopping after 2: n=%d", n)
	}
}

func BenchmarkParseRequestChat(b *testing.B) {
	frame := []byte(`{"cmd":"message","type":"chat","to":"57","msg":"Is it still available? I could come on Saturday.","refers_to":-1,"post_id":17,"is_sender_post":false,"nick":"Ana","id":23}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := ParseRequest(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// Nesting is limited as encoding/json limits it, and deep input neither
// crashes nor is judged differently.
func TestScanNestingMatchesEncodingJSON(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000, 10001, 50000} {
		frame := `{"cmd":"x","a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		err := Scan([]byte(frame), func(Field) {})
		if got, want := err == nil, json.Valid([]byte(frame)); got != want {
			t.Errorf("depth %d: scan accepted=%v, encoding/json valid=%v", depth, got, want)
		}
	}
}

// ValidString agrees with encoding/json on what is JSON, and refuses what
// is not UTF-8 (a text frame must be).
func FuzzValidString(f *testing.F) {
	for _, s := range []string{
		`{"msg_id":1764255000000001,"cmd":"message","type":"chat","from":"1","msg":"hi \u00e9 \ud83d\ude00"}`,
		`{"msg_id":1,"a":[1,-2.5e+3,true,false,null,{"b":"]"}]}`,
		` {} `, `[]`, `"x"`, `0`, `-0.1E-2`, `{"a":1,}`, `{"a"}`, `[1,]`, `01`, `1.`, `"\x"`,
		`{"msg_id":1,"x":"` + "\xff" + `"}`, "\"\u2028\"", `{"a":"b"}x`, ``, `nul`, `{"a":[[[[[]]]]]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := utf8.ValidString(s) && json.Valid([]byte(s))
		if got := ValidString(s); got != want {
			t.Fatalf("ValidString(%q) = %v, encoding/json and utf8 say %v", s, got, want)
		}
	})
}

// BenchmarkValidString compares the check of a stored chat message with
// encoding/json's in the same run (the baseline sub-benchmark).
func BenchmarkValidString(b *testing.B) {
	const s = `{"msg_id":1764255000000001,"cmd":"message","type":"chat","from":"12345","to":"67890","msg":"Is it still available? I can pick it up tomorrow morning.","post_id":17,"is_sender_post":false,"seq":123456,"ts":1764255000123456789}`
	b.Run("wire.ValidString", func(b *testing.B) {
		for b.Loop() {
			if !ValidString(s) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("baseline=json.Valid", func(b *testing.B) {
		for b.Loop() {
			if !utf8.ValidString(s) || !json.Valid([]byte(s)) {
				b.Fatal("invalid")
			}
		}
	})
}
