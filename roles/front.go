package roles

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The front door: the node's own accept loop for a listener without TLS
// on a node with the db role. A login storm is almost only WebSocket
// upgrades, and net/http spends on each what the upgraded connection
// never uses: a 4 KiB read and a 4 KiB write buffer that a hijack does not
// give back, two cancellable contexts, a background read, echo's context
// and middlewares, and a goroutine that only starts the session's. So each
// accepted connection's first request is read here, into a pooled buffer:
// a plain WebSocket upgrade (GET /ws or GET / over HTTP/1.1, with Upgrade
// and Host, no body) is answered here and its session runs on this
// goroutine; any other request, and any this parser refuses, goes to
// net/http with the bytes read so far put back in front, so net/http sees
// the connection exactly as the client sent it (and answers a malformed
// request itself). Both paths answer an upgrade with Server.upgrade.
//
// The bounds are net/http's, and no connection gets them twice: the
// request head must arrive within --read-header-timeout and be at most
// frontHeadMax bytes; a connection handed to net/http has sent its whole
// head already (net/http parses it again from the bytes read here, with
// no wait for the client).

// maxHeadBytes bounds a request head on the node's listener, for the
// front door and net/http alike (http.Server.MaxHeaderBytes; net/http
// allows 4 KiB on top, and so does frontHeadMax). net/http's own default,
// 1 MiB, let a client that sends a long head slowly hold about that much
// of the node's memory until --read-header-timeout; no request occase
// serves needs more than a few KiB. A longer head is answered 431.
const maxHeadBytes = 64 << 10

const frontHeadMax = maxHeadBytes + 4096

// frontDoor is the listener net/http serves: it hands on the connections
// whose first request the front door did not take.
type frontDoor struct {
	s     *Server
	l     net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	err   error // why the accept loop stopped (nil: closed)
}

func newFrontDoor(s *Server, l net.Listener) *frontDoor {
	f := &frontDoor{s: s, l: l, conns: make(chan net.Conn), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *frontDoor) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.done:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.err != nil {
			return nil, f.err
		}
		return nil, net.ErrClosed
	}
}

func (f *frontDoor) Close() error {
	f.stop(nil)
	return f.l.Close()
}

func (f *frontDoor) Addr() net.Addr { return f.l.Addr() }

func (f *frontDoor) stop(err error) {
	f.once.Do(func() {
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		close(f.done)
	})
}

// run accepts until the listener fails. Like net/http, it waits and tries
// again after a temporary error (out of file descriptors), from 5 ms up
// to 1 s; any other error ends it and is what Accept returns.
func (f *frontDoor) run() {
	var delay time.Duration
	for {
		nc, err := f.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-f.done:
					return
				}
			}
			f.stop(err)
			return
		}
		delay = 0
		go f.s.front(nc, f)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// pass gives c to net/http, or closes it if the node is closing.
func (f *frontDoor) pass(c net.Conn) {
	select {
	case f.conns <- c:
	case <-f.done:
		c.Close()
	}
}

// frontRead is a connection's first request being read: the reader reads
// through rec, which keeps every byte for net/http in case the request is
// not the front door's. Pooled.
type frontRead struct {
	rec recorder
	br  *bufio.Reader
}

var frontReads = sync.Pool{New: func() any {
	fr := &frontRead{}
	fr.br = bufio.NewReaderSize(&fr.rec, 1024)
	return fr
}}

// recorder reads from c, at most frontHeadMax bytes, and keeps what it
// read and the error that ended its reading, if one did.
type recorder struct {
	c   net.Conn
	buf []byte
	err error
}

var errHeadTooLong = errors.New("request head too long")

func (r *recorder) Read(p []byte) (int, error) {
	room := frontHeadMax - len(r.buf)
	if room <= 0 {
		r.err = errHeadTooLong
		return 0, errHeadTooLong
	}
	n, err := r.c.Read(p[:min(len(p), room)])
	r.buf = append(r.buf, p[:n]...)
	if err != nil {
		r.err = err
	}
	return n, err
}

// front reads nc's first request and serves it when it is a plain
// WebSocket upgrade; it hands nc to net/http otherwise.
func (s *Server) front(nc net.Conn, f *frontDoor) {
	growStack()
	if d := s.cfg.ReadHeaderTimeout; d > 0 {
		nc.SetReadDeadline(time.Now().Add(d))
	}
	fr := frontReads.Get().(*frontRead)
	fr.rec.c = nc
	req, err := http.ReadRequest(fr.br)
	// The parser may see a partial line as a whole one when the read
	// under it failed (bufio's ReadLine returns the bytes first, the
	// error on the next call): the read's own error decides.
	if err != nil && (endsConn(err) || fr.rec.err != nil && endsConn(fr.rec.err)) {
		// The client was too slow (--read-header-timeout is spent:
		// net/http would not get a second one) or went away. net/http
		// too closes without an answer then.
		why := "gone"
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(fr.rec.err, os.ErrDeadlineExceeded) {
			why = "timeout"
		}
		if len(fr.rec.buf) > 0 || why == "timeout" { // a connection that sent nothing and left is no refusal
			s.m.heads.WithLabelValues(why).Inc()
		}
		nc.Close()
		fr.release()
		return
	}
	if err != nil && (errors.Is(err, errHeadTooLong) || errors.Is(fr.rec.err, errHeadTooLong)) {
		w := &frontWriter{nc: nc, h: make(http.Header, 2)}
		plainAnswer(w, http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large\n")
		s.m.heads.WithLabelValues("too_large").Inc()
		w.finish()
		fr.release()
		return
	}
	if err != nil || !plainUpgrade(req) {
		// net/http reads the request again from the start: the bytes
		// read here, then the socket.
		f.pass(&replayConn{Conn: nc, pending: bytes.Clone(fr.rec.buf)})
		fr.release()
		return
	}
	var early []byte
	if n := fr.br.Buffered(); n > 0 {
		b, _ := fr.br.Peek(n)
		early = bytes.Clone(b)
	}
	fr.release()
	nc.SetReadDeadline(time.Time{})
	req.RemoteAddr = nc.RemoteAddr().String()

	w := &frontWriter{nc: nc, early: early, h: make(http.Header, 4)}
	ss := s.upgrade(w, req)
	route := req.URL.Path
	s.m.httpReqs.WithLabelValues(route, http.MethodGet, strconv.Itoa(w.code)).Inc()
	if ss == nil {
		w.finish()
		return
	}
	defer s.handlers.Done()
	ss.serve()
}

// endsConn: a read error after which the connection is closed, not
// handed on (a timeout, the end of the stream, a reset). A request the
// parser refuses goes to net/http, which answers it.
func endsConn(err error) bool {
	if errors.Is(err, errHeadTooLong) {
		return false
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

func (fr *frontRead) release() {
	fr.br.Reset(&fr.rec)
	fr.rec.c, fr.rec.err = nil, nil
	if cap(fr.rec.buf) > 4096 {
		fr.rec.buf = nil // a long head's buffer is not kept
	} else {
		fr.rec.buf = fr.rec.buf[:0]
	}
	frontReads.Put(fr)
}

// plainUpgrade: the requests the front door answers itself.
func plainUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && r.ProtoMajor == 1 && r.ProtoMinor == 1 &&
		(r.URL.Path == "/ws" || r.URL.Path == "/") && r.Host != "" &&
		r.Header.Get("Upgrade") != "" && r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// replayConn is a connection handed to net/http: its reads return the
// bytes the front door read first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn lets a WebSocket that net/http upgraded park (park.go), once
// every replayed byte has been read: the poller reads the socket itself.
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok || len(c.pending) > 0 {
		return nil, errors.New("no raw connection")
	}
	return sc.SyscallConn()
}

// frontWriter is the http.ResponseWriter the front door gives
// websocket.Accept: Hijack writes the 101 and hands over the connection
// (wrapped in a corkConn, with the bytes the client sent after its
// request); any other answer is collected and written by finish.
type frontWriter struct {
	nc    net.Conn
	early []byte
	h     http.Header
	code  int
	body  []byte
	conn  *corkConn // set by Hijack
}

func (w *frontWriter) Header() http.Header { return w.h }

func (w *frontWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *frontWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, b...)
	return len(b), nil
}

func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.conn != nil {
		return nil, nil, errors.New("connection already hijacked")
	}
	if _, err := w.nc.Write(appendHead(make([]byte, 0, 160), w.code, w.h)); err != nil {
		return nil, nil, err
	}
	w.conn = newCorkConn(w.nc)
	w.conn.early = w.early
	br := bufio.NewReaderSize(w.conn, connReadBuffer)
	return w.conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.conn, connWriteBuffer)), nil
}

// finish writes an answer that was not an upgrade and closes the
// connection (it is not kept alive: a client that was refused a WebSocket
// dials again).
func (w *frontWriter) finish() {
	if w.conn != nil {
		return
	}
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.h.Set("Content-Length", strconv.Itoa(len(w.body)))
	w.h.Set("Connection", "close")
	w.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	w.nc.Write(append(appendHead(nil, w.code, w.h), w.body...))
	w.nc.Close()
}

// appendHead appends an HTTP/1.1 status line and header block.
func appendHead(b []byte, code int, h http.Header) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}
