package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// next returns the next frame whose cmd is cmd, skipping others (a
// publisher's echo of its own post, live posts), failing after 10 s.
func (w *wsClient) next(cmd string) map[string]any {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := w.recv(time.Until(deadline))
		if err != nil {
			w.t.Fatalf("waiting for %s: %v", cmd, err)
		}
		if m["cmd"] == cmd {
			return m
		}
	}
}

func (w *wsClient) publish(title string) int64 {
	w.t.Helper()
	inner, _ := json.Marshal(map[string]string{"title": title, "msg": "as new, 2016"})
	body, _ := json.Marshal(string(inner))
	w.send(`{"cmd":"publish","items":[{"body":` + string(body) + `,"to":[[[0,0,0]],[[0,0,0]]],"features":1,"range_values":[]}]}`)
	m := w.next("publish_ack")
	if m["result"] != "ok" {
		w.t.Fatalf("publish_ack %v", m)
	}
	return num(m["id"])
}

func (w *wsClient) report(id int64, reason, text string) {
	w.t.Helper()
	t, _ := json.Marshal(text)
	w.send(fmt.Sprintf(`{"cmd":"report","id":%d,"reason":%q,"text":%s}`, id, reason, t))
	if m := w.next("report_ack"); m["result"] != "ok" || num(m["id"]) != id {
		w.t.Fatalf("report_ack %v", m)
	}
}

// The real binary, end to end: users report posts on a node over
// WebSockets; `occase moderate reports` lists them most reported first
// (table and JSON lines), `dismiss` clears a post's reports and keeps the
// post, `remove` deletes a post so that a subscriber of the node gets
// post_deleted; an unknown post fails with a clear message and a non-zero
// exit. On a real Redis and on the embedded server (reached by its
// address, as a lone Redis).
func TestModerateReportsCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, redisAddr string) {
		n := startProc(t, "--role=db", "--redis", redisAddr, "--secret", testSecret, "--report-queue-max", "2")
		author, r1, r2, sub := wsDial(t, n.addr), wsDial(t, n.addr), wsDial(t, n.addr), wsDial(t, n.addr)
		for _, w := range []*wsClient{author, r1, r2, sub} {
			w.register()
		}
		sub.send(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0,"deletions":true}`)
		sub.next("subscribe_ack")
		bike := author.publish("Bike")
		golf := author.publish("Golf \x1b[2J")
		r1.report(bike, "scam", "asks for a deposit")
		r2.report(bike, "scam", "")
		r1.report(golf, "spam", "posted\nten times")
		for _, id := range []int64{bike, golf} {
			if m := sub.next("post"); num(m["items"].([]any)[0].(map[string]any)["id"]) != id {
				t.Fatalf("subscriber got %v, want post %d", m, id)
			}
		}

		bin := binary(t)
		moderate := func(args ...string) (string, string, error) {
			t.Helper()
			sub := args[0]
			return run(t, bin, append([]string{"moderate", sub, "--redis", redisAddr}, args[1:]...)...)
		}
		// The node runs with --report-queue-max 2: the queue is full, and
		// the command, told the same, says so above the table.
		out, errOut, err := moderate("reports", "--report-queue-max", "2")
		if err != nil {
			t.Fatalf("reports: %v\n%s", err, errOut)
		}
		t.Logf("reports:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "review queue: 2 of at most 2 reported posts; FULL: ") ||
			!strings.HasPrefix(lines[1], "POST") {
			t.Fatalf("reports table:\n%s", out)
		}
		lines = lines[1:]
		first, second := strings.Fields(lines[1]), strings.Fields(lines[2])
		if first[0] != fmt.Sprint(bike) || first[1] != author.id || first[2] != "2" || first[3] != "scam:2" ||
			!strings.Contains(lines[1], "Bike: as new, 2016") || !strings.Contains(lines[1], "scam: asks for a deposit") {
			t.Fatalf("first row %q, want post %d of %s, 2 reporters, scam:2, its title and text", lines[1], bike, author.id)
		}
		if second[0] != fmt.Sprint(golf) || second[2] != "1" || !strings.Contains(lines[2], "Golf  [2J: as new") ||
			!strings.Contains(lines[2], "spam: posted ten times") {
			t.Fatalf("second row %q", lines[2])
		}
		// The default max is what the command says when not told.
		if out, _, _ := moderate("reports"); !strings.HasPrefix(out, "review queue: 2 of at most 5000 reported posts\n") {
			t.Fatalf("reports without --report-queue-max:\n%s", out)
		}
		if strings.ContainsAny(out, "\x1b") {
			t.Fatalf("a control character from a post reached the operator's terminal: %q", out)
		}

		out, _, err = moderate("reports", "--json", "--limit", "1")
		if err != nil {
			t.Fatal(err)
		}
		var l struct {
			ID        int64          `json:"id"`
			Author    string         `json:"author"`
			Reporters int            `json:"reporters"`
			Reasons   map[string]int `json:"reasons"`
			Title     string         `json:"title"`
			Latest    []struct {
				By, Reason, Text string
				At               int64
			} `json:"latest"`
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &l) != nil {
			t.Fatalf("reports --json --limit 1:\n%s", out)
		}
		if l.ID != bike || l.Author != author.id || l.Reporters != 2 || l.Reasons["scam"] != 2 || l.Title != "Bike" ||
			len(l.Latest) != 2 || l.Latest[0].By != r2.id || l.Latest[1].Text != "asks for a deposit" || l.Latest[1].At == 0 {
			t.Fatalf("JSON line %+v", l)
		}

		if out, errOut, err := moderate("dismiss", fmt.Sprint(golf)); err != nil || !strings.Contains(out, "dismissed the reports of post") {
			t.Fatalf("dismiss: %v\n%s%s", err, out, errOut)
		}
		if _, errOut, err := moderate("dismiss", fmt.Sprint(golf)); err == nil || !strings.Contains(errOut, "has no reports") {
			t.Fatalf("dismiss again: %v %q, want a failure saying there is nothing to dismiss", err, errOut)
		}

		out, errOut, err = moderate("remove", fmt.Sprint(bike))
		if err != nil || !strings.Contains(out, fmt.Sprintf("removed post %d of user %s (2 reporters)", bike, author.id)) {
			t.Fatalf("remove: %v\n%s%s", err, out, errOut)
		}
		if m := sub.next("post_deleted"); num(m["id"]) != bike {
			t.Fatalf("subscriber got %v, want post_deleted %d", m, bike)
		}
		// The dismissed post stays, and reporting it again queues it again.
		r2.report(golf, "offensive", "")
		out, _, _ = moderate("reports")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || strings.Fields(lines[2])[0] != fmt.Sprint(golf) {
			t.Fatalf("reports after remove and dismiss:\n%s", out)
		}

		for _, args := range [][]string{{"remove", fmt.Sprint(bike)}, {"remove", "987654"}} {
			_, errOut, err := moderate(args...)
			if err == nil || !strings.Contains(errOut, "no post ") {
				t.Fatalf("%v: %v %q, want a non-zero exit saying there is no such post", args, err, errOut)
			}
		}
		if _, errOut, err := moderate("remove", "seven"); err == nil || !strings.Contains(errOut, "not a post id") {
			t.Fatalf("remove seven: %v %q", err, errOut)
		}
		out, _, err = moderate("dismiss", fmt.Sprint(golf))
		if err != nil {
			t.Fatal(err)
		}
		if out, _, _ := moderate("reports"); strings.TrimSpace(out) != "no reported posts (the review queue holds at most 5000)" {
			t.Fatalf("reports when none: %q", out)
		}
	})
	// Without a reachable Redis, or with the embedded server named, the
	// command fails and says why, in one line (not a node's "retrying in
	// the background" and then "not connected to redis yet").
	refusedAtStart(t, "open Redis: connect to redis 127.0.0.1:1:", "moderate", "reports", "--redis", "127.0.0.1:1", "--redis-timeout", "500ms")
	if _, errOut, err := run(t, binary(t), "moderate", "reports", "--redis", "embedded"); err == nil || !strings.Contains(errOut, "needs --redis") {
		t.Fatalf("reports on the embedded server: %v %q", err, errOut)
	}
	// The review queue is always bounded: a node does not start without.
	if _, errOut, err := run(t, binary(t), "serve", "--redis", "embedded", "--report-queue-max", "0"); err == nil ||
		!strings.Contains(errOut, "--report-queue-max 0: want at least 1") {
		t.Fatalf("serve --report-queue-max 0: %v %q, want a refusal", err, errOut)
	}
}
