package roles_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/roles"
)

// The front door (front.go) answers a connection's first request when it
// is a plain WebSocket upgrade and hands every other connection to
// net/http with the bytes it read put back. These tests drive both paths
// over raw sockets, on a node serving a listener as the binary does.

const upgradeHead = "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

func rawDial(t *testing.T, n *node) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	host := strings.TrimPrefix(n.base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn), host
}

// expectStatus reads one response from r, body and all, and checks its
// status.
func expectStatus(t *testing.T, r *bufio.Reader, code int, what string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp.StatusCode != code {
		t.Fatalf("%s: %s, want %d", what, resp.Status, code)
	}
	if code != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, resp.Body)
	}
	return resp
}

// rawUpgrade dials n and completes a WebSocket handshake on the raw
// socket.
func rawUpgrade(t *testing.T, n *node) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, r, host := rawDial(t, n)
	conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" + upgradeHead + "\r\n"))
	expectStatus(t, r, http.StatusSwitchingProtocols, "handshake")
	return conn, r
}

func embeddedNode(t *testing.T) *node {
	return startNode(t, broker.Options{Addrs: []string{broker.Embedded}})
}

// registerOver sends register on an upgraded connection and expects its ack.
func registerOver(t *testing.T, conn net.Conn, r *bufio.Reader) {
	t.Helper()
	if _, err := conn.Write(maskedFrame(`{"cmd":"register"}`)); err != nil {
		t.Fatal(err)
	}
	if m := readServerFrame(t, r); m["cmd"] != "register_ack" || m["result"] != "ok" {
		t.Fatalf("got %v, want register_ack ok", m)
	}
}

// Requests that are not a plain upgrade reach net/http intact: a plain GET
// of the web app, an upgrade that follows another request on a kept-alive
// connection (the session works, and is counted), a malformed request
// (net/http's own 400), a long head under the node's 64 KiB limit. A head
// over the limit is answered 431 (by the front door; net/http's answer is
// the same); a long upgrade under it is served like any other.
func TestFrontDoorHandsOtherRequestsToNetHTTP(t *testing.T) {
	n := embeddedNode(t)

	t.Run("web app", func(t *testing.T) {
		conn, r, host := rawDial(t, n)
		conn.Write([]byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n"))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("<html")) {
			t.Fatalf("GET /: %s, %.80q", resp.Status, body)
		}
	})

	t.Run("upgrade after another request", func(t *testing.T) {
		conn, r, host := rawDial(t, n)
		conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n"))
		expectStatus(t, r, http.StatusOK, "healthz")
		conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" + upgradeHead + "\r\n"))
		expectStatus(t, r, http.StatusSwitchingProtocols, "upgrade")
		registerOver(t, conn, r)
	})

	t.Run("head over the limit after another request", func(t *testing.T) {
		conn, r, host := rawDial(t, n)
		conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n"))
		expectStatus(t, r, http.StatusOK, "healthz")
		go conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\nCookie: c=" + strings.Repeat("z", 100<<10) + "\r\n\r\n"))
		expectStatus(t, r, http.StatusRequestHeaderFieldsTooLarge, "100 KB head on a kept-alive connection (net/http's answer)")
	})

	t.Run("malformed", func(t *testing.T) {
		conn, r, _ := rawDial(t, n)
		conn.Write([]byte("GET /ws HTTP/1.1\r\nHost example\r\n\r\n"))
		expectStatus(t, r, http.StatusBadRequest, "malformed request")
	})

	t.Run("head over the limit", func(t *testing.T) {
		conn, r, host := rawDial(t, n)
		pad := "X-Pad: " + strings.Repeat("p", 1000) + "\r\n"
		go func() {
			conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" + upgradeHead))
			for i := 0; i < 100; i++ { // 100 KB: over the node's 64 KiB
				if _, err := conn.Write([]byte(pad)); err != nil {
					return
				}
			}
		}()
		expectStatus(t, r, http.StatusRequestHeaderFieldsTooLarge, "100 KB head")
		if body := httpGet(t, n.base+"/metrics"); !strings.Contains(body, `occase_request_heads_refused_total{why="too_large"} 1`) {
			t.Errorf("the 431 is not counted in occase_request_heads_refused_total")
		}
	})

	t.Run("long head, not an upgrade", func(t *testing.T) {
		conn, r, host := rawDial(t, n)
		cookie := "Cookie: c=" + strings.Repeat("x", 40<<10) + "\r\n"
		conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n" + cookie + "\r\n"))
		expectStatus(t, r, http.StatusOK, "a 40 KiB head for net/http")
	})

	t.Run("long head", func(t *testing.T) {
		conn, r, host := rawDial(t, n)
		cookie := "Cookie: c=" + strings.Repeat("x", 40<<10) + "\r\n"
		conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" + cookie + upgradeHead + "\r\n"))
		expectStatus(t, r, http.StatusSwitchingProtocols, "upgrade with a 40 KiB head")
		registerOver(t, conn, r)
	})

	body := httpGet(t, n.base+"/metrics")
	for _, want := range []string{
		`occase_http_requests_total{code="101",method="GET",route="/ws"} 2`,
		`occase_http_requests_total{code="200",method="GET",route="/healthz"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The front door's own answers: an upgrade it refuses (a foreign Origin)
// gets a complete HTTP response and the connection ends; an accepted one
// is counted under the same metric labels as net/http's.
func TestFrontDoorAnswers(t *testing.T) {
	n := embeddedNode(t)
	conn, r, host := rawDial(t, n)
	conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nOrigin: https://evil.example\r\n" + upgradeHead + "\r\n"))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	if resp.StatusCode != http.StatusForbidden || len(body) == 0 || resp.Close != true {
		t.Fatalf("foreign origin: %s close=%v %q, want 403 with a reason and Connection: close", resp.Status, resp.Close, body)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the refusal: %v, want EOF", err)
	}

	conn, r, host = rawDial(t, n)
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n" + upgradeHead + "\r\n"))
	resp = expectStatus(t, r, http.StatusSwitchingProtocols, "upgrade at /")
	if resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept %q", resp.Header.Get("Sec-WebSocket-Accept"))
	}
	registerOver(t, conn, r)
	if body := httpGet(t, n.base+"/metrics"); !strings.Contains(body, `occase_http_requests_total{code="403",method="GET",route="/ws"} 1`) ||
		!strings.Contains(body, `occase_http_requests_total{code="101",method="GET",route="/"} 1`) {
		t.Errorf("metrics do not count the front door's answers")
	}
}

// A client that closes gets the node's answering close frame (its own code
// echoed), then the end of the stream: the answer is held for the close
// of the socket (MSG_MORE) but never lost.
func TestPeerCloseIsAnswered(t *testing.T) {
	n := embeddedNode(t)
	for _, parked := range []bool{false, true} {
		conn, r := rawUpgrade(t, n)
		registerOver(t, conn, r)
		if parked {
			time.Sleep(100 * time.Millisecond) // past parkAfter: the poller holds the socket
		}
		// A masked close frame: 1000 and "bye".
		payload := []byte{0x03, 0xe8, 'b', 'y', 'e'}
		frame := []byte{0x88, 0x80 | byte(len(payload)), 1, 2, 3, 4}
		for i, b := range payload {
			frame = append(frame, b^[]byte{1, 2, 3, 4}[i%4])
		}
		start := time.Now()
		conn.Write(frame)
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("parked=%v: reading the answer: %v", parked, err)
		}
		// What came before the close may include pings; the last frame
		// is the close answer: 0x88, length, then the echoed code.
		i := bytes.LastIndexByte(got, 0x88)
		if i < 0 || len(got) < i+4 || got[i+2] != 0x03 || got[i+3] != 0xe8 {
			t.Fatalf("parked=%v: got % x, want a close frame with 1000 at the end", parked, got)
		}
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Logf("parked=%v: the answer took %v (held by MSG_MORE until the close?)", parked, d)
		}
	}
}

// A head still incomplete when --read-header-timeout is spent ends the
// connection, with no answer, as net/http does: it is not handed to
// net/http, which would give it a second timeout (the slow-headers attack
// of docs/security.md held a connection twice as long). Each case
// finishes its request after the deadline: a connection that had been
// handed on would answer it. In the second, the request line itself never
// ends: the parser takes the bytes before the timeout for a whole
// (malformed) line, but the read's timeout decides (the tour's
// one-byte-a-second client).
func TestFrontDoorSlowHeadIsClosedOnce(t *testing.T) {
	n := startNode(t, broker.Options{Addrs: []string{broker.Embedded}}, func(c *roles.Config) {
		c.ReadHeaderTimeout = 500 * time.Millisecond
	})
	for i, tc := range []struct{ first, rest string }{
		{"GET /healthz HTTP/1.1\r\n", "Host: %s\r\n\r\n"},
		{"GET / HTTP", "/1.1\r\nHost: %s\r\n\r\n"},
	} {
		conn, r, host := rawDial(t, n)
		conn.Write([]byte(tc.first))
		time.Sleep(750 * time.Millisecond) // past the deadline, before twice it
		conn.Write([]byte(fmt.Sprintf(tc.rest, host)))
		if resp, err := http.ReadResponse(r, nil); err == nil {
			t.Fatalf("case %d: got %s after the header timeout, want the connection closed", i, resp.Status)
		}
		want := fmt.Sprintf(`occase_request_heads_refused_total{why="timeout"} %d`, i+1)
		if body := httpGet(t, n.base+"/metrics"); !strings.Contains(body, want) {
			t.Errorf("case %d: the timeout is not counted (%s)", i, want)
		}
	}
}
