package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// A viewer's token with the real binary: `occase moderate --node` reads
// the queue, the bans and the log, and each action exits non-zero with
// the node's sentence (whose token, which role, what it may not do);
// nothing is done. A SIGHUP with a line of an unknown role is refused
// with the line's number and the tokens in use stay; a SIGHUP that
// makes the viewer a moderator lets it act, logged under its name.
func TestModerationViewerRoleCLI(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	tf, write := tokenFile(t, dir)
	write("ana " + testAdminToken + "\nsue " + otherAdminToken + " viewer\n")
	sueFile := filepath.Join(dir, "sue")
	if err := os.WriteFile(sueFile, []byte("sue "+otherAdminToken+" viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	aa := freeAddr(t)
	n := startProc(t, "--role=all", "--redis", "embedded", "--embedded-snapshot", filepath.Join(dir, "e.json"),
		"--image-dir", filepath.Join(dir, "images"), "--secret", testSecret, "--admin-addr", aa, "--admin-token-file", tf,
		"--log-level", "info")
	node := "http://" + aa
	u := wsDial(t, n.addr)
	u.register()
	user := u.id
	sue := func(args ...string) (string, string, error) {
		return run(t, bin, append(append([]string{"moderate"}, args...), "--node", node, "--admin-token-file", sueFile)...)
	}
	for _, c := range [][]string{{"reports"}, {"bans"}, {"log"}} {
		if out, errOut, err := sue(c...); err != nil {
			t.Fatalf("the viewer's %v: %v\n%s%s", c, err, out, errOut)
		}
	}
	for _, c := range []struct {
		args  []string
		words string
	}{
		{[]string{"ban", user, "--note", "x"}, "may not ban users"},
		{[]string{"unban", user}, "may not unban users"},
		{[]string{"remove", "1", "--reason", "spam"}, "may not remove posts"},
		{[]string{"dismiss", "1"}, "may not dismiss reports"},
		{[]string{"bans", "--rebuild"}, "may not rebuild the list of bans"},
	} {
		out, errOut, err := sue(c.args...)
		if err == nil || !strings.Contains(errOut, "occase: the token of sue is a viewer's") || !strings.Contains(errOut, c.words) {
			t.Fatalf("the viewer's %v: %v, want a refusal saying %q\n%s%s", c.args, err, c.words, out, errOut)
		}
	}
	if a := adminCall(t, "GET", node+"/admin/v1/log", testAdminToken, nil); num(a.body["total"]) != 0 {
		t.Fatalf("the log after the viewer's refusals: %s", a.raw)
	}

	// A role the node does not know: the reload is refused, naming the
	// line; sue is still a viewer, ana still acts.
	write("ana " + testAdminToken + "\nsue " + otherAdminToken + " admin\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, 5*time.Second, "the refused reload", func() bool {
		return strings.Contains(n.log.text(), "the admin tokens were not reloaded; the ones in use stay") &&
			strings.Contains(n.log.text(), "line 2: the third field is the role: want moderator or viewer")
	})
	if _, errOut, err := sue("unban", user); err == nil || !strings.Contains(errOut, "a viewer's") {
		t.Fatalf("sue after a refused reload: %v %s", err, errOut)
	}
	// A node that starts with such a file refuses to start, naming the line.
	if out, errOut, err := run(t, bin, "serve", "--role=all", "--redis", "embedded", "--secret", testSecret,
		"--admin-addr", freeAddr(t), "--admin-token-file", tf); err == nil || !strings.Contains(out+errOut, "line 2: the third field is the role") {
		t.Fatalf("a node started with an unknown role: %v\n%s%s", err, out, errOut)
	}

	write("ana " + testAdminToken + "\nsue " + otherAdminToken + " moderator\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, 5*time.Second, "the reload", func() bool {
		return strings.Contains(n.log.text(), `SIGHUP: admin tokens reloaded	{"operators": ["ana", "sue"]}`)
	})
	if out, errOut, err := sue("ban", user, "--note", "now a moderator"); err != nil {
		t.Fatalf("sue, a moderator now: %v\n%s%s", err, out, errOut)
	}
	a := adminCall(t, "GET", node+"/admin/v1/log", testAdminToken, nil)
	if num(a.body["total"]) != 1 || !strings.Contains(a.raw, `"by":"sue"`) {
		t.Fatalf("the log: %s", a.raw)
	}
	if strings.Contains(n.log.text(), otherAdminToken) || strings.Contains(n.log.text(), testAdminToken) {
		t.Fatalf("the node's log holds a token")
	}
}
