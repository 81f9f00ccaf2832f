package roles_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// maskedFrame is a client's text frame.
func maskedFrame(payload string) []byte {
	b := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key...)
	for i := range len(payload) {
		b = append(b, payload[i]^key[i%4])
	}
	return b
}

func readServerFrame(t *testing.T, r *bufio.Reader) map[string]any {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[0] != 0x81 || h[1]&0x80 != 0 {
		t.Fatalf("frame header % x, want an unmasked final text frame", h)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	} else if n == 127 {
		t.Fatal("unexpectedly long frame")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("frame %q: %v", p, err)
	}
	return m
}

// A client may send its first frames in the same packet as its handshake.
// They sit in net/http's buffer when the connection is hijacked, and the
// node swaps that buffer for a smaller one: none may be lost, even when
// they are more than the new buffer holds. The replies, queued while the
// first was written, leave in order.
func TestFramesSentWithTheHandshakeAreRead(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))

		req := "GET /ws HTTP/1.1\r\nHost: " + strings.TrimPrefix(n.base, "http://") + "\r\n" + upgradeHead + "\r\n"
		out := []byte(req)
		out = append(out, maskedFrame(`{"cmd":"register"}`)...)
		const msgs = 100
		for i := 1; i <= msgs; i++ {
			out = append(out, maskedFrame(fmt.Sprintf(`{"cmd":"message","to":"999999","id":%d}`, i))...)
		}
		if len(out)-len(req) < 4096 {
			t.Fatalf("only %d early bytes: the test must overflow the read buffer", len(out)-len(req))
		}
		if _, err := conn.Write(out); err != nil {
			t.Fatal(err)
		}

		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %s", resp.Status)
		}
		if m := readServerFrame(t, r); m["cmd"] != "register_ack" || m["result"] != "ok" {
			t.Fatalf("first reply %v, want register_ack ok", m)
		}
		for i := 1; i <= msgs; i++ {
			m := readServerFrame(t, r)
			if m["cmd"] != "message" || m["ack_id"] != float64(i) || m["reason"] != "not_found" {
				t.Fatalf("reply %d: %v, want the server_ack of message %d (not_found)", i, m, i)
			}
		}
	})
}
