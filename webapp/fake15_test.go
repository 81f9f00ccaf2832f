package webapp

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/occase/occase/wire"
)

// The fake's side of issue 15's server API: GET /api/posts with q, sort and
// status (docs/http-api.md), and the listing commands update, set_status
// and renew (docs/protocol.md "Editing a listing"). Simplified: words are
// lowercased runs of letters and digits (no accent folding).

const fakeExpiry, fakeRenewWindow = 90 * 86400, 7 * 86400

func fakeWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// fakeText is a post's searchable text: the body's top-level strings.
func fakeText(p map[string]any) map[string]bool {
	body, _ := p["body"].(string)
	var doc map[string]any
	out := map[string]bool{}
	if json.Unmarshal([]byte(body), &doc) != nil {
		for _, w := range fakeWords(body) {
			out[w] = true
		}
		return out
	}
	for k, v := range doc {
		if s, ok := v.(string); ok && k != "avatar" {
			for _, w := range fakeWords(s) {
				out[w] = true
			}
		}
	}
	return out
}

// fakeQuery reports whether p matches q (every word, the last a prefix
// unless q ends with a separator).
func fakeQuery(p map[string]any, q string) bool {
	var qw []string
	for _, w := range fakeWords(q) {
		if len([]rune(w)) > 1 {
			qw = append(qw, w)
		}
	}
	if len(qw) == 0 {
		return true
	}
	have := fakeText(p)
	prefix := q != "" && (unicode.IsLetter(rune(q[len(q)-1])) || unicode.IsDigit(rune(q[len(q)-1])) || q[len(q)-1] >= 0x80)
	for i, w := range qw {
		if have[w] {
			continue
		}
		found := false
		if prefix && i == len(qw)-1 {
			for h := range have {
				if strings.HasPrefix(h, w) {
					found = true
					break
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func fakeStatus(p map[string]any) string {
	if s, ok := p["status"].(string); ok {
		return s
	}
	return "available"
}

func fakePrice(p map[string]any) (float64, bool) {
	rv, _ := p["range_values"].([]any)
	if len(rv) == 0 {
		return 0, false
	}
	switch x := rv[0].(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

// searchPosts answers a GET /api/posts that has q, sort or status; matches
// are the posts (newest first) that sub matches. s.mu is held.
func (s *fakeServer) searchPosts(q map[string][]string, sub *fakeSub, limit int) map[string]any {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	s.searches = append(s.searches, get("q")+"|"+get("sort")+"|"+get("status")+"|"+get("before"))
	statuses := map[string]bool{}
	for _, v := range strings.Split(get("status"), ",") {
		if v != "" {
			statuses[v] = true
		}
	}
	var match []map[string]any
	for i := len(s.posts) - 1; i >= 0; i-- {
		p := s.posts[i]
		if !sub.match(p) || !fakeQuery(p, get("q")) || (len(statuses) > 0 && !statuses[fakeStatus(p)]) {
			continue
		}
		match = append(match, p)
	}
	out := []any{}
	body := map[string]any{}
	srt := get("sort")
	if srt == "price_asc" || srt == "price_desc" {
		if s.maxScan > 0 && len(match) > s.maxScan {
			match = match[:s.maxScan]
			body["partial"] = true
		}
		key := func(p map[string]any) string {
			if x, ok := fakePrice(p); ok {
				return strconv.FormatFloat(x, 'f', -1, 64) + ":" + fmt.Sprint(u64(p["id"]))
			}
			return ":" + fmt.Sprint(u64(p["id"]))
		}
		less := func(a, b map[string]any) bool { // a before b
			pa, oka := fakePrice(a)
			pb, okb := fakePrice(b)
			if oka != okb {
				return oka
			}
			if oka && pa != pb {
				if srt == "price_asc" {
					return pa < pb
				}
				return pa > pb
			}
			return u64(a["id"]) > u64(b["id"])
		}
		sort.SliceStable(match, func(i, j int) bool { return less(match[i], match[j]) })
		start := 0
		if b := get("before"); b != "" {
			start = len(match)
			for i, p := range match {
				if key(p) == b {
					start = i + 1
					break
				}
			}
		}
		for i := start; i < len(match); i++ {
			if len(out) == limit {
				body["next"] = key(out[len(out)-1].(map[string]any))
				break
			}
			out = append(out, match[i])
		}
	} else {
		before := uint64(1<<64 - 1)
		if b, err := strconv.ParseUint(get("before"), 10, 64); err == nil {
			before = b
		}
		for _, p := range match {
			if u64(p["id"]) >= before {
				continue
			}
			if len(out) == limit {
				body["next"] = fmt.Sprint(u64(out[len(out)-1].(map[string]any)["id"]))
				break
			}
			out = append(out, p)
		}
	}
	body["posts"] = out
	return body
}

// change runs update, set_status and renew; false closes the connection.
func (s *fakeServer) change(c *fakeConn, cmd string, f map[string]any) bool {
	ack := cmd + "_ack"
	if _, ok := f["id"].(json.Number); !ok {
		s.fail(c, "error", wire.BadRequest)
		return false
	}
	id := u64(f["id"])
	s.mu.Lock()
	var p map[string]any
	for _, q := range s.posts {
		if u64(q["id"]) == id {
			p = q
		}
	}
	fail := func(reason, detail string) bool {
		s.mu.Unlock()
		c.write(map[string]any{"cmd": ack, "result": "fail", "reason": reason, "detail": detail})
		return true
	}
	if p == nil {
		return fail(wire.NotFound, "")
	}
	if p["from"] != c.user {
		return fail(wire.NotOwner, "")
	}
	s.changes = append(s.changes, cmd)
	old := map[string]any{}
	for k, v := range p {
		old[k] = v
	}
	now := time.Now().Unix()
	reply := map[string]any{"cmd": ack, "result": "ok", "id": id}
	switch cmd {
	case "update":
		items, _ := f["items"].([]any)
		var it map[string]any
		if len(items) == 1 {
			it, _ = items[0].(map[string]any)
		}
		if it == nil {
			return fail(wire.BadRequest, "")
		}
		for _, k := range []string{"body", "to", "features", "range_values"} {
			if v, ok := it[k]; ok {
				p[k] = v
			} else {
				delete(p, k)
			}
		}
		p["edited"] = now
	case "set_status":
		st, _ := f["status"].(string)
		switch st {
		case "available":
			delete(p, "status")
		case "sold", "reserved":
			p["status"] = st
		default:
			return fail(wire.BadRequest, "")
		}
	case "renew":
		from := fakeInt(p["date"])
		if r := fakeInt(p["renewed"]); r > from {
			from = r
		}
		at := from + fakeExpiry - fakeRenewWindow
		if s.renewAt != 0 {
			at = s.renewAt // a server with another --post-expiry or --renew-window
		}
		if now < at {
			return fail(wire.RateLimited, fmt.Sprintf("a post can be renewed in the last 168h0m0s before it expires; post %d from %d (in %d s)", id, at, at-now))
		}
		p["renewed"] = now
		reply["expires"] = now + fakeExpiry
	}
	reply["post"] = p
	type out struct {
		c *fakeConn
		v any
	}
	var sends []out
	for o := range s.conns {
		if o.sub == nil || !o.sub.deletions {
			continue
		}
		if o.sub.match(p) {
			sends = append(sends, out{o, map[string]any{"cmd": "post", "items": []any{p}}})
		} else if o.sub.match(old) {
			sends = append(sends, out{o, map[string]any{"cmd": "post_deleted", "id": id}})
		}
	}
	b, _ := json.Marshal(reply) // p may change once the lock is released
	s.mu.Unlock()
	c.write(json.RawMessage(b))
	for _, o := range sends {
		o.c.write(o.v)
	}
	return true
}

func fakeInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case json.Number:
		n, _ := x.Int64()
		return n
	case float64:
		return int64(x)
	}
	return 0
}

// setAge dates a post secs before now, never renewed (for renewals).
func (s *fakeServer) setAge(id uint64, secs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.posts {
		if u64(p["id"]) == id {
			p["date"] = time.Now().Unix() - secs
			delete(p, "renewed")
		}
	}
}
