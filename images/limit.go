package images

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// Reasons an upload is refused a slot (503, with Retry-After).
const (
	reasonBusy        = "busy"         // every slot of the node is taken
	reasonAddressBusy = "address_busy" // this client address has its share
	reasonNameBusy    = "name_busy"    // the same name is being uploaded
)

// reasonNoSpace refuses an upload (507) while the store's file system is
// under its free-space threshold (diskguard.go).
const reasonNoSpace = "insufficient_storage"

// gate hands out upload slots: at most max at once on the node, perKey for
// one client address, and one per name. A name already being uploaded, or
// an address that holds its share (slots and waits together), is refused
// at once. A request that finds only the node full waits in line, up to
// its deadline, for a slot; at most max requests wait (past that: busy at
// once), so a few slow uploads make others fail fast rather than queue
// without end. Each release hands its slot to the first in line and wakes
// that one only.
type gate struct {
	max, perKey int

	mu     sync.Mutex
	total  int            // slots taken
	byKey  map[string]int // slots taken and waits, per address
	byName map[string]bool
	line   []*waiter // FIFO; at most max
}

type waiter struct {
	ready   chan struct{} // buffered: the releaser never blocks
	granted bool          // under mu: the slot is this waiter's
}

func newGate(max, perKey int) *gate {
	return &gate{max: max, perKey: perKey, byKey: map[string]int{}, byName: map[string]bool{}}
}

// acquire takes a slot for an upload of name from client key, waiting at
// most wait. It returns a release func, or the reason it could not. A name
// already being uploaded is refused at once: that upload will either store
// it (then this one would get 409) or fail and free it.
func (g *gate) acquire(ctx context.Context, key, name string, wait time.Duration) (release func(), reason string) {
	g.mu.Lock()
	switch {
	case g.byName[name]:
		g.mu.Unlock()
		return nil, reasonNameBusy
	case g.byKey[key] >= g.perKey:
		g.mu.Unlock()
		return nil, reasonAddressBusy
	case g.total < g.max:
		g.total++
		g.take(key, name)
		g.mu.Unlock()
		return func() { g.release(key, name) }, ""
	case wait <= 0 || len(g.line) >= g.max:
		g.mu.Unlock()
		return nil, reasonBusy
	}
	// The wait holds the address's share and the name, as a slot would.
	g.take(key, name)
	w := &waiter{ready: make(chan struct{}, 1)}
	g.line = append(g.line, w)
	g.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return func() { g.release(key, name) }, ""
	case <-t.C:
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.granted {
		// Handed a slot as the wait ended: use it rather than pass it on.
		return func() { g.release(key, name) }, ""
	}
	if i := slices.Index(g.line, w); i >= 0 {
		g.line = slices.Delete(g.line, i, i+1)
	}
	g.drop(key, name)
	return nil, reasonBusy
}

// take and drop count key's and name's share; g.mu is held.
func (g *gate) take(key, name string) {
	g.byKey[key]++
	g.byName[name] = true
}

func (g *gate) drop(key, name string) {
	if g.byKey[key]--; g.byKey[key] <= 0 {
		delete(g.byKey, key)
	}
	delete(g.byName, name)
}

func (g *gate) release(key, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drop(key, name)
	if len(g.line) == 0 {
		g.total--
		return
	}
	// The slot passes to the first in line (total unchanged).
	w := g.line[0]
	g.line[0] = nil
	g.line = g.line[1:]
	w.granted = true
	w.ready <- struct{}{}
}

// waiting returns the number of requests in line.
func (g *gate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.line)
}

// inFlight returns the number of slots taken.
func (g *gate) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

// remoteHost is the default client key: the host part of r.RemoteAddr, the
// peer's address without its port.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pacedReader reads an upload's body under a read deadline that moves with
// the bytes received: after grace, the body must have come at minRate bytes
// a second on average, or the next read fails with os.ErrDeadlineExceeded.
// So a body that trickles is cut as soon as it falls behind, not after the
// whole upload timeout. end is the overall deadline, never extended.
type pacedReader struct {
	r       io.Reader
	rc      *http.ResponseController
	start   time.Time
	end     time.Time
	grace   time.Duration
	minRate int64 // bytes a second; <= 0: only the overall deadline

	n        int64
	deadline time.Time
	// slow reports whether the deadline now set is the rate's rather than
	// the overall one, to tell "too_slow" from "timeout".
	slow bool
	err  error // from SetReadDeadline, e.g. not supported
}

func newPacedReader(r io.Reader, rc *http.ResponseController, start time.Time, timeout, grace time.Duration, minRate int64) *pacedReader {
	p := &pacedReader{r: r, rc: rc, start: start, end: start.Add(timeout), grace: grace, minRate: minRate}
	p.move()
	return p
}

func (p *pacedReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		p.move()
	}
	return n, err
}

// move sets the read deadline to the moment the average rate since start
// would fall below minRate if nothing more arrived.
func (p *pacedReader) move() {
	d, slow := p.end, false
	if p.minRate > 0 {
		// Seconds as a float: n*1e9 overflows int64 past 9 GB.
		due := p.grace
		if earned := time.Duration(float64(p.n) / float64(p.minRate) * float64(time.Second)); earned > due {
			due = earned
		}
		if r := p.start.Add(due); r.Before(p.end) {
			d, slow = r, true
		}
	}
	if d.Equal(p.deadline) {
		return
	}
	p.deadline, p.slow = d, slow
	if err := p.rc.SetReadDeadline(d); err != nil && p.err == nil {
		p.err = err
	}
}

// done is called once the whole body is in: the rate no longer applies,
// and net/http's background read of the idle connection must not hit the
// rate's deadline while the upload is checked and stored, which would
// cancel the request's context. The overall deadline stays.
func (p *pacedReader) done() {
	if p.slow {
		p.deadline, p.slow = p.end, false
		p.rc.SetReadDeadline(p.end)
	}
}

// timedOut reports whether err is the read deadline passing.
func timedOut(err error) bool {
	return err != nil && errors.Is(err, os.ErrDeadlineExceeded)
}

// readBody reads all of r, which must stop with an error past limit bytes
// (http.MaxBytesReader). Memory follows the bytes that arrived, never the
// length the client declared: the buffer starts at firstChunk (or the
// declared length, when smaller) and doubles as it fills, up to limit+1.
// So a client that declares 10 MB and sends 10 bytes costs 32 KiB.
func readBody(r io.Reader, declared, limit int64) ([]byte, error) {
	size := int64(firstChunk)
	if declared >= 0 && declared < size {
		size = declared + 1 // room for the read that sees EOF
	}
	size = min(size, limit+1)
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			// Not append: past 256 KiB it grows by 1.25 and rounds up,
			// which at the limit would overshoot it by a sixth.
			next := make([]byte, len(buf), max(min(int64(cap(buf))*2, limit+1), int64(len(buf))+1))
			copy(next, buf)
			buf = next
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// firstChunk is the buffer an upload starts with; about an app's thumbnail.
const firstChunk = 32 << 10
