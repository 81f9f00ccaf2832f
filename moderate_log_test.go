package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// Two operators with named tokens act through the real binary's API
// (each with the CLI's --node and a file of its own token); `moderate
// log` shows each name with the action, newest first, a hostile note made
// one safe line; --json gives the entries as data. On Redis, the CLI
// without --node acts as cli:<$USER>@<host>, and reads the same log. On
// Redis and on the embedded broker.
func TestModerationLogNamedTokens(t *testing.T) {
	bin := binary(t)
	host, _ := os.Hostname()
	for _, be := range []string{"redis", "embedded"} {
		t.Run(be, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name, content string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			nodeFile := write("tokens", "# the team\nana "+testAdminToken+"\n\nbob "+otherAdminToken+"\n")
			anaFile, bobFile := write("ana", "ana "+testAdminToken+"\n"), write("bob", otherAdminToken+"\n")
			aa := freeAddr(t)
			args := []string{"--secret", testSecret, "--admin-addr", aa, "--admin-token-file", nodeFile}
			var redis string
			if be == "redis" {
				redis = brokertest.StartRedis(t).Addr
				args = append(args, "--role=db", "--redis", redis)
			} else {
				args = append(args, "--role=all", "--redis", "embedded", "--embedded-snapshot", filepath.Join(dir, "e.json"),
					"--image-dir", filepath.Join(dir, "images"))
			}
			n := startProc(t, args...)
			cli := func(file string, args ...string) string {
				t.Helper()
				out, errOut, err := run(t, bin, append([]string{"moderate", args[0], "--node", "http://" + aa, "--admin-token-file", file}, args[1:]...)...)
				if err != nil {
					t.Fatalf("%v: %v\n%s%s", args, err, out, errOut)
				}
				return out
			}
			u := wsDial(t, n.addr)
			u.register()
			cli(anaFile, "ban", u.id, "--note", "scam \x1b[2J\u202eevil")
			cli(bobFile, "unban", u.id)
			out := cli(anaFile, "log")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 4 || lines[0] != "2 moderation actions logged; newest first, from 1" || !strings.HasPrefix(lines[1], "WHEN (UTC)") {
				t.Fatalf("log:\n%s", out)
			}
			if f := strings.Fields(lines[2]); f[2] != "bob" || f[3] != "127.0.0.1" || f[4] != "unban" || f[5] != u.id || f[6] != "ok" {
				t.Fatalf("the newest line, want bob's unban: %q", lines[2])
			}
			if f := strings.Fields(lines[3]); f[2] != "ana" || f[4] != "ban" || !strings.Contains(lines[3], "note: scam  [2J evil") {
				t.Fatalf("the older line, want ana's ban with its note made safe: %q", lines[3])
			}
			if strings.ContainsAny(out, "\x1b\u202e") {
				t.Fatalf("the table holds control characters: %q", out)
			}
			var e struct{ By, Action, Note string }
			out = cli(bobFile, "log", "--json", "--limit", "1", "--offset", "1")
			if jl := strings.Split(strings.TrimSpace(out), "\n"); len(jl) != 1 || json.Unmarshal([]byte(jl[0]), &e) != nil ||
				e.By != "ana" || e.Action != "ban" || e.Note != "scam \x1b[2J\u202eevil" {
				t.Fatalf("log --json --offset 1: %+v\n%s", e, out)
			}
			if be != "redis" {
				return
			}
			cmd := exec.Command(bin, "moderate", "ban", u.id, "--redis", redis)
			cmd.Env = append(os.Environ(), "USER=tester", "OCCASE_LOG_FORMAT=")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ban on Redis: %v\n%s", err, b)
			}
			out, errOut, err := run(t, bin, "moderate", "log", "--json", "--limit", "1", "--redis", redis)
			if err != nil || json.Unmarshal([]byte(out), &e) != nil || e.By != "cli:tester@"+host || e.Action != "ban" {
				t.Fatalf("log on Redis: %v %+v\n%s%s", err, e, out, errOut)
			}
		})
	}
}

// Revoking one operator without a restart: the token file rewritten
// without bob's line and SIGHUP; bob's token is refused from then on,
// ana's still works. A file the node refuses on SIGHUP keeps the tokens
// in use (and says so in the log, without a token).
func TestModerationTokensReloadOnHUP(t *testing.T) {
	dir := t.TempDir()
	tf, write := tokenFile(t, dir)
	write("ana " + testAdminToken + "\nbob " + otherAdminToken + "\n")
	aa := freeAddr(t)
	n := startProc(t, "--role=all", "--redis", "embedded", "--embedded-snapshot", filepath.Join(dir, "e.json"),
		"--image-dir", filepath.Join(dir, "images"), "--secret", testSecret, "--admin-addr", aa, "--admin-token-file", tf,
		"--log-level", "info")
	api := "http://" + aa + "/admin/v1/log"
	if a := adminCall(t, "GET", api, otherAdminToken, nil); a.code != 200 {
		t.Fatalf("bob before the reload: %d %s", a.code, a.raw)
	}
	write("ana " + testAdminToken + "\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, 5*time.Second, "the reload", func() bool {
		return strings.Contains(n.log.text(), `SIGHUP: admin tokens reloaded	{"operators": ["ana"]}`)
	})
	adminCall(t, "GET", api, otherAdminToken, nil).refused(t, "bob after the reload", 401, "unauthorized")
	if a := adminCall(t, "GET", api, testAdminToken, nil); a.code != 200 {
		t.Fatalf("ana after the reload: %d %s", a.code, a.raw)
	}
	write("ana " + testAdminToken + "\nana " + otherAdminToken + "\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, 5*time.Second, "the refused reload", func() bool {
		return strings.Contains(n.log.text(), "the admin tokens were not reloaded; the ones in use stay")
	})
	if strings.Contains(n.log.text(), otherAdminToken) || strings.Contains(n.log.text(), testAdminToken) {
		t.Fatalf("the node's log holds a token")
	}
	if a := adminCall(t, "GET", api, testAdminToken, nil); a.code != 200 {
		t.Fatalf("ana after a refused reload: %d %s", a.code, a.raw)
	}
}

// tokenFile is the path of an operators' token file in dir and a function
// that (re)writes it, mode 0600, as an operator would before a SIGHUP.
func tokenFile(t *testing.T, dir string) (string, func(content string)) {
	tf := filepath.Join(dir, "tokens")
	return tf, func(content string) {
		t.Helper()
		if err := os.WriteFile(tf, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
