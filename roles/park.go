package roles

import (
	"errors"
	"sync/atomic"

	"go.uber.org/zap"
)

// Parking idle connections (docs/benchmarks.md, "Idle connections
// parked"). A reader goroutine blocked on a socket that has nothing to say
// holds its stack (8 KiB or more after a frame went through the WebSocket
// library) for as long as the connection lives: most of what an idle
// logged-in connection costs. So a session's reader does not wait long
// for bytes: when it wants the next frame and the socket has had none for
// parkAfter (25 ms, cork.go; a busy connection never parks), it registers
// the socket with the node's readiness poller (epoll on Linux,
// park_linux.go) and its goroutine ends. When bytes arrive, or the peer
// hangs up, the poller starts a new reader goroutine, which goes on where
// the last one stopped; when all that arrived is pongs (the answers to
// the node's pings), the poller reads them itself and parks the
// connection again (readPoller.readable), so an idle connection's ping
// rounds start no goroutine.
//
// coder/websocket reads through the corkConn, so the corkConn decides: it
// reads with a deadline of parkAfter only when the library is between frames
// (frameTracker: every byte read so far belongs to a complete frame and
// no fragmented message is open; the library's buffered reader only asks
// for more once it has used what it has). Then nothing of the library's
// state is half done, and it reports errParked as a failed frame-header
// read without closing the connection: a later Read starts afresh. In the
// middle of a frame, and whenever the session is leaving or the socket is
// closed, reads block as before. coder/websocket v1.8 holds no goroutine
// of its own per connection (its read and write timeouts are
// context.AfterFunc callbacks, armed only during a Read or Write), so a
// parked connection holds none.
//
// Without a poller (other systems, or TLS terminated by the node, whose
// records the corkConn cannot see into) every connection keeps its
// reader goroutine, as before.

// errParked ends a read that found nothing between frames for parkAfter.
var errParked = errors.New("nothing to read: reader parked")

// Park states of a session (session.parkSt).
const (
	readerRunning int32 = iota
	readerParked
)

// park registers the session's socket with the poller; the caller's
// goroutine then ends. It reports false when the reader must go on
// instead: the session began leaving or the socket closed meanwhile (the
// reader then reads on, blocking, to meet the close), or the poller could
// not take it (parking is then off for this connection).
func (ss *session) park(ctl *epollCtl) bool {
	p := &ss.srv.readPoll
	ss.releaseLimiters()
	// Once parked, the session may be woken and read by another goroutine
	// at any moment: everything this one does after the store below is on
	// atomics, or on the session only when the store is undone.
	fresh, err := p.register(ss)
	if err == nil {
		ss.parkSt.Store(readerParked)
		p.parked.Add(1)
		if err = p.arm(ss, fresh, ctl); err != nil && !ss.parkSt.CompareAndSwap(readerParked, readerRunning) {
			return true // woken meanwhile: the new goroutine reads on
		} else if err != nil {
			p.parked.Add(-1)
		}
	}
	if err != nil {
		ss.raw.parkOff.Store(true)
		ss.logger().Warn("cannot park an idle connection; its reader keeps a goroutine", zap.Error(err))
		return false
	}
	// shutdown, or a close of the socket, wakes a parked reader; one that
	// happened before the session was parked is seen here.
	if ss.status() >= statusLeaving || ss.raw.shut.Load() {
		if ss.parkSt.CompareAndSwap(readerParked, readerRunning) {
			p.parked.Add(-1)
			return false
		}
		// Someone else woke it: its new goroutine reads on.
	}
	return true
}

// wake starts a reader goroutine for a parked session; it does nothing
// when the reader is running. The poller calls it when the socket is
// readable or hung up; shutdown and the socket's Close call it so that the
// reader meets the close.
func (ss *session) wake() {
	if ss.parkSt.CompareAndSwap(readerParked, readerRunning) {
		ss.srv.readPoll.parked.Add(-1)
		go ss.run()
	}
}

// frameTracker follows the frame boundaries in the bytes a client sends,
// without decoding anything but frame headers, so that the corkConn knows
// when the library is between frames.
type frameTracker struct {
	hdr    [14]byte
	hn     uint8  // header bytes collected so far
	need   uint64 // payload bytes of the current frame not yet seen
	midMsg bool   // the last data frame was not final (a fragmented message is open)
	// sawClose: a close frame began (its first byte was seen).
	sawClose bool
}

// idle reports whether every byte seen so far belongs to a complete frame
// and no fragmented message is open.
func (t *frameTracker) idle() bool { return t.hn == 0 && t.need == 0 && !t.midMsg }

func (t *frameTracker) feed(b []byte) {
	for len(b) > 0 {
		if t.need > 0 {
			k := uint64(len(b))
			if k > t.need {
				k = t.need
			}
			t.need -= k
			b = b[k:]
			continue
		}
		t.hdr[t.hn] = b[0]
		t.hn++
		if t.hn == 1 && b[0]&0x0f == 8 {
			t.sawClose = true
		}
		b = b[1:]
		if t.hn < 2 {
			continue
		}
		size := uint8(2)
		switch t.hdr[1] & 0x7f {
		case 126:
			size += 2
		case 127:
			size += 8
		}
		if t.hdr[1]&0x80 != 0 {
			size += 4 // mask key
		}
		if t.hn < size {
			continue
		}
		var n uint64
		switch l := t.hdr[1] & 0x7f; l {
		case 126:
			n = uint64(t.hdr[2])<<8 | uint64(t.hdr[3])
		case 127:
			for _, c := range t.hdr[2:10] {
				n = n<<8 | uint64(c)
			}
		default:
			n = uint64(l)
		}
		// Data frames (continuation, text, binary) open or close a
		// message; control frames may come between its fragments.
		if op := t.hdr[0] & 0x0f; op < 8 {
			t.midMsg = t.hdr[0]&0x80 == 0
		}
		t.need = n
		t.hn = 0
	}
}

// pongsOnly reports whether b is one or more whole pongs from a client
// (masked, FIN set, a control payload of at most 125 bytes) and nothing
// else.
func pongsOnly(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for len(b) > 0 {
		if len(b) < 6 || b[0] != 0x8a || b[1]&0x80 == 0 {
			return false
		}
		n := 6 + int(b[1]&0x7f)
		if b[1]&0x7f > 125 || len(b) < n {
			return false
		}
		b = b[n:]
	}
	return true
}

// pollerGauge counts for /metrics: the parked connections, the reader
// goroutines the poller started, and the pongs it read itself.
type pollerGauge struct {
	parked atomic.Int64
	wakes  atomic.Int64
	pongs  atomic.Int64
}
