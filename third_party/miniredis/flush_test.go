package miniredis

// Tests of the batched reply flushes (server.servePeer, blocking();
// patched in occase's copy).

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2/proto"
)

// TestFlushPipeline: a pipeline of commands sent in one write gets every
// reply, in order.
func TestFlushPipeline(t *testing.T) {
	m, _ := startPoolTest(t)
	conn, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 500
	var b strings.Builder
	for i := 0; i < n; i++ {
		if err := proto.Write(&b, []string{"INCR", "k"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for i := 1; i <= n; i++ {
		got, err := proto.Read(r)
		if err != nil {
			t.Fatal(err)
		}
		if got != proto.Int(i) {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
}

// TestFlushBeforeBlocking: the reply to a command pipelined before a
// blocking one is sent while the blocking one waits.
func TestFlushBeforeBlocking(t *testing.T) {
	m, _ := startPoolTest(t)
	conn, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	_ = proto.Write(&b, []string{"PING"})
	_ = proto.Write(&b, []string{"BLPOP", "nothing", "0"})
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	// BLPOP waits for ever; PING's reply must not wait with it. The
	// deadline only bounds a failing test.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := proto.Read(bufio.NewReader(conn))
	if err != nil {
		t.Fatalf("PING's reply did not come while BLPOP waited: %v", err)
	}
	if got != proto.Inline("PONG") {
		t.Fatalf("got %q", got)
	}
}
