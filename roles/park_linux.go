//go:build linux

package roles

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// readPoller is the node's readiness poller: one epoll instance and one
// goroutine that waits on it. Each parked socket is registered level
// triggered and one-shot, with EPOLLRDHUP so that a peer that hangs up
// wakes its reader too; arming it again on the next park reports bytes
// that arrived in between at once. The socket stays registered with the
// Go runtime's own poller as well (an epoll set may share a socket with
// another), so the reader goroutine reads it as any net.Conn. The epoll
// instance itself is waited on through the Go runtime's poller (it is
// readable when it has events), so the poller goroutine parks like any
// goroutine blocked on a socket, instead of holding a thread in
// epoll_wait and handing it back to the scheduler on every wake. The
// zero value is ready: the epoll instance and its goroutine start with
// the first park. Server.Close stops it.
type readPoller struct {
	pollerGauge

	mu     sync.Mutex
	ep     *os.File // the epoll instance, epfd
	epfd   int
	evfd   int // written by close, to end the wait
	conns  map[uint64]*session
	next   uint64 // tokens start at 1; 0 is evfd
	closed bool
	done   chan struct{}
}

const parkEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func (p *readPoller) startLocked() error {
	if p.closed {
		return errors.New("the node is closing")
	}
	if p.conns != nil {
		return nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return fmt.Errorf("epoll fd: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		unix.Close(evfd)
		return fmt.Errorf("epoll fd: %w", err)
	}
	p.ep, p.epfd, p.evfd = ep, epfd, evfd
	p.conns = map[uint64]*session{}
	p.next = 1
	p.done = make(chan struct{})
	go p.loop(rc, p.done)
	return nil
}

// register gives ss its token, before its first park; fresh reports
// that this is the first.
func (p *readPoller) register(ss *session) (fresh bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startLocked(); err != nil {
		return false, err
	}
	if ss.pollTok == 0 {
		ss.pollTok = p.next
		p.next++
		p.conns[ss.pollTok] = ss
		fresh = true
	}
	return fresh, nil
}

// arm registers ss's socket for one wake when it is readable (added the
// first time, modified after). Only the goroutine that parks ss calls it
// (its reader, or the poller's after reading pongs), after register; ctl
// is that goroutine's own epollCtl (nil: a new one).
func (p *readPoller) arm(ss *session, fresh bool, ctl *epollCtl) error {
	if ctl == nil {
		ctl = newEpollCtl()
	}
	p.mu.Lock()
	ctl.epfd = p.epfd
	p.mu.Unlock()
	ctl.ev = unix.EpollEvent{Events: parkEvents, Fd: int32(uint32(ss.pollTok)), Pad: int32(uint32(ss.pollTok >> 32))}
	ctl.op = unix.EPOLL_CTL_MOD
	if fresh {
		ctl.op = unix.EPOLL_CTL_ADD
	}
	ctl.err = nil
	// Control holds the socket open while epoll_ctl runs, so the number
	// cannot be closed and reused under it.
	err := ss.raw.rc.Control(ctl.fn)
	if err == nil {
		err = ctl.err
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// epollCtl is one epoll_ctl call on a socket, with its closure made once:
// the poller's goroutine re-arms every socket it read a pong from with
// the same one, allocating nothing.
type epollCtl struct {
	epfd, op int
	ev       unix.EpollEvent
	err      error
	fn       func(fd uintptr)
}

func newEpollCtl() *epollCtl {
	c := &epollCtl{}
	c.fn = func(fd uintptr) { c.err = unix.EpollCtl(c.epfd, c.op, int(fd), &c.ev) }
	return c
}

// pongReader is the poller's goroutine's reader of woken sockets: one
// non-blocking read into its own buffer, with closures made once.
type pongReader struct {
	buf  [pongReadSize]byte
	n    int
	err  error
	read func(fd uintptr) bool
	ctl  *epollCtl
}

// pongReadSize holds ten pongs with no payload (six bytes each, masked).
const pongReadSize = 64

func newPongReader() *pongReader {
	r := &pongReader{ctl: newEpollCtl()}
	r.read = func(fd uintptr) bool {
		r.n, r.err = unix.Read(int(fd), r.buf[:])
		return true // never wait: the socket was reported readable
	}
	return r
}

// absorbPongs reads a woken parked socket on the poller's goroutine and
// reports whether all it held were pongs, now consumed: the connection
// may park again at once. Otherwise what was read goes to the reader
// (early, ahead of the socket, through the frame tracker and the byte
// budget like all bytes); a hang-up, an error or a budget in debt is left
// for the reader to meet. Only the goroutine that took the session out of
// the parked state calls it.
func (c *corkConn) absorbPongs(r *pongReader) bool {
	if c.rc == nil || c.owner == nil || !c.frames.idle() || len(c.early) > 0 || len(c.rdata) > 0 {
		return false
	}
	if c.budget != nil && time.Now().Before(c.budget.next) {
		return false // the reader's read waits until it is paid
	}
	r.n, r.err = 0, nil
	if err := c.rc.Read(r.read); err != nil {
		return false
	}
	if r.err == unix.EAGAIN {
		return true // nothing after all: park again
	}
	if r.err != nil || r.n <= 0 {
		return false // EOF or an error: the reader meets it and ends the session
	}
	b := r.buf[:r.n]
	if !pongsOnly(b) {
		c.early = bytes.Clone(b)
		return false
	}
	c.frames.feed(b)
	if c.budget != nil {
		c.budget.charge(len(b))
	}
	c.owner.touch() // a pong is a sign of life
	return true
}

// readable is the poller's answer to a parked socket that has bytes or a
// peer that hung up. Pongs, the answers to the node's pings and most of
// what an idle connection ever sends, are read right here and the
// connection parks again at once: no reader goroutine, no 25 ms wait, no
// read through the library (whose read of a control frame allocates a
// context, a timer and wrapped errors, about 1.4 KB of garbage per pong,
// which grew the heap between collections). Anything else starts a reader.
func (p *readPoller) readable(ss *session, r *pongReader) {
	if !ss.parkSt.CompareAndSwap(readerParked, readerRunning) {
		return
	}
	p.parked.Add(-1)
	if ss.raw.absorbPongs(r) {
		p.pongs.Add(1)
		if ss.park(r.ctl) {
			return
		}
	}
	p.wakes.Add(1)
	go ss.run()
}

// forget drops ss once its reader has ended for good. Its socket stays
// in the epoll set until it is closed (the kernel then drops it): at most
// one more event can come, for a token no longer known, and it is
// ignored; that costs less than an epoll_ctl per connection.
func (p *readPoller) forget(ss *session) {
	if ss.pollTok == 0 {
		return
	}
	p.mu.Lock()
	delete(p.conns, ss.pollTok)
	p.mu.Unlock()
}

func (p *readPoller) loop(rc syscall.RawConn, done chan struct{}) {
	defer close(done)
	events := make([]unix.EpollEvent, 128)
	woken := make([]*session, 0, 128)
	pr := newPongReader()
	for {
		var n int
		var werr error
		// Take what is ready without waiting; when nothing is, the
		// runtime parks this goroutine until the epoll fd is readable.
		err := rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			return n > 0 || werr != nil && werr != unix.EINTR
		})
		if err != nil || werr != nil {
			return
		}
		woken = woken[:0]
		stop := false
		p.mu.Lock()
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if tok == 0 {
				stop = true
				continue
			}
			if ss := p.conns[tok]; ss != nil {
				woken = append(woken, ss)
			}
		}
		p.mu.Unlock()
		for i, ss := range woken {
			p.readable(ss, pr)
			woken[i] = nil
		}
		if stop {
			return
		}
	}
}

// close stops the poller's goroutine. Sessions still parked then (none,
// after Server.Close has shut every session down) are not woken again.
func (p *readPoller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	started := p.conns != nil
	p.mu.Unlock()
	if !started {
		return
	}
	var one = [8]byte{1}
	unix.Write(p.evfd, one[:])
	<-p.done
	p.ep.Close()
	unix.Close(p.evfd)
}

// parkable reports whether a connection on rc can be parked.
func parkable(rc syscall.RawConn) bool { return rc != nil }

// writeMore writes p with MSG_MORE: the kernel keeps it until more is
// written or the socket is closed (at most 200 ms), so the close that
// follows sends it in the same segment as the FIN.
func (c *corkConn) writeMore(p []byte) (n int, err error) {
	werr := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, e := unix.SendmsgN(int(fd), p[n:], nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN {
				return false // wait until writable
			}
			if e != nil {
				err = e
				return true
			}
			n += m
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}
