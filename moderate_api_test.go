package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

const (
	testAdminToken  = "0123456789abcdef0123456789abcdef-test-token"
	otherAdminToken = "fedcba9876543210fedcba9876543210-other-token"
)

// adminNode is a node with its admin listener and the moderation API on.
type adminNode struct {
	*proc
	admin     string // http://host:port of --admin-addr
	tokenFile string
}

// eachModerationBackend starts a node with the moderation API on a real
// redis-server (role db) and on its own embedded broker (role all, the
// default `occase serve`, which the CLI cannot reach but through the API).
func eachModerationBackend(t *testing.T, fn func(t *testing.T, n adminNode)) {
	eachModerationBackendWith(t, nil, fn)
}

// eachModerationBackendWith is eachModerationBackend with more flags for
// the node.
func eachModerationBackendWith(t *testing.T, extra []string, fn func(t *testing.T, n adminNode)) {
	start := func(t *testing.T, args ...string) adminNode {
		args = append(args, extra...)
		dir := t.TempDir()
		tf := filepath.Join(dir, "admin-token")
		if err := os.WriteFile(tf, []byte(testAdminToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		aa := freeAddr(t)
		p := startProc(t, append(args, "--secret", testSecret, "--report-queue-max", "7",
			"--admin-addr", aa, "--admin-token-file", tf, "--log-level", "info")...)
		return adminNode{proc: p, admin: "http://" + aa, tokenFile: tf}
	}
	t.Run("redis", func(t *testing.T) {
		fn(t, start(t, "--role=db", "--redis", brokertest.StartRedis(t).Addr))
	})
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		fn(t, start(t, "--role=all", "--redis", "embedded", "--embedded-snapshot", filepath.Join(dir, "embedded.json"),
			"--image-dir", filepath.Join(dir, "images")))
	})
}

type apiAnswer struct {
	code int
	hdr  http.Header
	body map[string]any
	raw  string
}

func adminCall(t *testing.T, method, url, token string, body []byte) apiAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := apiAnswer{code: resp.StatusCode, hdr: resp.Header, raw: string(b)}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	_ = dec.Decode(&a.body)
	return a
}

func (a apiAnswer) refused(t *testing.T, what string, code int, reason string) {
	t.Helper()
	if a.code != code || a.body["reason"] != reason || a.body["error"] == "" || a.body["error"] == nil {
		t.Fatalf("%s: %d %s, want %d with reason %s and an error sentence", what, a.code, a.raw, code, reason)
	}
}

// The moderation API of the real binary, on Redis and on the embedded
// broker: refusals without the token or with a wrong one (401), a body
// over 4 KiB (413); users report posts over WebSockets, the API lists
// them with the node's own queue bound, dismisses, removes (a subscriber
// gets post_deleted), bans (the live session closes with 4008) and
// unbans; the CLI with --node prints what it prints on Redis; each action
// is logged with the operator's address; then wrong tokens from one
// address are throttled with 429 and Retry-After, counted in /metrics.
func TestModerationAPI(t *testing.T) {
	eachModerationBackend(t, func(t *testing.T, n adminNode) {
		api := n.admin + "/admin/v1"
		adminCall(t, "GET", api+"/reports", "", nil).refused(t, "no token", 401, "unauthorized")
		adminCall(t, "GET", api+"/reports", testAdminToken+"x", nil).refused(t, "a wrong token", 401, "unauthorized")
		big := []byte(`{"note":"` + strings.Repeat("a", 5000) + `"}`)
		adminCall(t, "POST", api+"/users/1/ban", testAdminToken, big).refused(t, "a 5 KB body", 413, "body_too_large")
		adminCall(t, "POST", api+"/users/1/ban", testAdminToken, []byte(`{"nope":1}`)).refused(t, "an unknown member", 400, "bad_request")
		adminCall(t, "POST", api+"/posts/seven/remove", testAdminToken, nil).refused(t, "a bad post id", 400, "bad_request")
		adminCall(t, "GET", api+"/nothing", testAdminToken, nil).refused(t, "an unknown endpoint", 404, "not_found")
		adminCall(t, "POST", api+"/posts/987654/remove", testAdminToken, nil).refused(t, "an unknown post", 404, "post_not_found")
		adminCall(t, "POST", api+"/users/987654/ban", testAdminToken, nil).refused(t, "an unknown user", 404, "user_not_found")
		// The moderation API lives on the admin listener only.
		if a := adminCall(t, "GET", "http://"+n.addr+"/admin/v1/reports", testAdminToken, nil); a.code == 200 {
			t.Fatalf("the public listener served the moderation API: %s", a.raw)
		}

		author, r1, r2, sub := wsDial(t, n.addr), wsDial(t, n.addr), wsDial(t, n.addr), wsDial(t, n.addr)
		for _, w := range []*wsClient{author, r1, r2, sub} {
			w.register()
		}
		sub.send(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0,"deletions":true}`)
		sub.next("subscribe_ack")
		bike := author.publish("Bike")
		golf := author.publish("Golf")
		hostile := `<img src=x onerror="alert(1)">`
		r1.report(bike, "scam", hostile)
		r2.report(bike, "scam", "")
		r1.report(golf, "spam", "posted ten times")

		a := adminCall(t, "GET", api+"/reports?limit=10&texts=5", testAdminToken, nil)
		var q struct {
			Queued   int `json:"queued"`
			QueueMax int `json:"queue_max"`
			Reports  []struct {
				ID        int64          `json:"id"`
				Author    string         `json:"author"`
				Reporters int            `json:"reporters"`
				Reasons   map[string]int `json:"reasons"`
				Title     string         `json:"title"`
				Latest    []struct{ By, Reason, Text string }
			} `json:"reports"`
		}
		if a.code != 200 || json.Unmarshal([]byte(a.raw), &q) != nil {
			t.Fatalf("reports: %d %s", a.code, a.raw)
		}
		if q.Queued != 2 || q.QueueMax != 7 || len(q.Reports) != 2 || q.Reports[0].ID != bike || q.Reports[0].Author != author.id ||
			q.Reports[0].Reporters != 2 || q.Reports[0].Reasons["scam"] != 2 || q.Reports[0].Title != "Bike" ||
			q.Reports[0].Latest[1].Text != hostile || q.Reports[1].ID != golf {
			t.Fatalf("reports: %s", a.raw)
		}
		adminCall(t, "GET", api+"/reports?limit=5000", testAdminToken, nil).refused(t, "limit 5000", 400, "bad_request")

		// The CLI through the API prints what it prints on Redis.
		bin := binary(t)
		cli := func(args ...string) (string, string, error) {
			t.Helper()
			return run(t, bin, append([]string{"moderate", args[0], "--node", n.admin, "--admin-token-file", n.tokenFile}, args[1:]...)...)
		}
		out, errOut, err := cli("reports")
		if err != nil {
			t.Fatalf("reports --node: %v\n%s", err, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || lines[0] != "review queue: 2 of at most 7 reported posts" || !strings.HasPrefix(lines[1], "POST") ||
			strings.Fields(lines[2])[0] != fmt.Sprint(bike) || !strings.Contains(lines[2], "scam:2") {
			t.Fatalf("reports --node:\n%s", out)
		}
		out, _, err = cli("reports", "--json", "--limit", "1")
		var l struct {
			ID      int64 `json:"id"`
			Reasons map[string]int
		}
		if jl := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(jl) != 1 || json.Unmarshal([]byte(jl[0]), &l) != nil ||
			l.ID != bike || l.Reasons["scam"] != 2 {
			t.Fatalf("reports --node --json: %v\n%s", err, out)
		}

		if a := adminCall(t, "POST", api+"/posts/"+fmt.Sprint(golf)+"/dismiss", testAdminToken, nil); a.code != 200 || num(a.body["reporters"]) != 1 {
			t.Fatalf("dismiss: %d %s", a.code, a.raw)
		}
		adminCall(t, "POST", api+"/posts/"+fmt.Sprint(golf)+"/dismiss", testAdminToken, nil).refused(t, "dismiss again", 404, "no_reports")
		if _, errOut, err := cli("dismiss", fmt.Sprint(golf)); err == nil || !strings.Contains(errOut, fmt.Sprintf("post %d has no reports: nothing dismissed", golf)) {
			t.Fatalf("dismiss --node of a post without reports: %v %q", err, errOut)
		}

		out, errOut, err = cli("remove", fmt.Sprint(bike))
		if err != nil || !strings.Contains(out, fmt.Sprintf("removed post %d of user %s (2 reporters)", bike, author.id)) {
			t.Fatalf("remove --node: %v\n%s%s", err, out, errOut)
		}
		if m := sub.next("post_deleted"); num(m["id"]) != bike {
			t.Fatalf("subscriber got %v, want post_deleted %d", m, bike)
		}
		if _, errOut, err := cli("remove", fmt.Sprint(bike)); err == nil || !strings.Contains(errOut, "no post ") {
			t.Fatalf("remove --node again: %v %q", err, errOut)
		}

		// Ban through the API: the author's live session closes with 4008,
		// its posts go; a login is refused; the CLI unbans.
		a = adminCall(t, "POST", api+"/users/"+author.id+"/ban", testAdminToken, []byte(`{"note":"scam ring","remove_posts":true}`))
		if a.code != 200 || a.body["user"] != author.id || a.body["already"] != false || num(a.body["posts_deleted"]) != 1 {
			t.Fatalf("ban: %d %s", a.code, a.raw)
		}
		if code := closeCode(t, author); code != 4008 {
			t.Fatalf("the banned user's live session closed with %d, want 4008", code)
		}
		if m := sub.next("post_deleted"); num(m["id"]) != golf {
			t.Fatalf("subscriber got %v, want post_deleted %d", m, golf)
		}
		l2 := wsDial(t, n.addr)
		l2.send(`{"cmd":"login","user":"` + author.id + `","password":"` + author.pw + `"}`)
		if m := expectCmd(t, l2, "login_ack"); m["result"] != "fail" || m["reason"] != "banned" {
			t.Fatalf("login of the banned user: %v", m)
		}
		out, errOut, err = cli("ban", author.id, "--note", "again")
		if err != nil || !strings.Contains(out, "user "+author.id+" was banned already: ban renewed") {
			t.Fatalf("ban --node again: %v\n%s%s", err, out, errOut)
		}
		if out, errOut, err := cli("unban", author.id); err != nil || strings.TrimSpace(out) != "user "+author.id+" unbanned" {
			t.Fatalf("unban --node: %v\n%s%s", err, out, errOut)
		}
		if out, _, _ := cli("unban", author.id); strings.TrimSpace(out) != "user "+author.id+" was not banned" {
			t.Fatalf("unban --node again: %q", out)
		}
		back := wsDial(t, n.addr)
		back.login(author.id, author.pw)

		// Each action is logged at info with the operator's name and address.
		brokertest.Poll(t, 5*time.Second, "the moderation log lines", func() bool {
			log := n.log.text()
			return strings.Contains(log, "moderation: post removed") && strings.Contains(log, "moderation: user banned") &&
				strings.Contains(log, `"operator": "admin", "addr": "127.0.0.1"`)
		})

		// A wrong token from the CLI: its sentence and a non-zero exit.
		bad := filepath.Join(t.TempDir(), "bad-token")
		os.WriteFile(bad, []byte(strings.Repeat("z", 40)), 0o600)
		if _, errOut, err := run(t, bin, "moderate", "reports", "--node", n.admin, "--admin-token-file", bad); err == nil || !strings.Contains(errOut, "wrong token") {
			t.Fatalf("reports --node with a wrong token: %v %q", err, errOut)
		}
		// Wrong tokens from one address: 10 a minute, then 429 with
		// Retry-After, even for the right token, counted in /metrics.
		var last apiAnswer
		for i := 0; i < 20; i++ {
			last = adminCall(t, "GET", api+"/reports", "wrong-"+fmt.Sprint(i), nil)
			if last.code == 429 {
				break
			}
			last.refused(t, "a wrong token", 401, "unauthorized")
		}
		last.refused(t, "the wrong tokens past the limit", 429, "too_many_failures")
		if ra := last.hdr.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("429 without Retry-After: %v", last.hdr)
		}
		adminCall(t, "GET", api+"/reports", testAdminToken, nil).refused(t, "the right token while throttled", 429, "too_many_failures")
		m := adminCall(t, "GET", n.admin+"/metrics", "", nil)
		if !strings.Contains(m.raw, `occase_admin_refusals_total{reason="too_many_failures"} 2`) ||
			!strings.Contains(m.raw, `occase_moderation_actions_total{action="remove"} 1`) {
			t.Fatalf("metrics lack the refusals or actions:\n%s", grepLines(m.raw, "occase_"))
		}
	})
}

// Starting with the moderation API: a clear one-line refusal and a
// non-zero exit when the token file is missing or short, or when there
// is no admin listener to serve it on; without the flag the endpoints
// answer a JSON 404 saying how to turn them on; the CLI refuses plain
// http to anything but loopback.
func TestModerationAPIOff(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(testAdminToken), 0o600)
	tokenFile := func(content string) string {
		f, err := os.CreateTemp(dir, "tokens")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(content)
		f.Close()
		return f.Name()
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", filepath.Join(dir, "none")}, "--admin-token-file: open "},
		{"short", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", short}, "line 1: the token holds 8 bytes, want at least 32"},
		{"short named", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile("# team\nana " + testAdminToken + "\nbob tooshort")}, "line 3: the token holds 8 bytes"},
		{"bad name", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile("Ana " + testAdminToken)}, "line 1: a name is 1 to 32 of"},
		{"same name", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile("ana " + testAdminToken + "\nana " + otherAdminToken)}, "line 2: the name ana is on line 1 already"},
		{"same token", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile("ana " + testAdminToken + "\nbob " + testAdminToken)}, "line 2: the same token as line 1"},
		{"bare among named", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile("ana " + testAdminToken + "\n" + otherAdminToken)}, "line 2: a bare token is for a file of one token"},
		{"no token", []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile("# nobody yet\n")}, "no token"},
		{"no admin listener", []string{"--admin-token-file", good}, "--admin-token-file needs --admin-addr"},
		{"public url relative", []string{"--public-url", "market.example.com"}, "--public-url \"market.example.com\": want an absolute http or https URL"},
		{"public url scheme", []string{"--public-url", "javascript:alert(1)"}, "want an absolute http or https URL"},
		{"public url query", []string{"--public-url", "https://market.example.com/?a=1"}, "no query or fragment"},
		{"public url fragment", []string{"--public-url", "https://market.example.com/#/x"}, "no query or fragment"},
		{"public url user", []string{"--public-url", "https://u:p@market.example.com"}, "no user or password"},
		{"public url no host", []string{"--public-url", "https:///x"}, "no host"},
	} {
		_, errOut, err := run(t, bin, append([]string{"serve", "--log-format", "console", "--addr", "127.0.0.1:0", "--image-dir", filepath.Join(dir, "img"),
			"--embedded-snapshot", filepath.Join(dir, "e.json")}, c.args...)...)
		if err == nil || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 ||
			strings.Contains(errOut, testAdminToken) || strings.Contains(errOut, otherAdminToken) {
			t.Fatalf("%s: %v, stderr %q, want one line with %q", c.name, err, errOut, c.want)
		}
	}

	aa := freeAddr(t)
	startProc(t, "--role=all", "--admin-addr", aa, "--image-dir", filepath.Join(dir, "images"),
		"--embedded-snapshot", filepath.Join(dir, "embedded.json"))
	for _, p := range []string{"/admin/v1/reports", "/admin/"} {
		a := adminCall(t, "GET", "http://"+aa+p, testAdminToken, nil)
		a.refused(t, "GET "+p+" without --admin-token-file", 404, "moderation_disabled")
		if !strings.Contains(a.body["error"].(string), "--admin-token-file") {
			t.Fatalf("the 404 does not say how to turn moderation on: %s", a.raw)
		}
	}
	// Role img holds no posts or users: the token is accepted, the API
	// says where moderation is served.
	ia := freeAddr(t)
	startProc(t, "--role", "img", "--image-dir", t.TempDir(), "--image-key", testSecret, "--admin-addr", ia, "--admin-token-file", good)
	adminCall(t, "GET", "http://"+ia+"/admin/v1/reports", testAdminToken, nil).refused(t, "role img", 404, "moderation_not_on_this_role")

	if _, errOut, err := run(t, bin, "moderate", "reports", "--node", "http://192.0.2.1:9100", "--admin-token-file", good); err == nil ||
		!strings.Contains(errOut, "use https") {
		t.Fatalf("--node over plain http to a remote address: %v %q", err, errOut)
	}
}

// Removal reasons and the list of bans through the real binary's API, on
// Redis and on the embedded broker: a reason not allowed is 400 with the
// allowed list and removes nothing; a removal with a reason pushes the
// notice to the author's session that asked for notices; the CLI with
// --node does the same (`remove --reason`) and prints what it prints on
// Redis; GET /admin/v1/bans and `bans --node` list a ban, newest first,
// and an unban takes it off.
func TestModerationAPIRemovalReasonsAndBans(t *testing.T) {
	eachModerationBackend(t, func(t *testing.T, n adminNode) {
		api := n.admin + "/admin/v1"
		author := wsDial(t, n.addr)
		author.register()
		author.send(`{"cmd":"notices"}`)
		author.next("notices_ack")
		bike, golf := author.publish("Bike"), author.publish("Golf")

		bad := adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/remove", api, bike), testAdminToken, []byte(`{"reason":"ugly"}`))
		bad.refused(t, "a reason not allowed", 400, "bad_request")
		if !strings.Contains(fmt.Sprint(bad.body["error"]), "spam, scam, prohibited, offensive, other") {
			t.Fatalf("the refusal does not list the reasons: %s", bad.raw)
		}
		adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/remove", api, bike), testAdminToken, []byte(`{"note":"n"}`)).
			refused(t, "a note without a reason", 400, "bad_request")
		a := adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/remove", api, bike), testAdminToken, []byte(`{"reason":"scam","note":"A deposit first? No."}`))
		if a.code != 200 || a.body["told"] != true || a.body["reason"] != "scam" || a.body["author"] != author.id {
			t.Fatalf("remove with a reason: %d %s", a.code, a.raw)
		}
		m := author.next("notice")
		if num(m["post"]) != bike || m["title"] != "Bike" || m["reason"] != "scam" || m["note"] != "A deposit first? No." {
			t.Fatalf("notice %v", m)
		}

		bin := binary(t)
		cli := func(args ...string) (string, string, error) {
			t.Helper()
			return run(t, bin, append([]string{"moderate", args[0], "--node", n.admin, "--admin-token-file", n.tokenFile}, args[1:]...)...)
		}
		if _, errOut, err := cli("remove", fmt.Sprint(golf), "--reason", "ugly"); err == nil || !strings.Contains(errOut, `--reason "ugly": want one of`) {
			t.Fatalf("remove --node --reason ugly: %v %q", err, errOut)
		}
		out, errOut, err := cli("remove", fmt.Sprint(golf), "--reason", "spam")
		if err != nil || !strings.Contains(out, "removed post") || !strings.Contains(out, "user "+author.id+" was told why (spam)") {
			t.Fatalf("remove --node --reason: %v\n%s%s", err, out, errOut)
		}
		if m := author.next("notice"); num(m["post"]) != golf || m["reason"] != "spam" {
			t.Fatalf("second notice %v", m)
		}

		if a := adminCall(t, "GET", api+"/bans", testAdminToken, nil); a.code != 200 || num(a.body["total"]) != 0 {
			t.Fatalf("bans before any: %d %s", a.code, a.raw)
		}
		other := wsDial(t, n.addr)
		other.register()
		for _, u := range []string{other.id, author.id} {
			if a := adminCall(t, "POST", api+"/users/"+u+"/ban", testAdminToken, []byte(`{"note":"ring <b>1</b>"}`)); a.code != 200 || a.body["listed"] != true {
				t.Fatalf("ban %s: %d %s", u, a.code, a.raw)
			}
		}
		a = adminCall(t, "GET", api+"/bans?limit=1", testAdminToken, nil)
		var p struct {
			Bans []struct {
				User string `json:"user"`
				At   int64  `json:"at"`
				Note string `json:"note"`
			} `json:"bans"`
			Next, Total int
		}
		if a.code != 200 || json.Unmarshal([]byte(a.raw), &p) != nil || p.Total != 2 || len(p.Bans) != 1 || p.Bans[0].User != author.id ||
			p.Bans[0].Note != "ring <b>1</b>" || p.Bans[0].At == 0 || p.Next != 1 {
			t.Fatalf("bans?limit=1: %d %s", a.code, a.raw)
		}
		adminCall(t, "GET", api+"/bans?limit=0", testAdminToken, nil).refused(t, "bans limit 0", 400, "bad_request")
		out, errOut, err = cli("bans", "--limit", "1", "--offset", "1")
		if err != nil || !strings.Contains(out, "2 banned users; newest first, from 2") || !strings.Contains(out, other.id) || strings.Contains(out, "more:") {
			t.Fatalf("bans --node: %v\n%s%s", err, out, errOut)
		}
		if out, _, err := cli("unban", author.id); err != nil || !strings.Contains(out, "unbanned") {
			t.Fatalf("unban --node: %v %s", err, out)
		}
		if out, _, err := cli("bans", "--json"); err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"user":"`+other.id+`"`) {
			t.Fatalf("bans --node --json after the unban: %v\n%s", err, out)
		}
	})
}
