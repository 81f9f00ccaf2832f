package roles

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// coder/websocket flushes every message it writes, so each frame would be
// a write(2) of its own: most of a node's CPU under fan-out, and a quarter
// of it under chat. It writes to the connection it got from Hijack, so the
// session hands it a corkConn: while the outbox's writer holds it corked,
// whatever the library writes collects in memory, and uncork sends it all
// in one system call. The library still frames every message and still
// serialises its own writes (pings, pongs, the close frame), which land in
// the same buffer in order when they happen while corked.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    *[]byte

	// The read side: budget (nil: unpaced) is set before the first read.
	// closing (made by the first pause, so an idle connection holds none)
	// wakes a paused reader when the connection closes. Both under mu.
	budget   *byteBudget
	closing  chan struct{}
	isClosed bool

	// Parking (park.go), set before the first read and used by the one
	// reading goroutine: rc reads without blocking (nil: cannot, as for
	// TLS); owner (nil in tests of the corkConn alone) is the session,
	// which may park while it is not leaving, is woken by Close (after
	// shut is set) and is told of every read that got bytes (a peer that
	// sends anything, a pong included, is alive); early holds bytes the
	// client sent with its handshake; frames follows the frame boundaries
	// of everything read; parkOff, when the poller could not take the
	// connection.
	rc     syscall.RawConn
	owner  *session
	early  []byte
	frames frameTracker
	// rdata is what was read from the socket into rbuf (a pooled buffer)
	// and not yet handed to the library; rbuf goes back to the pool once
	// it is empty, so an idle connection holds no read buffer.
	rbuf    *[]byte
	rdata   []byte
	shut    atomic.Bool
	parkOff atomic.Bool
	// peerClose: the peer's close frame was read. The library answers it
	// with its own and closes the socket at once, so that answer is sent
	// with MSG_MORE (writeMore): the kernel holds it, and the close puts
	// it in one segment with the FIN instead of two.
	peerClose atomic.Bool

	// The write side's frame boundaries, under mu, so that a ping (which
	// the node writes itself, session.ping) goes between the library's
	// frames; pingDue: one waits for the frame being written to end.
	// framing is set, under mu, once the handshake is done.
	wframes frameTracker
	pingDue bool
	framing bool // the handshake's reply is written: writes are frames
}

func newCorkConn(nc net.Conn) *corkConn {
	c := &corkConn{Conn: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil && parkable(rc) {
			c.rc = rc
		}
	}
	return c
}

// closed returns a channel that is closed once the connection is.
func (c *corkConn) closed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing == nil {
		c.closing = make(chan struct{})
		if c.isClosed {
			close(c.closing)
		}
	}
	return c.closing
}

// errConnClosed ends a read paused by the budget when the connection closes.
var errConnClosed = net.ErrClosed

func (c *corkConn) Read(p []byte) (int, error) {
	if c.budget == nil {
		return c.readSocket(p)
	}
	return c.budget.read(c, p)
}

// readSocket reads what the client sent: first the bytes that came with
// the handshake, then what is left in the read buffer, then the socket.
func (c *corkConn) readSocket(p []byte) (n int, err error) {
	switch {
	case len(c.early) > 0:
		n = copy(p, c.early)
		if c.early = c.early[n:]; len(c.early) == 0 {
			c.early = nil
		}
	case len(c.rdata) > 0:
		n = copy(p, c.rdata)
		if c.rdata = c.rdata[n:]; len(c.rdata) == 0 {
			c.putReadBuf()
		}
	case len(p) >= readBufDirect:
		n, err = c.readRaw(p)
	default:
		// The library's reader asks for a few bytes at a time (frame
		// headers); the socket is read in larger pieces into a pooled
		// buffer.
		c.rbuf = readBufs.Get().(*[]byte)
		var m int
		if m, err = c.readRaw(*c.rbuf); m > 0 {
			n = copy(p, (*c.rbuf)[:m])
			c.rdata = (*c.rbuf)[n:m]
		}
		if len(c.rdata) == 0 {
			c.putReadBuf()
		}
	}
	if n > 0 {
		c.frames.feed(p[:n])
		if c.frames.sawClose && !c.peerClose.Load() {
			c.peerClose.Store(true)
		}
	}
	return n, err
}

// readRaw reads the socket. Between frames, when the session may park, it
// waits at most parkAfter: a socket still empty then is errParked.
func (c *corkConn) readRaw(p []byte) (n int, err error) {
	if c.rc != nil && c.owner != nil && c.frames.idle() && !c.shut.Load() && !c.parkOff.Load() && c.owner.status() < statusLeaving {
		c.Conn.SetReadDeadline(time.Now().Add(parkAfter))
		n, err = c.Conn.Read(p)
		c.Conn.SetReadDeadline(time.Time{})
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, errParked
		}
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 && c.owner != nil {
		c.owner.touch()
	}
	return n, err
}

func (c *corkConn) putReadBuf() {
	readBufs.Put(c.rbuf)
	c.rbuf, c.rdata = nil, nil
}

// parkAfter is how long a reader waits between frames before it parks. A
// busy connection (chat, a login right after the handshake) sends its
// next frame sooner and never parks: waiting in the runtime's own poller
// is cheaper, and quicker to resume, than a park and a wake (an epoll_ctl
// and two goroutine hops). An idle connection parks within it.
const parkAfter = 25 * time.Millisecond

// readBufDirect: reads at least this large (frame payloads) go straight
// to the socket.
const readBufDirect = 512

var readBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

func (c *corkConn) Close() error {
	c.shut.Store(true)
	c.mu.Lock()
	if !c.isClosed {
		c.isClosed = true
		if c.closing != nil {
			close(c.closing)
		}
	}
	c.mu.Unlock()
	err := c.Conn.Close()
	if c.owner != nil {
		c.owner.wake()
	}
	return err
}

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.framing {
		c.wframes.feed(p)
	}
	ping := c.pingDue && c.wframes.idle()
	if ping {
		c.pingDue = false
	}
	// The answer to the peer's close frame (nothing follows it but the
	// close of the socket).
	more := c.framing && c.wframes.sawClose && c.rc != nil && c.peerClose.Load()
	if c.corked {
		*c.buf = append(*c.buf, p...)
		if ping {
			*c.buf = append(*c.buf, pingFrame...)
		}
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	if ping {
		// Rare: the library's frame that held the ping back ended after
		// the batch was sent.
		if _, err := c.Conn.Write(append(p[:len(p):len(p)], pingFrame...)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if more {
		return c.writeMore(p)
	}
	return c.Conn.Write(p)
}

// pingFrame is a server's WebSocket ping with no payload.
var pingFrame = []byte{0x89, 0x00}

// queuePing adds a ping to the corked batch, after the library's frame in
// progress if one is (a pong or close frame written by another goroutine).
// Only the outbox's writer calls it, while corked.
func (c *corkConn) queuePing() {
	c.mu.Lock()
	if c.wframes.idle() {
		*c.buf = append(*c.buf, pingFrame...)
	} else {
		c.pingDue = true
	}
	c.mu.Unlock()
}

// cork starts collecting writes. Only the outbox's writer corks and
// uncorks, and it never blocks on the network while corked.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.buf = corkBufs.Get().(*[]byte)
	c.mu.Unlock()
}

// uncork sends what was collected in one write and stops collecting. An
// idle connection keeps no buffer: it goes back to the pool (unless a huge
// batch made it too big to be worth keeping).
func (c *corkConn) uncork() error {
	c.mu.Lock()
	c.corked = false
	b := c.buf
	c.buf = nil
	c.mu.Unlock()
	var err error
	if len(*b) > 0 {
		_, err = c.Conn.Write(*b)
	}
	if cap(*b) <= 256<<10 {
		*b = (*b)[:0]
		corkBufs.Put(b)
	}
	return err
}

// Buffer sizes for what the library reads and writes through, the
// smallest bufio allows: they live as long as the connection. Reads are
// buffered by the corkConn in a pooled buffer held only while it has
// bytes for the library (so an idle connection holds none), and writes
// go to the cork buffer or, larger than the buffer, straight through;
// net/http's 4 KiB buffers would be most of an idle connection's memory.
const (
	connReadBuffer  = 16
	connWriteBuffer = 16
)

// corkWriter is the http.ResponseWriter given to websocket.Accept: its
// Hijack wraps the connection in a corkConn and swaps net/http's buffers
// for small ones.
type corkWriter struct {
	http.ResponseWriter
	conn *corkConn
}

func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = newCorkConn(nc)
	// Bytes the client sent right after its handshake may already be in
	// net/http's buffer. The corkConn hands them out before it reads the
	// socket, so they pass its frame tracker like all the others.
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		w.conn.early = bytes.Clone(early)
	}
	br := bufio.NewReaderSize(w.conn, connReadBuffer)
	return w.conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.conn, connWriteBuffer)), nil
}
