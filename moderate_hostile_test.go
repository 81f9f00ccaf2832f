package main

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// rawAdmin sends head (a request head, CRLFs included) on a new
// connection to the admin listener and returns the status line read
// within wait ("" if none came) and whether the node closed the
// connection within wait.
func rawAdmin(t *testing.T, admin, head string, wait time.Duration) (status string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(admin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	status, _ = br.ReadString('\n')
	for {
		if _, err := br.ReadByte(); err != nil {
			ne, ok := err.(net.Error)
			return strings.TrimSpace(status), !(ok && ne.Timeout())
		}
	}
}

// A request that announces a body and never sends it, on the admin
// listener: without a token it is refused at once and the connection
// closed (the node does not wait for a body it will not use), and on an
// endpoint that reads no body (/healthz) the connection is closed within
// the listener's read bound. Before, both connections were held without
// an answer for as long as the client liked (net/http waits to discard
// an unread body, with no read deadline after the head): a slow-loris
// that needed no token.
func TestAdminListenerUnsentBody(t *testing.T) {
	eachModerationBackend(t, func(t *testing.T, n adminNode) {
		st, closed := rawAdmin(t, n.admin, "POST /admin/v1/users/1/ban HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", 3*time.Second)
		if !strings.Contains(st, " 401 ") || !closed {
			t.Fatalf("a ban without a token announcing a body never sent: status %q, closed %v; want 401 at once and the connection closed", st, closed)
		}
		st, closed = rawAdmin(t, n.admin, "POST /admin/v1/users/1/ban HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "+testAdminToken+"\r\nContent-Length: 9000\r\n\r\n", 3*time.Second)
		if !strings.Contains(st, " 413 ") || !closed {
			t.Fatalf("a ban announcing 9000 bytes: status %q, closed %v; want 413 at once and the connection closed", st, closed)
		}
		start := time.Now()
		st, closed = rawAdmin(t, n.admin, "GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", 20*time.Second)
		if !closed {
			t.Fatalf("/healthz announcing a body never sent: still open after %v (status %q)", time.Since(start), st)
		}
		t.Logf("/healthz with an unsent body: closed after %v, status %q", time.Since(start).Round(time.Second), st)
	})
}
