package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// manyFields is a chat frame of about size bytes: n fields (keys k0, k1,
// ... with dup of them repeated), the rest of the size in "msg".
func manyFields(n, dup, size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"cmd":"message","to":"57"`)
	for i := range n {
		fmt.Fprintf(&b, `,"k%d":%d`, i%max(n-dup, 1), i)
	}
	if pad := size - b.Len() - 12; pad > 0 {
		b.WriteString(`,"msg":"` + strings.Repeat("x", pad) + `"`)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// The member rewrite of a frame with thousands of fields costs a bounded
// number of steps per field (key comparisons and map lookups), counted
// rather than timed: 2,000 fields cost at most a few times 2,000 steps
// where the pairwise check took about 2,000,000.
func TestAppendMembersIsLinear(t *testing.T) {
	drop := []string{"from", "msg_id"}
	steps := func(frame []byte) (n, fields int) {
		r, err := ParseRequest(frame)
		if err != nil {
			t.Fatal(err)
		}
		r.appendMembers(nil, drop, &n)
		return n, len(r.Fields)
	}
	one, oneFields := steps(manyFields(0, 0, 16<<10))
	for _, tt := range []struct {
		name     string
		n, dup   int
		perField int
	}{
		{"2000 distinct", 2000, 0, len(drop) + 2},
		{"2000 one key", 2000, 1999, len(drop) + 2},
		{"2000 half repeated", 2000, 1000, len(drop) + 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, fields := steps(manyFields(tt.n, tt.dup, 16<<10))
			if limit := tt.perField * fields; got > limit {
				t.Fatalf("%d fields took %d steps, want at most %d (linear); a 3-field frame took %d (%d fields)",
					fields, got, limit, one, oneFields)
			}
		})
	}
}

// Both duplicate checks (pairwise for few fields, a map for many) keep the
// last of each key, in the order of the last occurrences, as encoding/json
// reads the object.
func TestAppendMembersManyFieldsKeepsLast(t *testing.T) {
	for _, n := range []int{1, 5, pairwiseFields - 3, pairwiseFields, pairwiseFields + 1, 40, 300} {
		for _, dup := range []int{0, 1, n / 2, n - 1} {
			frame := manyFields(n, dup, 0)
			r, err := ParseRequest(frame)
			if err != nil {
				t.Fatal(err)
			}
			out := append([]byte{'{'}, r.AppendMembers(nil, "to")...)
			out = append(out, '}')
			var got, want map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("n=%d dup=%d: rewrite %q is not JSON: %v", n, dup, out, err)
			}
			json.Unmarshal(frame, &want)
			delete(want, "to")
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("n=%d dup=%d: rewrite %s, want the members of %s", n, dup, out, frame)
			}
			// Each key once.
			if keys := bytes.Count(out, []byte(`":`)); keys != len(want) {
				t.Fatalf("n=%d dup=%d: %d members written, want %d: %s", n, dup, keys, len(want), out)
			}
		}
	}
}

// BenchmarkAppendMembersManyFields measures a 16 KiB chat frame of 2,000
// fields against a 16 KiB frame with one big field (the baseline, same
// run): the ratio is what a many-field frame costs over an honest one.
func BenchmarkAppendMembersManyFields(b *testing.B) {
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"fields=2000", manyFields(2000, 0, 16<<10)},
		{"fields=2000,repeated", manyFields(2000, 1000, 16<<10)},
		{"baseline=fields=3", manyFields(0, 0, 16<<10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			r, err := ParseRequest(c.frame)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, len(c.frame)+32)
			b.ReportAllocs()
			b.SetBytes(int64(len(c.frame)))
			for b.Loop() {
				dst = r.AppendMembers(dst[:0], "from", "msg_id")
			}
		})
	}
}
