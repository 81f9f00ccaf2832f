package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// send sends method path with token and no body, and reads the answer.
func (a *adminConn) send(method, path, token string) (int, bool, string) {
	a.c.SetDeadline(time.Now().Add(5 * time.Second))
	req := method + " " + path + " HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := a.c.Write([]byte(req + "\r\n")); err != nil {
		return 0, false, ""
	}
	resp, m, err := a.answer()
	if err != nil {
		return 0, false, ""
	}
	r, _ := m["reason"].(string)
	return resp.StatusCode, resp.Close, r
}

// A viewer's token, which an operator hands to someone trusted less than
// a moderator, lifts no connection out of the anonymous half of the admin
// listener: its answers close their connection, so a viewer holding
// connections open can take at most the half a stranger can, never the
// slots the moderators' connections need (with --admin-max-conns 8, it
// took all 8 and every moderator's new connection got
// too_many_connections). A token demoted or revoked by SIGHUP acts on
// the keep-alive connection it opened: the next request is checked
// against the new file, and its answer closes the connection (a revoked
// token kept its connection, and so its slot, open).
func TestAdminViewerConnections(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		adminViewerConnections(t, "--role=db", "--redis", brokertest.StartRedis(t).Addr)
	})
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		adminViewerConnections(t, "--role=all", "--redis", "embedded", "--embedded-snapshot", filepath.Join(dir, "e.json"),
			"--image-dir", filepath.Join(dir, "images"))
	})
}

func adminViewerConnections(t *testing.T, store ...string) {
	dir := t.TempDir()
	tf, write := tokenFile(t, dir)
	write("ana " + testAdminToken + "\nsue " + otherAdminToken + " viewer\n")
	aa := freeAddr(t)
	n := startProc(t, append(store, "--secret", testSecret,
		"--admin-addr", aa, "--admin-token-file", tf, "--admin-max-conns", "8", "--log-level", "info")...)

	// The viewer tries to hold all 8.
	held := 0
	for i := 0; i < 8; i++ {
		c := dialAdmin(t, aa)
		code, closes, _ := c.send("GET", "/admin/v1/whoami", otherAdminToken)
		if code == 200 && !closes {
			held++
		}
		if code == 200 && closes && !c.closed() {
			t.Fatalf("viewer connection %d: the answer said close, the connection stayed open", i)
		}
	}
	if held != 0 {
		t.Fatalf("the viewer holds %d keep-alive connections; want none", held)
	}
	op := dialAdmin(t, aa)
	if code, closes, reason := op.send("GET", "/admin/v1/whoami", testAdminToken); code != 200 || closes {
		t.Fatalf("the moderator's new connection after the viewer's: %d close %v %s", code, closes, reason)
	}

	// Demoted on its open connection: the next action is refused and the
	// connection closed.
	write("ana " + testAdminToken + " viewer\nsue " + otherAdminToken + " viewer\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, 5*time.Second, "the reload", func() bool {
		return strings.Count(n.log.text(), "SIGHUP: admin tokens reloaded") == 1
	})
	if code, closes, reason := op.send("POST", "/admin/v1/posts/1/dismiss", testAdminToken); code != 403 || reason != "forbidden_for_role" || !closes {
		t.Fatalf("a demoted moderator's action on its open connection: %d %s close %v", code, reason, closes)
	}

	// Revoked on its open connection: 401 and closed.
	write("ana " + testAdminToken + "\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	op2 := dialAdmin(t, aa)
	brokertest.Poll(t, 5*time.Second, "the second reload", func() bool {
		return strings.Count(n.log.text(), "SIGHUP: admin tokens reloaded") == 2
	})
	write("bob " + testAdminToken + "0\n")
	if code, closes, _ := op2.send("GET", "/admin/v1/whoami", testAdminToken); code != 200 || closes {
		t.Fatalf("ana's new connection: %d close %v", code, closes)
	}
	n.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, 5*time.Second, "the third reload", func() bool {
		return strings.Count(n.log.text(), "SIGHUP: admin tokens reloaded") == 3
	})
	if code, closes, reason := op2.send("GET", "/admin/v1/reports", testAdminToken); code != 401 || !closes || !op2.closed() {
		t.Fatalf("a revoked token on its open connection: %d %s close %v", code, reason, closes)
	}
}
