package main

import (
	"fmt"
	"strings"
	"testing"
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
