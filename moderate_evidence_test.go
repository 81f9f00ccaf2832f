package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// evidenceQueue is the review queue as GET /admin/v1/reports gives it,
// with the fields of a post deleted by its author.
type evidenceQueue struct {
	Queued  int `json:"queued"`
	Reports []struct {
		ID              int64  `json:"id"`
		Author          string `json:"author"`
		Gone            bool   `json:"gone"`
		Hidden          bool   `json:"hidden"`
		DeletedByAuthor bool   `json:"deleted_by_author"`
		Title           string `json:"title"`
		Reporters       int    `json:"reporters"`
		Snapshot        struct {
			ID   int64  `json:"id"`
			From string `json:"from"`
			Body string `json:"body"`
		} `json:"snapshot"`
		Latest []struct {
			By   string `json:"by"`
			Text string `json:"text"`
		} `json:"latest"`
	} `json:"reports"`
}

func readQueue(t *testing.T, api string) evidenceQueue {
	t.Helper()
	a := adminCall(t, "GET", api+"/reports?limit=10&texts=5", testAdminToken, nil)
	var q evidenceQueue
	if a.code != 200 || json.Unmarshal([]byte(a.raw), &q) != nil {
		t.Fatalf("reports: %d %s", a.code, a.raw)
	}
	return q
}

// until reads w's frames up to the first of cmd, failing on any frame
// bad says is wrong on the way.
func (w *wsClient) until(cmd string, bad func(m map[string]any) bool) map[string]any {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := w.recv(time.Until(deadline))
		if err != nil {
			w.t.Fatalf("waiting for %s: %v", cmd, err)
		}
		if bad(m) {
			w.t.Fatalf("unexpected frame %v before %s", m, cmd)
		}
		if m["cmd"] == cmd {
			return m
		}
	}
}

// The author's delete of a reported listing, against the real binary
// (--auto-hide-reports 2): everyone else gets post_deleted, the author
// its usual delete_ack, and the review queue keeps the entry, marked
// deleted_by_author with the snapshot, hidden-then-deleted first (the
// API and the CLI). Remove records it (no second post_deleted; the
// author is told why), dismiss clears it, ban bans its author; an
// account deletion erases its own snapshots. On Redis and the embedded
// broker.
func TestEvidenceKeptEndToEnd(t *testing.T) {
	eachModerationBackendWith(t, []string{"--auto-hide-reports", "2", "--auto-hide-min-age", "0s"}, func(t *testing.T, n adminNode) {
		api := n.admin + "/admin/v1"
		author, watcher, other := wsDial(t, n.addr), wsDial(t, n.addr), wsDial(t, n.addr)
		reporters := []*wsClient{wsDial(t, n.addr), wsDial(t, n.addr)}
		for _, w := range append(reporters, author, watcher, other) {
			w.register()
		}
		author.send(`{"cmd":"notices","since":0}`)
		watcher.send(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0,"deletions":true}`)
		watcher.next("subscribe_ack")
		bike, golf, sofa := author.publish("Bike"), author.publish("Golf"), author.publish("Sofa")
		reporters[0].report(bike, "scam", "deposit first")
		reporters[1].report(bike, "scam", "")
		reporters[0].report(golf, "spam", "")
		reporters[1].report(sofa, "prohibited", "")
		isDeleted := func(id int64) func(m map[string]any) bool {
			return func(m map[string]any) bool { return m["cmd"] == "post_deleted" && num(m["id"]) == id }
		}
		if m := watcher.next("post_deleted"); num(m["id"]) != bike {
			t.Fatalf("the hide: watcher got %v", m)
		}
		for _, id := range []int64{golf, bike, sofa} {
			author.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))
			m := author.next("delete_ack")
			if m["result"] != "ok" || num(m["id"]) != id || len(m) != 3 {
				t.Fatalf("delete_ack %v, want the usual ok", m)
			}
		}
		// The hidden one was gone for the watcher already.
		if m := watcher.next("post_deleted"); num(m["id"]) != golf {
			t.Fatalf("watcher got %v, want post_deleted %d", m, golf)
		}
		if m := watcher.until("post_deleted", isDeleted(bike)); num(m["id"]) != sofa {
			t.Fatalf("watcher got %v, want post_deleted %d", m, sofa)
		}
		if code, _ := httpStatus(t, fmt.Sprintf("http://%s/api/posts/%d", n.addr, golf)); code != 404 {
			t.Fatalf("GET a deleted post: %d", code)
		}

		q := readQueue(t, api)
		if q.Queued != 3 || len(q.Reports) != 3 || q.Reports[0].ID != bike || !q.Reports[0].Hidden {
			t.Fatalf("queue %+v, want 3 with the hidden %d first", q, bike)
		}
		for _, r := range q.Reports {
			if !r.DeletedByAuthor || r.Gone || r.Author != author.id || r.Snapshot.ID != r.ID || r.Snapshot.From != author.id ||
				!strings.Contains(r.Snapshot.Body, r.Title) || r.Title == "" {
				t.Fatalf("queue entry %+v, want marked deleted by its author %s with its snapshot", r, author.id)
			}
		}
		if q.Reports[0].Title != "Bike" || len(q.Reports[0].Latest) != 2 {
			t.Fatalf("the hidden entry %+v, want Bike with its two reports", q.Reports[0])
		}
		if a := adminCall(t, "GET", api+"/reports?limit=10&texts=5", testAdminToken, nil); !strings.Contains(a.raw, `"deleted_by_author":true`) {
			t.Fatalf("the marker is not on the wire: %s", a.raw)
		}
		bin := binary(t)
		cli := func(args ...string) (string, string, error) {
			t.Helper()
			return run(t, bin, append([]string{"moderate", args[0], "--node", n.admin, "--admin-token-file", n.tokenFile}, args[1:]...)...)
		}
		out, errOut, err := cli("reports")
		if err != nil || !strings.Contains(out, "[HIDDEN pending review] [DELETED BY ITS AUTHOR] Bike") ||
			!strings.Contains(out, "[DELETED BY ITS AUTHOR] Golf") {
			t.Fatalf("reports --node: %v\n%s%s", err, out, errOut)
		}

		// Remove: recorded, the author told why, nobody told of a
		// deletion again (the watcher's next frame is a new post).
		a := adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/remove", api, golf), testAdminToken, []byte(`{"reason":"scam","note":"no deposits"}`))
		if a.code != 200 || a.body["deleted_by_author"] != true || a.body["told"] != true || a.body["author"] != author.id {
			t.Fatalf("remove: %d %s", a.code, a.raw)
		}
		if m := author.next("notice"); !strings.Contains(fmt.Sprint(m), "Golf") || !strings.Contains(fmt.Sprint(m), "no deposits") {
			t.Fatalf("the author's notice %v", m)
		}
		lamp := other.publish("Lamp")
		if m := watcher.until("post", isDeleted(golf)); num(frameItems(t, m)[0]["id"]) != lamp {
			t.Fatalf("watcher got %v, want post %d", m, lamp)
		}
		a = adminCall(t, "GET", api+"/log?limit=1", testAdminToken, nil)
		if !strings.Contains(a.raw, `"action":"remove"`) || !strings.Contains(a.raw, "deleted by its author before review") {
			t.Fatalf("the log's removal: %s", a.raw)
		}
		// Dismiss (the CLI): the entry goes, nothing is shown.
		out, errOut, err = cli("dismiss", fmt.Sprint(bike))
		if err != nil || !strings.Contains(out, fmt.Sprintf("dismissed the reports of post %d (2 reporters)", bike)) ||
			!strings.Contains(out, "the copy kept for review is dropped") || strings.Contains(out, "shown again") {
			t.Fatalf("dismiss --node: %v\n%s%s", err, out, errOut)
		}
		if code, _ := httpStatus(t, fmt.Sprintf("http://%s/api/posts/%d", n.addr, bike)); code != 404 {
			t.Fatalf("GET a dismissed deleted post: %d", code)
		}
		// Ban its author, as for a live listing.
		if a := adminCall(t, "POST", api+"/users/"+author.id+"/ban", testAdminToken, []byte(`{"note":"deleted scam"}`)); a.code != 200 {
			t.Fatalf("ban: %d %s", a.code, a.raw)
		}
		if q := readQueue(t, api); q.Queued != 1 || q.Reports[0].ID != sofa || !q.Reports[0].DeletedByAuthor {
			t.Fatalf("queue after remove, dismiss and ban: %+v, want the sofa's entry", q)
		}

		// An account deletion erases its own snapshots, with their
		// reports: the sofa's stays (another author).
		other.send(`{"cmd":"delete","id":` + fmt.Sprint(lamp) + `}`)
		other.next("delete_ack") // unreported: no snapshot
		vase := other.publish("Vase")
		reporters[0].report(vase, "spam", "")
		other.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, vase))
		other.next("delete_ack")
		if q := readQueue(t, api); q.Queued != 2 {
			t.Fatalf("queue %+v, want the sofa's and the vase's", q)
		}
		other.send(`{"cmd":"delete_account","password":"` + other.pw + `"}`)
		if m := other.next("delete_account_ack"); m["result"] != "ok" {
			t.Fatalf("delete_account %v", m)
		}
		if q := readQueue(t, api); q.Queued != 1 || q.Reports[0].ID != sofa {
			t.Fatalf("queue after the account deletion %+v, want only the sofa's", q)
		}
		// The CLI's remove of the last one says what it did.
		out, errOut, err = cli("remove", fmt.Sprint(sofa))
		if err != nil || !strings.Contains(out, fmt.Sprintf("removed post %d of user %s (1 reporter): deleted by its author before review", sofa, author.id)) {
			t.Fatalf("remove --node: %v\n%s%s", err, out, errOut)
		}
		if q := readQueue(t, api); q.Queued != 0 {
			t.Fatalf("queue after the last removal %+v", q)
		}
	})
}

// publishRefused publishes title and expects publish_ack fail with reason.
func (w *wsClient) publishRefused(title, reason string) map[string]any {
	w.t.Helper()
	inner, _ := json.Marshal(map[string]string{"title": title})
	body, _ := json.Marshal(string(inner))
	w.send(`{"cmd":"publish","items":[{"body":` + string(body) + `,"to":[[[0,0,0]],[[0,0,0]]],"features":1,"range_values":[]}]}`)
	m := w.next("publish_ack")
	if m["result"] != "fail" || m["reason"] != reason {
		w.t.Fatalf("publish_ack %v, want fail %s", m, reason)
	}
	return m
}

// Publishing while under review, against the real binary
// (--auto-hide-reports 2): once a listing of the author's is hidden, its
// publishes are refused under_review (with the sentence, on a connection
// that stays open, counted), also after the author deleted the hidden
// listing; a dismissal of the last such listing, or a removal, lets the
// author publish again; two hidden listings keep it waiting until both
// went; other users publish all along. On Redis and the embedded broker.
func TestUnderReviewEndToEnd(t *testing.T) {
	eachModerationBackendWith(t, []string{"--auto-hide-reports", "2", "--auto-hide-min-age", "0s"}, func(t *testing.T, n adminNode) {
		api := n.admin + "/admin/v1"
		author, other := wsDial(t, n.addr), wsDial(t, n.addr)
		reporters := []*wsClient{wsDial(t, n.addr), wsDial(t, n.addr)}
		for _, w := range append(reporters, author, other) {
			w.register()
		}
		hide := func(id int64) {
			t.Helper()
			reporters[0].report(id, "scam", "")
			reporters[1].report(id, "scam", "")
		}
		bike, golf, sofa := author.publish("Bike"), author.publish("Golf"), author.publish("Sofa")
		hide(bike)
		m := author.publishRefused("Bike again", "under_review")
		if d, _ := m["detail"].(string); d != "a listing of yours is under review; you can publish again once a moderator has looked at it" {
			t.Fatalf("the refusal's words: %v", m)
		}
		other.publish("Lamp") // others are not held
		author.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, bike))
		if m := author.next("delete_ack"); m["result"] != "ok" {
			t.Fatalf("delete_ack %v", m)
		}
		author.publishRefused("Bike, deleted and republished", "under_review")
		if a := adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/dismiss", api, bike), testAdminToken, nil); a.code != 200 {
			t.Fatalf("dismiss: %d %s", a.code, a.raw)
		}
		author.publish("Kettle")

		// Two hidden: one removed, the other still holds; its removal
		// (a live listing) releases. New reporters: the dismissal made
		// the first two distrusted.
		reporters = []*wsClient{wsDial(t, n.addr), wsDial(t, n.addr)}
		for _, w := range reporters {
			w.register()
		}
		hide(golf)
		hide(sofa)
		if a := adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/remove", api, golf), testAdminToken, []byte(`{}`)); a.code != 200 {
			t.Fatalf("remove: %d %s", a.code, a.raw)
		}
		author.publishRefused("Still waiting", "under_review")
		if a := adminCall(t, "POST", fmt.Sprintf("%s/posts/%d/remove", api, sofa), testAdminToken, []byte(`{}`)); a.code != 200 {
			t.Fatalf("remove: %d %s", a.code, a.raw)
		}
		author.publish("Mirror")
		if m := adminCall(t, "GET", n.admin+"/metrics", "", nil); !strings.Contains(m.raw, "occase_posts_refused_under_review_total 3\n") {
			t.Fatalf("metrics: %s", grepLines(m.raw, "occase_posts_refused"))
		}
	})
}
