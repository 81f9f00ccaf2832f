package roles_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

const parkedSeries = "occase_connections_parked"

// waitParked polls until exactly want connections of n are parked.
func waitParked(t *testing.T, n *node, want float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got := metric(t, n, parkedSeries)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", parkedSeries, got, want)
		}
	}
}

// An idle connection holds no reader goroutine; a frame wakes it, and it
// answers and parks again, over and over.
func TestParkedConnectionWakesOnAFrameAndAnswers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		a := register(t, n.url)
		u := register(t, n.url)
		waitParked(t, n, 2)
		for i := 1; i <= 20; i++ {
			a.chat(u.id, "hi", i)
			a.expectServerAck(i, u.id)
			u.expectChat(a.id, "hi")
		}
		waitParked(t, n, 2)
		// A client's ping is answered by the woken reader too.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go u.c.Read(ctx) // the client sees the pong only while it reads
		if err := u.c.Ping(ctx); err != nil {
			t.Fatalf("ping of a parked connection: %v", err)
		}
		waitParked(t, n, 2)
	})
}

// A frame that arrives a few bytes at a time, its header split, is read
// whole: the reader parks only between frames.
func TestFrameTrickledIntoAParkedConnection(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		conn, r := rawUpgrade(t, n)
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		// A frame longer than 125 bytes, so its header has an extended
		// length, sent in pieces smaller than the header.
		f := maskedFrame(`{"cmd":"register","pad":"` + strings.Repeat("x", 200) + `"}`)
		for len(f) > 0 {
			k := min(3, len(f))
			if _, err := conn.Write(f[:k]); err != nil {
				t.Fatal(err)
			}
			f = f[k:]
			time.Sleep(time.Millisecond) // separate segments, not synchronisation
		}
		if m := readServerFrame(t, r); m["cmd"] != "register_ack" || m["result"] != "ok" {
			t.Fatalf("reply %v, want register_ack ok", m)
		}
	})
}

// A parked connection whose peer goes away without a close frame is
// noticed: the session ends and is counted.
func TestParkedPeerCloseIsNoticed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		a := register(t, n.url)
		waitParked(t, n, 1)
		a.c.CloseNow()
		waitMetric(t, n, `occase_connection_closes_total{code="1006"}`, 1)
		waitParked(t, n, 0)
		for deadline := time.Now().Add(10 * time.Second); metric(t, n, `occase_connections{state="all"}`) != 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the session of a vanished peer is still counted")
			}
		}
	})
}

// Pings and the idle timeout reach parked connections: a peer that does
// not answer is closed with 4005, one that answers stays.
func TestParkedSilentPeerTimesOut(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		// An idle timeout long enough that a loaded machine still lets the
		// live peer answer in time, short enough to keep the test quick.
		n := startNode(t, b.Options, func(c *roles.Config) { c.IdleTimeout = time.Second })
		silent := register(t, n.url) // reads nothing, so answers no ping
		alive := register(t, n.url)
		done := make(chan error, 1)
		go func() {
			_, err := alive.tryRecv(4 * time.Second)
			done <- err
		}()
		waitMetric(t, n, fmt.Sprintf(`occase_connection_closes_total{code="%d"}`, wire.CloseIdle), 1)
		if code := silent.closed(); code != wire.CloseIdle {
			t.Fatalf("silent peer closed with %d, want %d", code, wire.CloseIdle)
		}
		if err := <-done; websocket.CloseStatus(err) != -1 {
			t.Fatalf("a peer that answers pings was closed: %v", err)
		}
	})
}

// The login timeout reaches an anonymous connection that is parked.
func TestLoginTimeoutClosesAParkedConnection(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) { c.LoginTimeout = 300 * time.Millisecond })
		c := dial(t, n.url)
		if runtime.GOOS == "linux" {
			waitParked(t, n, 1)
		}
		if code := c.closed(); code != wire.CloseLoginTimeout {
			t.Fatalf("close code %d, want %d", code, wire.CloseLoginTimeout)
		}
		waitParked(t, n, 0)
	})
}

// The pongs of a parked connection are read by the poller itself: the
// connection stays parked through ping after ping, no reader goroutine is
// started for them, and they count as activity (the idle timeout, several
// times over, does not close it).
func TestParkedPongsAreReadByThePoller(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) { c.IdleTimeout = 1500 * time.Millisecond })
		a := register(t, n.url)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		read := make(chan error, 1)
		go func() { // the client answers pings only while it reads
			_, _, err := a.c.Read(ctx)
			read <- err
		}()
		waitParked(t, n, 1)
		// Each ping interval is a third of the idle timeout: six pongs
		// span two idle timeouts.
		waitMetric(t, n, "occase_parked_pongs_total", 6)
		if w := metric(t, n, "occase_parked_wakes_total"); w != 0 {
			t.Fatalf("occase_parked_wakes_total = %v: pongs started reader goroutines", w)
		}
		waitParked(t, n, 1)
		select {
		case err := <-read:
			t.Fatalf("a connection that answers pings was closed: %v", err)
		default:
		}
	})
}

// A pong that arrives with a frame, or split over two reads, is not lost
// in the poller: the frame is handed to a reader and answered.
func TestPongWithAFrameWakesTheReader(t *testing.T) {
	pong := []byte{0x8a, 0x80, 1, 2, 3, 4} // a client's pong, masked, no payload
	tests := []struct {
		name   string
		writes [][]byte
	}{
		{"pong and frame together", [][]byte{append(append([]byte{}, pong...), maskedFrame(`{"cmd":"register"}`)...)}},
		{"pong alone, then the frame", [][]byte{pong, maskedFrame(`{"cmd":"register"}`)}},
		{"pong split, then the frame", [][]byte{pong[:3], pong[3:], maskedFrame(`{"cmd":"register"}`)}},
	}
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				n := startNode(t, b.Options)
				conn, r := rawUpgrade(t, n)
				conn.SetDeadline(time.Now().Add(20 * time.Second))
				if runtime.GOOS == "linux" {
					waitParked(t, n, 1) // the first bytes land on a parked connection
				}
				for _, w := range tt.writes {
					if _, err := conn.Write(w); err != nil {
						t.Fatal(err)
					}
					time.Sleep(10 * time.Millisecond) // separate segments, not synchronisation
				}
				if m := readServerFrame(t, r); m["cmd"] != "register_ack" || m["result"] != "ok" {
					t.Fatalf("reply %v, want register_ack ok", m)
				}
			})
		}
	})
}
