package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// `occase moderate remove <post> --reason ... --note ...`, the real binary
// against the Redis of a real node: a bad reason, a note without a reason
// or a note too long are refused before anything is done; a removal with a
// reason pushes a notice to the author's session that asked for notices
// (title from the post, the reason and the note as given) and counts it
// in the author's next login_ack; a removal without one tells nothing.
func TestModerateRemoveWithReason(t *testing.T) {
	eachBackend(t, func(t *testing.T, redisAddr string) {
		n := startProc(t, "--role=db", "--redis", redisAddr, "--secret", testSecret)
		author := wsDial(t, n.addr)
		author.register()
		bike, golf := author.publish("Bike"), author.publish("Golf")
		author.send(`{"cmd":"notices"}`)
		if m := author.next("notices_ack"); fmt.Sprint(m["notices"]) != "[]" {
			t.Fatalf("notices before any: %v", m)
		}
		bin := binary(t)
		moderate := func(args ...string) (string, string, error) {
			t.Helper()
			return run(t, bin, append([]string{"moderate", args[0], "--redis", redisAddr}, args[1:]...)...)
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"remove", fmt.Sprint(bike), "--reason", "ugly"}, `--reason "ugly": want one of spam, scam, prohibited, offensive, other`},
			{[]string{"remove", fmt.Sprint(bike), "--note", "why"}, "--note is for the author's notice: give --reason too"},
			{[]string{"remove", fmt.Sprint(bike), "--reason", "spam", "--note", strings.Repeat("n", 281)}, "--note: at most 280 bytes"},
			{[]string{"remove", fmt.Sprint(bike), "--reason", "spam", "--note", "look \x1b[2J"}, "control or formatting characters"},
		} {
			if _, errOut, err := moderate(tc.args...); err == nil || !strings.Contains(errOut, tc.want) {
				t.Fatalf("%v: %v %q, want %q", tc.args, err, errOut, tc.want)
			}
		}

		out, errOut, err := moderate("remove", fmt.Sprint(bike), "--reason", "scam", "--note", "asks for a deposit\nof 100 €")
		if err != nil || !strings.Contains(out, "removed post") || !strings.Contains(out, "user "+author.id+" was told why (scam)") {
			t.Fatalf("remove --reason: %v\n%s%s", err, out, errOut)
		}
		m := author.next("notice")
		if num(m["id"]) != 1 || m["kind"] != "post_removed" || num(m["post"]) != bike || m["title"] != "Bike" ||
			m["reason"] != "scam" || m["note"] != "asks for a deposit\nof 100 €" || num(m["at"]) == 0 {
			t.Fatalf("notice %v", m)
		}
		out, errOut, err = moderate("remove", fmt.Sprint(golf))
		if err != nil || strings.Contains(out, "told") {
			t.Fatalf("remove without a reason: %v\n%s%s", err, out, errOut)
		}
		again := wsDial(t, n.addr)
		again.send(`{"cmd":"login","user":"` + author.id + `","password":"` + author.pw + `"}`)
		if m := again.next("login_ack"); m["result"] != "ok" || num(m["notices"]) != 1 {
			t.Fatalf("login_ack %v, want notices 1 (the removal without a reason told nothing)", m)
		}
	})
}

// A removal whose notice cannot be written, with the real binary through
// a node's API on a real Redis made to fail (the author's notice list
// replaced by a string): the node retries for 10 s, then the CLI prints
// the removal, exits non-zero saying the author was not told and that the
// notice is kept, and the moderation log says so; once Redis is mended
// the same removal again sends the kept notice, which the author's live
// session gets, with the post's title and the first removal's reason.
func TestModerateRemoveNoticeKept(t *testing.T) {
	r := brokertest.StartRedis(t)
	tf := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tf, []byte("ana "+testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	aa := freeAddr(t)
	n := startProc(t, "--role=db", "--redis", r.Addr, "--secret", testSecret, "--admin-addr", aa, "--admin-token-file", tf)
	author := wsDial(t, n.addr)
	author.register()
	lamp := author.publish("Lamp")
	author.send(`{"cmd":"notices"}`)
	author.next("notices_ack")
	raw := brokertest.Raw(t, r.Addr)
	nt := "occase:nt:{" + author.id + "}"
	if err := raw.Do(context.Background(), raw.B().Set().Key(nt).Value("not a list").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	bin := binary(t)
	remove := func(args ...string) (string, string, error) {
		return run(t, bin, append([]string{"moderate", "remove", fmt.Sprint(lamp), "--node", "http://" + aa, "--admin-token-file", tf}, args...)...)
	}
	start := time.Now()
	out, errOut, err := remove("--reason", "scam")
	took := time.Since(start)
	if err == nil || !strings.Contains(out, fmt.Sprintf("removed post %d of user %s", lamp, author.id)) ||
		!strings.Contains(errOut, "could not be told why after retries; the notice is kept: remove post "+fmt.Sprint(lamp)+" again to send it") {
		t.Fatalf("remove while the notices fail: %v\n%s%s", err, out, errOut)
	}
	if took < 9*time.Second || took > 25*time.Second {
		t.Fatalf("the node answered after %v, want its notice retried for about 10 s", took)
	}
	a := adminCall(t, "GET", "http://"+aa+"/admin/v1/log", testAdminToken, nil)
	if !strings.Contains(a.raw, `"result":"author_not_told","detail":"author `+author.id+`, notice kept to resend"`) {
		t.Fatalf("the log: %s", a.raw)
	}
	if err := raw.Do(context.Background(), raw.B().Del().Key(nt).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = remove()
	if err != nil || !strings.Contains(out, fmt.Sprintf("post %d of user %s was removed before; its kept notice sent again", lamp, author.id)) ||
		!strings.Contains(out, "user "+author.id+" was told why (scam)") {
		t.Fatalf("the removal again: %v\n%s%s", err, out, errOut)
	}
	m := author.next("notice")
	if num(m["post"]) != lamp || m["title"] != "Lamp" || m["reason"] != "scam" {
		t.Fatalf("the notice: %v", m)
	}
	t.Logf("the failing removal answered after %v", took.Round(100*time.Millisecond))
}
