package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

// items returns the posts of a post frame.
func frameItems(t *testing.T, m map[string]any) []map[string]any {
	t.Helper()
	raw, _ := m["items"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, it := range raw {
		p, ok := it.(map[string]any)
		if !ok {
			t.Fatalf("a post frame's item is not an object: %v", m)
		}
		out = append(out, p)
	}
	return out
}

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// The real binary with --auto-hide-reports 3: the third distinct
// reporter's report hides the post from everyone but its author, over
// real WebSockets (a subscriber with deletions gets post_deleted, the
// author's own subscription the post marked under_review, a new
// subscriber's catch-up lacks it) and HTTP (404); the moderation API
// lists it hidden, the CLI marks it, the moderation log has the hide by
// "auto", the metric counts it; `occase moderate dismiss` through the
// API shows it again: the subscriber gets it back, the author's copy
// loses the marker, HTTP serves it. On Redis and on the embedded broker.
func TestAutoHideEndToEnd(t *testing.T) {
	eachModerationBackendWith(t, []string{"--auto-hide-reports", "3", "--auto-hide-min-age", "0s"}, func(t *testing.T, n adminNode) {
		api := n.admin + "/admin/v1"
		// One connection per user: the author's publishes and its
		// subscription share one.
		author, watcher := wsDial(t, n.addr), wsDial(t, n.addr)
		authorSub := author
		author.register()
		reporters := []*wsClient{wsDial(t, n.addr), wsDial(t, n.addr), wsDial(t, n.addr)}
		for _, w := range append(reporters, watcher) {
			w.register()
		}
		for _, w := range []*wsClient{watcher, authorSub} {
			w.send(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0,"deletions":true}`)
			w.next("subscribe_ack")
		}
		bike := author.publish("Bike")
		golf := author.publish("Golf")
		for _, want := range []int64{bike, golf} {
			if m := watcher.next("post"); num(frameItems(t, m)[0]["id"]) != want {
				t.Fatalf("live post %v, want %d", m, want)
			}
		}
		// The author's echo of its second publish (the first one's went
		// by while publish waited for the second ack).
		if m := author.next("post"); num(frameItems(t, m)[0]["id"]) != golf {
			t.Fatalf("the author's echo %v, want %d", m, golf)
		}
		reporters[0].report(golf, "spam", "")
		reporters[0].report(bike, "scam", "deposit first")
		reporters[1].report(bike, "scam", "")
		reporters[1].report(bike, "scam", "the same reporter again")
		if code, _ := httpStatus(t, fmt.Sprintf("http://%s/api/posts/%d", n.addr, bike)); code != 200 {
			t.Fatalf("GET the post with two reporters: %d", code)
		}
		reporters[2].report(bike, "prohibited", "")

		if m := watcher.next("post_deleted"); num(m["id"]) != bike {
			t.Fatalf("watcher got %v, want post_deleted %d", m, bike)
		}
		m := authorSub.next("post")
		if it := frameItems(t, m); len(it) != 1 || num(it[0]["id"]) != bike || it[0]["under_review"] != true {
			t.Fatalf("the author's subscription got %v, want post %d under review", m, bike)
		}
		if code, body := httpStatus(t, fmt.Sprintf("http://%s/api/posts/%d", n.addr, bike)); code != 404 {
			t.Fatalf("GET a hidden post: %d %s", code, body)
		}
		if _, body := httpStatus(t, "http://"+n.addr+"/api/posts"); strings.Contains(body, fmt.Sprintf(`"id":%d,`, bike)) ||
			!strings.Contains(body, fmt.Sprintf(`"id":%d,`, golf)) {
			t.Fatalf("GET /api/posts: %s", body)
		}
		fresh := wsDial(t, n.addr)
		fresh.register()
		fresh.send(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0}`)
		fresh.next("subscribe_ack")
		if it := frameItems(t, fresh.next("post")); len(it) != 1 || num(it[0]["id"]) != golf {
			t.Fatalf("a new subscriber's catch-up %v, want only post %d", it, golf)
		}
		// The author's own new subscription still has it, marked.
		mine := author
		mine.send(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0,"deletions":true}`)
		mine.next("subscribe_ack")
		if it := frameItems(t, mine.next("post")); len(it) != 1 || num(it[0]["id"]) != golf {
			t.Fatalf("the author's catch-up %v, want post %d first", it, golf)
		}
		if it := frameItems(t, mine.next("post")); len(it) != 1 || num(it[0]["id"]) != bike || it[0]["under_review"] != true {
			t.Fatalf("the author's catch-up %v, want its hidden post %d marked", it, bike)
		}

		a := adminCall(t, "GET", api+"/reports?limit=10&texts=5", testAdminToken, nil)
		var q struct {
			Reports []struct {
				ID        int64 `json:"id"`
				Hidden    bool  `json:"hidden"`
				Reporters int   `json:"reporters"`
			} `json:"reports"`
		}
		if a.code != 200 || json.Unmarshal([]byte(a.raw), &q) != nil || len(q.Reports) != 2 ||
			q.Reports[0].ID != bike || !q.Reports[0].Hidden || q.Reports[0].Reporters != 3 || q.Reports[1].Hidden {
			t.Fatalf("reports: %d %s", a.code, a.raw)
		}
		bin := binary(t)
		cli := func(args ...string) (string, string, error) {
			t.Helper()
			return run(t, bin, append([]string{"moderate", args[0], "--node", n.admin, "--admin-token-file", n.tokenFile}, args[1:]...)...)
		}
		out, errOut, err := cli("reports")
		if err != nil || !strings.Contains(out, "[HIDDEN pending review] Bike") {
			t.Fatalf("reports --node: %v\n%s%s", err, out, errOut)
		}
		a = adminCall(t, "GET", api+"/log?limit=10", testAdminToken, nil)
		if a.code != 200 || !strings.Contains(a.raw, fmt.Sprintf(`"by":"auto","action":"hide","target":"%d","result":"ok","detail":"3 reporters; --auto-hide-reports 3"`, bike)) {
			t.Fatalf("the moderation log lacks the automatic hide: %s", a.raw)
		}
		if m := adminCall(t, "GET", n.admin+"/metrics", "", nil); !strings.Contains(m.raw, "occase_posts_auto_hidden_total 1\n") {
			t.Fatalf("metrics: %s", grepLines(m.raw, "occase_posts_auto"))
		}

		out, errOut, err = cli("dismiss", fmt.Sprint(bike))
		if err != nil || !strings.Contains(out, fmt.Sprintf("dismissed the reports of post %d (3 reporters); the post was hidden pending review and is shown again", bike)) {
			t.Fatalf("dismiss --node: %v\n%s%s", err, out, errOut)
		}
		m = watcher.next("post")
		if it := frameItems(t, m); len(it) != 1 || num(it[0]["id"]) != bike || it[0]["under_review"] != nil {
			t.Fatalf("watcher got %v after the dismissal, want post %d", m, bike)
		}
		m = authorSub.next("post")
		if it := frameItems(t, m); len(it) != 1 || num(it[0]["id"]) != bike || it[0]["under_review"] != nil {
			t.Fatalf("the author got %v after the dismissal, want post %d unmarked", m, bike)
		}
		if code, _ := httpStatus(t, fmt.Sprintf("http://%s/api/posts/%d", n.addr, bike)); code != 200 {
			t.Fatalf("GET the post shown again: %d", code)
		}
		a = adminCall(t, "GET", api+"/log?limit=1", testAdminToken, nil)
		if !strings.Contains(a.raw, `"action":"dismiss"`) || !strings.Contains(a.raw, "shown again") {
			t.Fatalf("the log's dismissal: %s", a.raw)
		}
	})
}

// A threshold the reporters kept per post cannot reach, a negative one
// and a negative age: the node does not start, and says why.
func TestAutoHideFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auto-hide-reports", "101"}, "--auto-hide-reports 101: want 0 (off) to --report-reporters (100)"},
		{[]string{"--auto-hide-reports", "20", "--report-reporters", "10"}, "--auto-hide-reports 20: want 0 (off) to --report-reporters (10)"},
		{[]string{"--auto-hide-reports", "-1"}, "--auto-hide-reports -1: want 0 (off)"},
		{[]string{"--auto-hide-min-age", "-1h"}, "--auto-hide-min-age must not be negative"},
	} {
		if _, errOut, err := run(t, binary(t), append([]string{"serve", "--redis", "embedded"}, tc.args...)...); err == nil ||
			!strings.Contains(errOut, tc.want) {
			t.Fatalf("serve %v: %v %q, want %q", tc.args, err, errOut, tc.want)
		}
	}
}

// Settings that let one person hide any listing start, but say so at
// warn level: a threshold under 3 (one person with two accounts) and an
// age of 0 (fresh accounts count: registering the threshold's worth of
// accounts hides a listing at once). The default says nothing.
func TestAutoHideWeakSettingsWarned(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--auto-hide-reports", "0", "--auto-hide-min-age", "0"}, ""},
		{[]string{"--auto-hide-reports", "2"}, "--auto-hide-reports 2: one person with 2 accounts"},
		{[]string{"--auto-hide-min-age", "0"}, "--auto-hide-min-age 0: accounts registered now count"},
	} {
		for _, store := range []string{"redis", "embedded"} {
			dir := t.TempDir()
			args := []string{"--role=all", "--redis", "embedded", "--embedded-snapshot", filepath.Join(dir, "e.json"),
				"--image-dir", filepath.Join(dir, "images")}
			if store == "redis" {
				args = []string{"--role=db", "--redis", brokertest.StartRedis(t).Addr}
			}
			n := startProc(t, append(append(args, "--secret", testSecret), tc.args...)...)
			got := n.log.text()
			if tc.want == "" && strings.Contains(got, "auto-hide") || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("%s %v: log %s, want %q", store, tc.args, got, tc.want)
			}
		}
	}
}
