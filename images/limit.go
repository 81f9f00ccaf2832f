package images

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Reasons an upload is refused a slot (503, with Retry-After).
const (
	reasonBusy        = "busy"         // every slot of the node is taken
	reasonAddressBusy = "address_busy" // this client address has its share
	reasonNameBusy    = "name_busy"    // the same name is being uploaded
)

// gate hands out upload slots: at most max at once on the node, perKey for
// one client address, and one per name. A request that finds the node or
// its address full waits up to its deadline for a slot, then gives up, so a
// few slow uploads make others fail fast rather than queue without end.
type gate struct {
	max, perKey int

	mu     sync.Mutex
	total  int
	byKey  map[string]int
	byName map[string]bool
	// freed is closed, and replaced, each time a slot is released, waking
	// every waiter to look again. Waiters are few and short-lived.
	freed chan struct{}
}

func newGate(max, perKey int) *gate {
	return &gate{max: max, perKey: perKey, byKey: map[string]int{},
		byName: map[string]bool{}, freed: make(chan struct{})}
}

// acquire takes a slot for an upload of name from client key, waiting at
// most wait. It returns a release func, or the reason it could not. A name
// already being uploaded is refused at once: that upload will either store
// it (then this one would get 409) or fail and free it.
func (g *gate) acquire(ctx context.Context, key, name string, wait time.Duration) (release func(), reason string) {
	var timeout <-chan time.Time
	for {
		g.mu.Lock()
		switch {
		case g.byName[name]:
			reason = reasonNameBusy
		case g.byKey[key] >= g.perKey:
			reason = reasonAddressBusy
		case g.total >= g.max:
			reason = reasonBusy
		default:
			g.total++
			g.byKey[key]++
			g.byName[name] = true
			g.mu.Unlock()
			return func() { g.release(key, name) }, ""
		}
		freed := g.freed
		g.mu.Unlock()
		if reason == reasonNameBusy {
			return nil, reason
		}
		if timeout == nil {
			if wait <= 0 {
				return nil, reason
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-freed:
		case <-timeout:
			return nil, reason
		case <-ctx.Done():
			return nil, reason
		}
	}
}

func (g *gate) release(key, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.byKey[key]--; g.byKey[key] <= 0 {
		delete(g.byKey, key)
	}
	delete(g.byName, name)
	close(g.freed)
	g.freed = make(chan struct{})
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
