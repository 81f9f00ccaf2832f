package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// `occase moderate ban|unban`, the real binary against the Redis of two
// real nodes: an unknown user is a clear error and a non-zero exit; a ban
// (flags after the id, as an operator types them) closes the user's live
// session on node 1 with 4008, stores the note, and with --remove-posts
// deletes the user's posts so that a subscriber on node 2 gets
// post_deleted for each while another user's post stays; a login is then
// refused with banned and 4008; unban lets it in again.
func TestModerateBanCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, redisAddr string) {
		args := []string{"--role=db", "--redis", redisAddr, "--secret", testSecret}
		n1, n2 := startProc(t, args...), startProc(t, args...)
		bin := binary(t)
		moderate := func(extra ...string) (string, string, error) {
			t.Helper()
			return run(t, bin, append(append([]string{"moderate"}, extra...), "--redis", redisAddr, "--log-format", "json")...)
		}
		bc := brokertest.Open(t, broker.Options{Addrs: []string{redisAddr}, Prefix: "occase:"})

		if out, errOut, err := moderate("ban", "999999"); err == nil || !strings.Contains(errOut, "no user 999999") {
			t.Fatalf("ban of an unknown user: err %v\nstdout %s\nstderr %s", err, out, errOut)
		}
		// Flags before the id work as well as after it.
		if _, errOut, err := run(t, bin, "moderate", "unban", "--redis", redisAddr, "--log-format", "json", "999999"); err == nil || !strings.Contains(errOut, "no user 999999") {
			t.Fatalf("unban of an unknown user: err %v\nstderr %s", err, errOut)
		}

		a := wsDial(t, n1.addr)
		a.register()
		bob := wsDial(t, n2.addr)
		bob.register()
		s := wsDial(t, n2.addr)
		s.register()
		publish := func(w *wsClient) int64 {
			t.Helper()
			w.send(`{"cmd":"publish","items":[{"body":"{\"msg\":\"Golf\"}","to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`)
			m := expectCmd(t, w, "publish_ack")
			if m["result"] != "ok" {
				t.Fatalf("publish: %v", m)
			}
			return num(m["id"])
		}
		ids := map[int64]bool{publish(a): true, publish(a): true}
		keep := publish(bob)
		s.send(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0,"ranges":[],"deletions":true}`)
		expectCmd(t, s, "subscribe_ack")
		for seen := 0; seen < 3; {
			m := expectCmd(t, s, "post")
			items, _ := m["items"].([]any)
			seen += len(items)
		}

		out, errOut, err := moderate("ban", a.id, "--remove-posts", "--note", "spam, report 12")
		if err != nil {
			t.Fatalf("ban: %v\n%s\n%s", err, out, errOut)
		}
		if !strings.Contains(out, "user "+a.id+" banned") || !strings.Contains(out, "2 posts deleted") {
			t.Fatalf("ban output: %s", out)
		}
		if code := closeCode(t, a); code != 4008 {
			t.Fatalf("the live session closed with %d, want 4008", code)
		}
		gone := map[int64]bool{}
		for len(gone) < 2 {
			gone[num(expectCmd(t, s, "post_deleted")["id"])] = true
		}
		for id := range ids {
			if !gone[id] {
				t.Fatalf("post_deleted for %v, want %v", gone, ids)
			}
		}
		if ban, err := bc.BanOf(context.Background(), a.id); err != nil || ban.At == 0 || ban.Note != "spam, report 12" {
			t.Fatalf("the stored ban: %+v %v", ban, err)
		}
		// The list of bans, as JSON lines and as a table.
		out, errOut, err = moderate("bans", "--json")
		var line struct {
			User, Note, When string
			At               int64
		}
		if err != nil || json.Unmarshal([]byte(out), &line) != nil || line.User != a.id || line.Note != "spam, report 12" || line.At == 0 || line.When == "" {
			t.Fatalf("bans --json: %v %+v\n%s\n%s", err, line, out, errOut)
		}
		if out, _, err := moderate("bans", "--limit", "1"); err != nil || !strings.Contains(out, "1 banned users") || !strings.Contains(out, a.id) {
			t.Fatalf("bans: %v\n%s", err, out)
		}
		if _, errOut, err := moderate("bans", "--limit", "0"); err == nil || !strings.Contains(errOut, "--limit 0") {
			t.Fatalf("bans --limit 0: %v %s", err, errOut)
		}
		if left, err := bc.PostsOf(context.Background(), a.id); err != nil || len(left) != 0 {
			t.Fatalf("posts left: %v %v", left, err)
		}
		if left, _ := bc.PostsOf(context.Background(), bob.id); len(left) != 1 || int64(left[0]) != keep {
			t.Fatalf("bob's posts: %v, want [%d]", left, keep)
		}

		l := wsDial(t, n2.addr)
		l.send(`{"cmd":"login","user":"` + a.id + `","password":"` + a.pw + `"}`)
		if m := expectCmd(t, l, "login_ack"); m["result"] != "fail" || m["reason"] != "banned" {
			t.Fatalf("login of the banned user: %v", m)
		}
		if code := closeCode(t, l); code != 4008 {
			t.Fatalf("the refused login closed with %d, want 4008", code)
		}

		if out, errOut, err := moderate("unban", a.id); err != nil || !strings.Contains(out, "user "+a.id+" unbanned") {
			t.Fatalf("unban: %v\n%s\n%s", err, out, errOut)
		}
		if out, _, err := moderate("bans"); err != nil || strings.TrimSpace(out) != "no banned users" {
			t.Fatalf("bans after the unban: %v\n%s", err, out)
		}
		back := wsDial(t, n1.addr)
		back.login(a.id, a.pw)
	})
}

func expectCmd(t *testing.T, w *wsClient, cmd string) map[string]any {
	t.Helper()
	m, err := w.recv(10 * time.Second)
	if err != nil || m["cmd"] != cmd {
		t.Fatalf("got %v %v, want cmd %s", m, err, cmd)
	}
	return m
}

func closeCode(t *testing.T, w *wsClient) websocket.StatusCode {
	t.Helper()
	for {
		_, err := w.recv(10 * time.Second)
		if err != nil {
			if code := websocket.CloseStatus(err); code != -1 {
				return code
			}
			t.Fatalf("the connection ended without a close frame: %v", err)
		}
	}
}

// A ban whose list write fails (the CLI's Redis user may not touch the
// {bans} keys, as a real server's ACL makes it), the real binary: the
// ban holds (the live session closes with 4008), --remove-posts still
// deletes the posts, the command prints both and ends with "run the
// same command again" and exit status 1; the same command run with a
// user that may write the list lists it.
func TestModerateBanNotListed(t *testing.T) {
	r := brokertest.StartRedis(t)
	n := startProc(t, "--role=db", "--redis", r.Addr, "--secret", testSecret)
	// Every key of the node's prefix but those of the {bans} slot.
	r.ACLUser(t, "nolist", "occase:[^{]*", "occase:{posts}*")
	a := wsDial(t, n.addr)
	a.register()
	a.publish("Bike")
	bin := binary(t)
	out, errOut, err := run(t, bin, "moderate", "ban", a.id, "--remove-posts", "--redis", r.Addr, "--redis-user", "nolist", "--redis-password", "pw")
	if err == nil || !strings.Contains(out, "user "+a.id+" banned, sessions closed") || !strings.Contains(out, "user "+a.id+": 1 posts deleted") ||
		!strings.Contains(errOut, "user "+a.id+" is banned but not on the list of bans: run the same command again") {
		t.Fatalf("ban without the list: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	if code := closeCode(t, a); code != 4008 {
		t.Fatalf("the live session closed with %d, want 4008: the ban must hold", code)
	}
	if out, _, err := run(t, bin, "moderate", "bans", "--redis", r.Addr); err != nil || !strings.Contains(out, "no banned users") {
		t.Fatalf("bans before the rerun: %v\n%s", err, out)
	}
	if out, errOut, err := run(t, bin, "moderate", "ban", a.id, "--redis", r.Addr); err != nil || !strings.Contains(out, "was banned already") {
		t.Fatalf("the rerun: %v\n%s%s", err, out, errOut)
	}
	if out, _, err := run(t, bin, "moderate", "bans", "--redis", r.Addr); err != nil || !strings.Contains(out, "1 banned users") || !strings.Contains(out, a.id) {
		t.Fatalf("bans after the rerun: %v\n%s", err, out)
	}
}

// `occase moderate bans --rebuild`, the real binary on a real Redis: bans
// made the old way (the fields ban and bnote of the user's hash, as the
// ban script of before the list set them) are not listed until the
// rebuild lists them, with their time and note; the rebuild prints its
// counts, and a second one adds nothing.
func TestModerateBansRebuild(t *testing.T) {
	r := brokertest.StartRedis(t)
	ctx := context.Background()
	b := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: "occase:"})
	raw := brokertest.Raw(t, r.Addr)
	var users []string
	for range 3 {
		u, err := b.CreateUser(ctx, "d", 1)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	for i, u := range users[:2] {
		if err := raw.Do(ctx, raw.B().Hset().Key("occase:u:{"+u+"}").FieldValue().
			FieldValue("ban", "170000000"+string(rune('0'+i))+"000").FieldValue("bnote", "old note "+u).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	bin := binary(t)
	if out, _, err := run(t, bin, "moderate", "bans", "--redis", r.Addr); err != nil || !strings.Contains(out, "no banned users") {
		t.Fatalf("bans before the rebuild: %v\n%s", err, out)
	}
	out, errOut, err := run(t, bin, "moderate", "bans", "--rebuild", "--redis", r.Addr)
	if err != nil || !strings.Contains(out, "3 users scanned, 2 banned: 2 added to the list, 0 listed already") {
		t.Fatalf("rebuild: %v\n%s%s", err, out, errOut)
	}
	out, _, err = run(t, bin, "moderate", "bans", "--redis", r.Addr)
	if err != nil || !strings.Contains(out, "2 banned users") ||
		!strings.Contains(out, users[0]+"  ") || !strings.Contains(out, "2023-11-14 22:13:20  old note "+users[0]) ||
		!strings.Contains(out, "2023-11-14 22:13:21  old note "+users[1]) || strings.Index(out, users[1]) > strings.Index(out, "old note "+users[0]) {
		t.Fatalf("bans after the rebuild:\n%s", out)
	}
	if out, _, err := run(t, bin, "moderate", "bans", "--rebuild", "--json", "--redis", r.Addr); err != nil ||
		!strings.Contains(out, `"scanned":3,"banned":2,"added":0,"listed":2`) {
		t.Fatalf("second rebuild: %v\n%s", err, out)
	}
	if _, errOut, err := run(t, bin, "moderate", "bans", "--rebuild", "--limit", "5", "--redis", r.Addr); err == nil || !strings.Contains(errOut, "takes no --limit") {
		t.Fatalf("--rebuild with --limit: %v\n%s", err, errOut)
	}
	if out, _, err := run(t, bin, "moderate", "log", "--limit", "2", "--redis", r.Addr); err != nil || strings.Count(out, "rebuild  bans") != 2 {
		t.Fatalf("the moderation log:\n%s", out)
	}
}
