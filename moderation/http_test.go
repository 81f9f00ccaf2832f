package moderation

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// The broker client is the Store the node and the CLI hand in.
var _ Store = (*broker.Client)(nil)

const token = "handler-test-token-0123456789abcdef"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// The handler on a real Redis and on the embedded server, its clock
// injected: the listing answers the queue bound it was given; refusals
// carry their status and reason (a removal reason not allowed: 400 with
// the allowed list; a page of bans out of bounds); a body over 4 KiB sent without a length
// (chunked) is cut at 4 KiB and refused; wrong tokens are throttled from
// the 11th on, for the rest of the minute only, per address.
func TestHandler(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		b := brokertest.Open(t, be.Options)
		clk := &clock{t: time.Unix(1_800_000_000, 0)}
		reg := prometheus.NewRegistry()
		addr := "192.0.2.7"
		h, err := NewHandler(HandlerConfig{Service: New(b, 42, 0, clk.now, zaptest.NewLogger(t)), Token: []byte(token),
			ClientAddr: func(*http.Request) string { return addr }, Metrics: reg, Log: zaptest.NewLogger(t), Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		call := func(method, path, tok string, body io.Reader) (int, string) {
			t.Helper()
			req, _ := http.NewRequest(method, srv.URL+path, body)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(out)
		}
		for _, c := range []struct {
			name, method, path, tok string
			body                    io.Reader
			code                    int
			want                    string
		}{
			{"list", "GET", "/admin/v1/reports", token, nil, 200, `{"queued":0,"queue_max":42,"reports":[]}`},
			{"no token", "GET", "/admin/v1/reports", "", nil, 401, `"reason":"unauthorized"`},
			{"a token one byte short", "GET", "/admin/v1/reports", token[:len(token)-1], nil, 401, `"reason":"unauthorized"`},
			{"bad limit", "GET", "/admin/v1/reports?limit=0", token, nil, 400, `"reason":"bad_request"`},
			{"wrong method", "GET", "/admin/v1/posts/1/remove", token, nil, 404, `"reason":"not_found"`},
			{"chunked body over 4 KiB", "POST", "/admin/v1/users/1/ban", token,
				io.MultiReader(strings.NewReader(`{"note":"`), strings.NewReader(strings.Repeat("x", 5000))), 413, `"reason":"body_too_large"`},
			{"two JSON values", "POST", "/admin/v1/users/1/ban", token, strings.NewReader(`{} {}`), 400, `"reason":"bad_request"`},
			{"a note too long", "POST", "/admin/v1/users/1/ban", token,
				strings.NewReader(`{"note":"` + strings.Repeat("n", broker.MaxBanNote+1) + `"}`), 400, `"reason":"bad_request"`},
			{"not a user id", "POST", "/admin/v1/users/x1/unban", token, nil, 400, `"reason":"bad_request"`},
			{"dismiss, none", "POST", "/admin/v1/posts/5/dismiss", token, nil, 404, `"reason":"no_reports"`},
			{"a removal reason not allowed", "POST", "/admin/v1/posts/5/remove", token, strings.NewReader(`{"reason":"ugly"}`), 400,
				`reason \"ugly\": want one of spam, scam, prohibited, offensive, other","reason":"bad_request"`},
			{"a note without a reason", "POST", "/admin/v1/posts/5/remove", token, strings.NewReader(`{"note":"n"}`), 400, `"reason":"bad_request"`},
			{"remove, a reason, no post", "POST", "/admin/v1/posts/5/remove", token, strings.NewReader(`{"reason":"spam"}`), 404, `"reason":"post_not_found"`},
			{"bans, none", "GET", "/admin/v1/bans", token, nil, 200, `{"bans":[],"offset":0,"next":0,"total":0,"cleaned":0}`},
			{"bans, limit 1001", "GET", "/admin/v1/bans?limit=1001", token, nil, 400, `"reason":"bad_request"`},
			{"bans, offset -1", "GET", "/admin/v1/bans?offset=-1", token, nil, 400, `"reason":"bad_request"`},
			{"bans, no token", "GET", "/admin/v1/bans", "", nil, 401, `"reason":"unauthorized"`},
			{"the page", "GET", "/admin/", "", nil, 200, `<script src="/admin/admin.js" defer></script>`},
			{"no inline script in the page", "GET", "/admin/", "", nil, 200, `</html>`},
		} {
			code, body := call(c.method, c.path, c.tok, c.body)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%s: %d %s, want %d with %s", c.name, code, body, c.code, c.want)
			}
			if c.path == "/admin/" && strings.Count(body, "<script") != 1 {
				t.Errorf("the page holds an inline script: %s", body)
			}
		}
		// Three wrong tokens so far; seven more pass as 401, then 429.
		for i := 0; i < AuthFailures-3; i++ {
			if code, body := call("GET", "/admin/v1/reports", "wrong", nil); code != 401 {
				t.Fatalf("wrong token %d: %d %s", i+3, code, body)
			}
		}
		if code, body := call("GET", "/admin/v1/reports", token, nil); code != 429 || !strings.Contains(body, `"reason":"too_many_failures"`) {
			t.Fatalf("the right token after %d wrong ones: %d %s, want 429", AuthFailures, code, body)
		}
		addr = "192.0.2.8" // another address is not throttled
		if code, _ := call("GET", "/admin/v1/reports", token, nil); code != 200 {
			t.Fatalf("another address: %d, want 200", code)
		}
		addr = "192.0.2.7"
		clk.add(AuthWindow)
		if code, _ := call("GET", "/admin/v1/reports", token, nil); code != 200 {
			t.Fatalf("a minute later: %d, want 200", code)
		}
		if n := testutil.ToFloat64(h.refusals.WithLabelValues(ReasonThrottled)); n != 1 {
			t.Fatalf("throttled refusals counted %v, want 1", n)
		}
		if n := testutil.ToFloat64(h.refusals.WithLabelValues(ReasonUnauthorized)); n != AuthFailures {
			t.Fatalf("unauthorized refusals counted %v, want %d", n, AuthFailures)
		}
	})
}

// The addresses whose failures are counted stay bounded: past maxTracked
// the new ones share one count, so rotating addresses neither grows the
// map nor buys more guesses than AuthFailures a window; expired windows
// make room again.
func TestFailuresBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	f := &failures{m: map[string]*failWindow{}, now: clk.now}
	for i := range maxTracked + 500 {
		f.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if len(f.m) > maxTracked+1 {
		t.Fatalf("%d addresses tracked, want at most %d", len(f.m), maxTracked+1)
	}
	if f.throttled("203.0.113.9") == 0 {
		t.Fatal("a new address while the map is full shares the overflow count (500 failures): want throttled")
	}
	if f.throttled("10.0.0.1") != 0 {
		t.Fatal("an address with one failure is throttled")
	}
	clk.add(AuthWindow)
	f.fail("203.0.113.9")
	if len(f.m) != 1 || f.m["203.0.113.9"] == nil {
		t.Fatalf("after the window the expired entries should go: %d left", len(f.m))
	}
	// Expired windows go at the next window's first failure, the map
	// not full.
	clk.add(AuthWindow)
	f.fail("198.51.100.1")
	if len(f.m) != 1 || f.m["198.51.100.1"] == nil {
		t.Fatalf("an address gone for a window is still tracked: %d entries", len(f.m))
	}
}

// The token file: one bare token (named admin), or "name token" lines
// with comments and blank lines; each refusal names its line and never
// echoes a token. A client's file (LoadToken) holds one token.
func TestTokenFile(t *testing.T) {
	other := strings.Repeat("b", 40)
	for _, c := range []struct {
		name, content string
		want          []string // names:roles, in order
		err           string
	}{
		{"bare", token + "\n", []string{"admin:moderator"}, ""},
		{"named", "# the team\n\nana " + token + "\n  bo.b-2_x " + other + "\n", []string{"ana:moderator", "bo.b-2_x:moderator"}, ""},
		{"roles", "ana " + token + " moderator\nsupport " + other + "\tviewer\n", []string{"ana:moderator", "support:viewer"}, ""},
		{"unknown role", "ana " + token + "\nbob " + other + " admin", nil, "line 2: the third field is the role: want moderator or viewer"},
		{"role in capitals", "ana " + token + " Viewer", nil, "line 1: the third field is the role"},
		{"token as role", "ana " + token + " " + other, nil, "line 1: the third field is the role"},
		{"four fields", "ana " + token + " viewer x", nil, "line 1: want \"name token\" or \"name token role\" (4 fields)"},
		{"empty", "# nobody\n\n", nil, "no token"},
		{"short", "ana abc\n", nil, "line 1: the token holds 3 bytes, want at least 32"},
		{"short bare", "abc", nil, "line 1: the token holds 3 bytes"},
		{"bad name", "# c\nAna " + token, nil, "line 2: a name is 1 to 32 of"},
		{"long name", strings.Repeat("a", 33) + " " + token, nil, "line 1: a name is"},
		{"same name", "ana " + token + "\nana " + other, nil, "line 2: the name ana is on line 1 already"},
		{"same token", "ana " + token + "\n\nbob " + token, nil, "line 3: the same token as line 1"},
		{"bare among named", "ana " + token + "\n" + other, nil, "line 2: a bare token is for a file of one token"},
	} {
		ops, err := ParseTokens([]byte(c.content))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.name, err, c.err)
			} else if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), other) {
				t.Errorf("%s: the refusal echoes a token: %v", c.name, err)
			}
			continue
		}
		var names []string
		for _, o := range ops {
			names = append(names, o.Name+":"+o.RoleOf())
		}
		if err != nil || strings.Join(names, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: %v %v, want %v", c.name, names, err, c.want)
		}
	}
	dir := t.TempDir()
	for _, c := range []struct{ name, content, want string }{
		{"one", "ana " + token + "\n", ""},
		{"bare", token, ""},
		{"viewer", "sue " + token + " viewer\n", ""},
		{"two", "ana " + token + "\nbob " + other, "2 tokens; with --node, give a file holding your own token only"},
	} {
		p := dir + "/" + c.name
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadToken(p)
		switch {
		case c.want == "" && (err != nil || string(tok) != token):
			t.Errorf("%s: %q %v", c.name, tok, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := LoadToken(dir + "/none"); err == nil || !strings.Contains(err.Error(), "--admin-token-file") {
		t.Errorf("missing file: %v", err)
	}
}

// The page's reason select offers exactly the removal reasons the
// Service takes, in their order.
func TestPageRemovalReasons(t *testing.T) {
	b, err := os.ReadFile("page/index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	sel := html[strings.Index(html, `<select id="remove-reason">`):]
	sel = sel[:strings.Index(sel, "</select>")]
	var got []string
	for _, part := range strings.Split(sel, `<option value="`)[1:] {
		got = append(got, part[:strings.Index(part, `"`)])
	}
	if strings.Join(got, ",") != strings.Join(broker.RemovalReasons, ",") {
		t.Fatalf("the page offers %v, the Service takes %v", got, broker.RemovalReasons)
	}
}

// Addresses that sent the right token keep their own count when the map
// is full (so others' wrong tokens cannot lock them out), and there are
// at most maxTrusted of them: the map grows by that much at most.
func TestFailuresTrusted(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	f := &failures{m: map[string]*failWindow{}, now: clk.now}
	for i := range maxTrusted + 100 {
		f.trust(fmt.Sprintf("192.0.2.%d", i))
	}
	for i := range maxTracked + 500 {
		f.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if f.throttled("203.0.113.9") == 0 {
		t.Fatal("a new address while the map is full: want throttled with the overflow")
	}
	if f.throttled("192.0.2.1") != 0 {
		t.Fatal("a trusted address is throttled by the others' failures")
	}
	for i := range maxTrusted + 100 {
		f.fail(fmt.Sprintf("192.0.2.%d", i))
	}
	if len(f.trusted) != maxTrusted || len(f.m) > maxTracked+maxTrusted+1 {
		t.Fatalf("%d trusted, %d tracked: want %d and at most %d", len(f.trusted), len(f.m), maxTrusted, maxTracked+maxTrusted+1)
	}
	for range AuthFailures {
		f.fail("192.0.2.1")
	}
	if f.throttled("192.0.2.1") == 0 {
		t.Fatal("a trusted address's own wrong tokens no longer throttle it")
	}
}
