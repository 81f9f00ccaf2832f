package roles

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

func clientFrame(fin bool, op byte, n int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 1, 2, 3, 4)
	return append(b, make([]byte, n)...)
}

func TestFrameTrackerFindsFrameBoundaries(t *testing.T) {
	cat := func(fs ...[]byte) []byte {
		var b []byte
		for _, f := range fs {
			b = append(b, f...)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
		idle bool
	}{
		{"nothing", nil, true},
		{"one text frame", clientFrame(true, 1, 10), true},
		{"empty frame", clientFrame(true, 1, 0), true},
		{"16-bit length", clientFrame(true, 1, 300), true},
		{"64-bit length", clientFrame(true, 2, 70000), true},
		{"header only", clientFrame(true, 1, 10)[:6], false},
		{"half a header", clientFrame(true, 1, 300)[:3], false},
		{"payload short", clientFrame(true, 1, 300)[:100], false},
		{"fragment open", clientFrame(false, 1, 5), false},
		{"fragment open, ping between", cat(clientFrame(false, 1, 5), clientFrame(true, 9, 2)), false},
		{"fragments closed", cat(clientFrame(false, 1, 5), clientFrame(true, 9, 2), clientFrame(true, 0, 3)), true},
		{"pong then text", cat(clientFrame(true, 10, 1), clientFrame(true, 1, 4)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, and a byte at a time: the same boundaries.
			var whole, bytewise frameTracker
			whole.feed(tt.in)
			for i := range tt.in {
				bytewise.feed(tt.in[i : i+1])
			}
			if whole.idle() != tt.idle || bytewise.idle() != tt.idle {
				t.Fatalf("idle: whole %v, byte-wise %v; want %v", whole.idle(), bytewise.idle(), tt.idle)
			}
		})
	}
}

// A ping the node writes itself goes between the library's frames, never
// inside one, even when another goroutine's frame is half written.
func TestPingGoesBetweenFrames(t *testing.T) {
	pong := []byte{0x8a, 0x03, 'a', 'b', 'c'} // a server frame, as the library writes it
	tests := []struct {
		name  string
		write func(c *corkConn)
	}{
		{"between frames", func(c *corkConn) {
			c.cork()
			c.Write(pong)
			c.queuePing()
			c.uncork()
		}},
		{"inside a frame", func(c *corkConn) {
			c.cork()
			c.Write(pong[:1])
			c.queuePing()
			c.Write(pong[1:])
			c.uncork()
		}},
		{"frame ends after the batch", func(c *corkConn) {
			c.cork()
			c.Write(pong[:3])
			c.queuePing()
			c.uncork()
			c.Write(pong[3:])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			c := newCorkConn(server)
			c.framing = true
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(client)
				got <- b
			}()
			tt.write(c)
			c.Close()
			want := append(append([]byte{}, pong...), pingFrame...)
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("wrote % x, want % x", b, want)
			}
		})
	}
}

func TestPongsOnly(t *testing.T) {
	pong := []byte{0x8a, 0x80, 1, 2, 3, 4}
	pongWith := []byte{0x8a, 0x82, 1, 2, 3, 4, 'h', 'i'}
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"nothing", nil, false},
		{"one pong", pong, true},
		{"pong with payload", pongWith, true},
		{"pongs", cat(pong, pongWith, pong), true},
		{"half a pong", pong[:3], false},
		{"pong and half a pong", cat(pong, pong[:5]), false},
		{"payload cut", pongWith[:7], false},
		{"unmasked pong", []byte{0x8a, 0x00}, false},
		{"pong without FIN", []byte{0x0a, 0x80, 1, 2, 3, 4}, false},
		{"ping", []byte{0x89, 0x80, 1, 2, 3, 4}, false},
		{"pong then text", cat(pong, clientFrame(true, 1, 3)), false},
		{"text", clientFrame(true, 1, 3), false},
		{"close", clientFrame(true, 8, 2), false},
		{"extended length", []byte{0x8a, 0x80 | 126, 0, 1, 1, 2, 3, 4, 'x'}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pongsOnly(tt.in); got != tt.want {
				t.Fatalf("pongsOnly(% x) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
