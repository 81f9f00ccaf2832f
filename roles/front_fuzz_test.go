package roles

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"go.uber.org/zap"
)

// FuzzFrontDoor sends arbitrary bytes as a connection's first request to
// the front door (front.go) over an in-memory pipe and checks what must
// hold whatever they are: front returns (no panic, no wait past the
// header timeout); a connection handed to net/http replays exactly a
// prefix of what the client sent; anything the client got back is a
// complete HTTP status line. The seeds are the cases of front_test.go.
func FuzzFrontDoor(f *testing.F) {
	up := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, seed := range []string{
		"GET /ws HTTP/1.1\r\nHost: x\r\n" + up + "\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n" + up + "\r\n\x81\x85\x01\x02\x03\x04hello",
		"GET / HTTP/1.1\r\nHost: x\r\n" + up + "\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /ws HTTP/1.1\r\nHost: x\r\n" + up + "\r\n",
		"GET /ws HTTP/1.1\r\nHost example\r\n\r\n",
		"GET / HTTP",
		"GET /ws HTTP/1.0\r\nHost: x\r\n" + up + "\r\n",
		"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" + up + "\r\nabc",
		"GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n" + up + "\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", 70<<10) + "\r\n" + up + "\r\n",
		"\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	cfg := DefaultConfig()
	cfg.Role = "db"
	cfg.Redis = broker.Options{Addrs: []string{broker.Embedded}}
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	cfg.LoginTimeout = 200 * time.Millisecond
	s, err := New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	for !s.started.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		defer client.Close()
		fd := &frontDoor{s: s, conns: make(chan net.Conn, 1), done: make(chan struct{})}
		var wg sync.WaitGroup
		wg.Add(2)
		var got []byte
		go func() { // the client sends everything...
			defer wg.Done()
			client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			client.Write(data)
		}()
		go func() { // ...and reads what comes back for half a second, then leaves
			defer wg.Done()
			client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			got, _ = io.ReadAll(client)
			client.Close()
		}()
		done := make(chan struct{})
		go func() {
			s.front(server, fd)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("front did not return for %q", data)
		}
		select {
		case c := <-fd.conns:
			rc, ok := c.(*replayConn)
			if !ok {
				t.Fatalf("handed net/http a %T", c)
			}
			if !bytes.HasPrefix(data, rc.pending) {
				t.Fatalf("replays %q, which the client did not send first (sent %q)", rc.pending, data)
			}
			c.Close()
		default:
		}
		server.Close()
		client.Close()
		wg.Wait()
		if len(got) > 0 {
			if _, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil); err != nil {
				t.Fatalf("the client got %q: not an HTTP response (%v)", got, err)
			}
		}
	})
}
