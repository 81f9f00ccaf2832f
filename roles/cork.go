package roles

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
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
}

func newCorkConn(nc net.Conn) *corkConn {
	return &corkConn{Conn: nc}
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
		return c.Conn.Read(p)
	}
	return c.budget.read(c, p)
}

func (c *corkConn) Close() error {
	c.mu.Lock()
	if !c.isClosed {
		c.isClosed = true
		if c.closing != nil {
			close(c.closing)
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked {
		*c.buf = append(*c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
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

// Buffer sizes for what the library reads and writes through: frames are
// small, reads larger than the buffer go straight to the socket, and
// whatever is written goes to the cork buffer; net/http's 4 KiB buffers
// would be most of an idle connection's memory.
const (
	connReadBuffer  = 1024
	connWriteBuffer = 512
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
	br := bufio.NewReaderSize(w.conn, connReadBuffer)
	// Bytes the client sent right after its handshake may already be in
	// net/http's buffer. The library keeps only what is buffered in the
	// reader it gets (it re-points the reader at the connection), so they
	// are moved into the new reader's buffer, not left behind in a
	// MultiReader.
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), w.conn), max(connReadBuffer, n))
		if _, err := br.Peek(n); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return w.conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.conn, connWriteBuffer)), nil
}
