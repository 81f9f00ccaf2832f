package images

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// Reasons an upload is refused a slot (503, with Retry-After).
const (
	reasonBusy        = "busy"         // every slot of the node is taken
	reasonAddressBusy = "address_busy" // this client address has its share
	reasonNameBusy    = "name_busy"    // the same name is being uploaded
	// The upload had a slot, but the node was full and it was the
	// slowest: its slot went to a newcomer (see gate.preempt).
	reasonPreempted = "preempted"
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
// without end.
//
// Slots are shared fairly among networks (IPv4 /24, IPv6 /64, see subnetOf):
// a freed slot goes to the waiter whose network holds the fewest slots,
// first come first served among equals, and it wakes that one only. And a
// full node takes a slot back from the slowest upload for a waiter (see
// preempt), so uploads that trickle cannot hold every slot until their
// minimum rate or timeout cuts them.
type gate struct {
	max, perKey int
	// preemptAfter is how long a slot is its upload's before it can be
	// taken back; protectRate the average (bytes a second since the slot
	// was granted) at which it never is. protectRate <= 0: no preemption.
	preemptAfter time.Duration
	protectRate  int64

	mu       sync.Mutex
	total    int            // slots taken
	byKey    map[string]int // slots taken and waits, per address
	bySub    map[string]int // slots taken (not waits), per network
	byName   map[string]bool
	line     []*waiter // arrival order; at most max
	held     []*ticket // the slots taken, each at its index; at most max
	lastScan time.Time // of a poll's preempt, so waiters share one scan a tick
	// lost holds the addresses whose uploads were taken back in the last
	// lostFor, and when: they wait behind the others (see next). At most
	// 2*max entries; the oldest goes first.
	lost map[string]time.Time
}

// lostFor is how long an address whose upload was taken back waits behind
// others and takes no slot back itself, only freed ones: the uploader that
// was too slow a moment ago is the likeliest to be too slow again. Without
// it, slow uploaders from many networks took slots back from one another
// in a chain: each one cut came straight back for the next slot past
// preemptAfter, so every slot turned young at once and a newcomer waited
// for the next wave (about a second, in bench/abuse.sh).
const lostFor = time.Minute

// ticket is one upload's slot (or its wait for one).
type ticket struct {
	g              *gate
	key, sub, name string
	declared       int64 // Content-Length; < 0: unknown

	// Under g.mu.
	idx   int          // in g.held; -1 while waiting or once taken back
	paced *pacedReader // the body being read; nil until attach; set by its own upload

	once sync.Once
}

type waiter struct {
	tk      *ticket
	ready   chan struct{} // buffered: the releaser never blocks
	granted bool          // under mu: the slot is this waiter's
}

func newGate(max, perKey int) *gate {
	return &gate{max: max, perKey: perKey, byKey: map[string]int{}, bySub: map[string]int{}, byName: map[string]bool{},
		lost: map[string]time.Time{}}
}

// acquire is enter for callers that need only the release.
func (g *gate) acquire(ctx context.Context, key, name string, wait time.Duration) (release func(), reason string) {
	tk, why := g.enter(ctx, key, name, -1, wait)
	if tk == nil {
		return nil, why
	}
	return tk.release, ""
}

// enter takes a slot for an upload of name (declared bytes, < 0 unknown)
// from client key, waiting at most wait. It returns the slot's ticket, or
// the reason it could not. A name already being uploaded is refused at
// once: that upload will either store it (then this one would get 409) or
// fail and free it.
func (g *gate) enter(ctx context.Context, key, name string, declared int64, wait time.Duration) (*ticket, string) {
	tk := &ticket{g: g, key: key, sub: subnetOf(key), name: name, declared: declared, idx: -1}
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
		g.hold(tk)
		g.mu.Unlock()
		return tk, ""
	case wait <= 0 || len(g.line) >= g.max:
		g.mu.Unlock()
		return nil, reasonBusy
	}
	// The wait holds the address's share and the name, as a slot would.
	g.take(key, name)
	w := &waiter{tk: tk, ready: make(chan struct{}, 1)}
	g.line = append(g.line, w)
	g.preempt(time.Now())
	g.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	// Slots become preemptible as they age and slow down, with no event
	// to wake anyone: waiters look again every tick, one scan per tick
	// among them all.
	var poll <-chan time.Time
	if g.protectRate > 0 {
		tick := time.NewTicker(g.pollEvery())
		defer tick.Stop()
		poll = tick.C
	}
wait:
	for {
		select {
		case <-w.ready:
			return tk, ""
		case now := <-poll:
			g.mu.Lock()
			if !w.granted && now.Sub(g.lastScan) >= g.pollEvery()/2 {
				g.preempt(now)
			}
			g.mu.Unlock()
		case <-t.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.granted {
		// Handed a slot as the wait ended: use it rather than pass it on.
		return tk, ""
	}
	if i := slices.Index(g.line, w); i >= 0 {
		g.line = slices.Delete(g.line, i, i+1)
	}
	g.drop(key, name)
	return nil, reasonBusy
}

// pollEvery is how often waiters look for a slot to take back: a quarter
// of preemptAfter, within [5 ms, 250 ms].
func (g *gate) pollEvery() time.Duration {
	return min(max(g.preemptAfter/4, 5*time.Millisecond), 250*time.Millisecond)
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

// hold and unhold add tk to the slots taken and take it out; g.mu is held.
func (g *gate) hold(tk *ticket) {
	tk.idx = len(g.held)
	g.held = append(g.held, tk)
	g.bySub[tk.sub]++
}

func (g *gate) unhold(tk *ticket) {
	last := len(g.held) - 1
	g.held[tk.idx] = g.held[last]
	g.held[tk.idx].idx = tk.idx
	g.held[last] = nil
	g.held = g.held[:last]
	tk.idx = -1
	if g.bySub[tk.sub]--; g.bySub[tk.sub] <= 0 {
		delete(g.bySub, tk.sub)
	}
}

// release gives the slot back (once; later calls do nothing). A slot taken
// back by preempt has already gone to a waiter: only the address's and
// the name's shares are left to give back.
func (tk *ticket) release() {
	tk.once.Do(func() {
		g := tk.g
		g.mu.Lock()
		defer g.mu.Unlock()
		g.drop(tk.key, tk.name)
		if tk.idx < 0 {
			return
		}
		g.unhold(tk)
		if len(g.line) == 0 {
			g.total--
			return
		}
		// The slot passes to a waiter (total unchanged).
		g.grant(g.next(time.Now(), false))
	})
}

// attach tells the gate the body tk's upload reads, from which preempt
// learns its pace and through which it cuts it. A slot is never taken
// back before its body is attached.
func (tk *ticket) attach(p *pacedReader) {
	tk.g.mu.Lock()
	tk.paced = p
	tk.g.mu.Unlock()
}

// preempted reports whether the slot was taken back while the body came
// in; the upload is then answered 503 "preempted". Only the upload that
// attached the body asks. The body is cut before its slot goes, so an
// upload whose read failed for the cut always sees it here.
func (tk *ticket) preempted() bool { return tk.paced != nil && tk.paced.state.Load() == bodyCut }

// next returns the index in line of the waiter to serve: the one whose
// network holds the fewest slots; among equals, one whose address has not
// lost an upload to preempt lately; then the first to come. So a network
// that holds many slots waits behind one that holds none. With fresh, only
// a waiter whose address has not lost one will do; -1 if there is none.
// O(line).
func (g *gate) next(now time.Time, fresh bool) int {
	best, bestSubs, bestLost := -1, 0, false
	for i, w := range g.line {
		subs := g.bySub[w.tk.sub]
		t, lost := g.lost[w.tk.key]
		lost = lost && now.Sub(t) < lostFor
		if lost && fresh {
			continue
		}
		if best < 0 || subs < bestSubs || subs == bestSubs && bestLost && !lost {
			best, bestSubs, bestLost = i, subs, lost
		}
	}
	return best
}

// remember notes that key lost an upload to preempt at now; g.mu is held.
// When full it forgets what is past lostFor, or else the oldest: O(2*max)
// then, once per preemption at most.
func (g *gate) remember(key string, now time.Time) {
	if _, ok := g.lost[key]; !ok && len(g.lost) >= 2*g.max {
		oldest := ""
		for k, t := range g.lost {
			if now.Sub(t) >= lostFor {
				delete(g.lost, k)
			} else if oldest == "" || t.Before(g.lost[oldest]) {
				oldest = k
			}
		}
		if len(g.lost) >= 2*g.max {
			delete(g.lost, oldest)
		}
	}
	g.lost[key] = now
}

// grant gives a slot to the waiter at index i of the line; g.mu is held.
func (g *gate) grant(i int) {
	w := g.line[i]
	g.line = slices.Delete(g.line, i, i+1)
	g.hold(w.tk)
	w.granted = true
	w.ready <- struct{}{}
}

// preempt takes slots back for waiters while the node is full and there
// are uploads that may lose theirs: each preemptOne, O(slots + line), gives
// one slot away, so a scan is O(slots * line) at most. g.mu is held.
func (g *gate) preempt(now time.Time) {
	if g.protectRate <= 0 {
		return
	}
	g.lastScan = now
	for g.preemptOne(now) {
	}
}

// preemptOne takes a slot back for the waiter next names among those whose
// address has not lost an upload lately, when the node is full, from the
// upload doing worst among those that may lose theirs:
// held for at least preemptAfter, still receiving its body, averaging
// less than protectRate since the slot was granted, and from a network
// holding more slots than the waiter's (so that networks do not take
// slots from one another by turns, and one network never takes from
// itself). Worst is an upload that at its pace cannot finish its declared
// body before the upload timeout, then the slowest, then the oldest.
// It reports whether it did. g.mu is held.
func (g *gate) preemptOne(now time.Time) bool {
	if g.total < g.max || len(g.line) == 0 {
		return false
	}
	wi := g.next(now, true)
	if wi < 0 {
		return false
	}
	mine := g.bySub[g.line[wi].tk.sub]
	var victim *ticket
	var vDoomed bool
	var vRate float64
	var vStart time.Time
	for _, tk := range g.held {
		p := tk.paced
		if p == nil || g.bySub[tk.sub] <= mine || p.state.Load() != bodyReading {
			continue
		}
		heldFor := now.Sub(p.start)
		if heldFor < g.preemptAfter {
			continue
		}
		n := float64(p.got.Load())
		rate := n / heldFor.Seconds()
		if rate >= float64(g.protectRate) {
			continue
		}
		doomed := tk.declared > 0 && n+rate*p.end.Sub(now).Seconds() < float64(tk.declared)
		if victim == nil || doomed && !vDoomed ||
			doomed == vDoomed && (rate < vRate || rate == vRate && p.start.Before(vStart)) {
			victim, vDoomed, vRate, vStart = tk, doomed, rate, p.start
		}
	}
	// cut fails only if the whole body came in meanwhile: then it keeps
	// its slot, and the next scan looks again.
	if victim == nil || !victim.paced.cut() {
		return false
	}
	g.remember(victim.key, now)
	g.unhold(victim)
	g.grant(wi)
	return true
}

// subnetOf is the network a client key belongs to, for sharing slots
// among networks: an IPv4 address's /24, an IPv6 address's /64; a key
// that is already a prefix (roles groups IPv6 clients, --ipv6-prefix) is
// cut to at most /24 or /64 likewise. Anything else is its own network.
func subnetOf(key string) string {
	var a netip.Addr
	bits := 128
	if pre, err := netip.ParsePrefix(key); err == nil {
		a, bits = pre.Addr(), pre.Bits()
	} else if a, err = netip.ParseAddr(key); err != nil {
		return key
	}
	a = a.Unmap().WithZone("")
	want := 64
	if a.Is4() {
		want = 24
	}
	p, err := a.Prefix(min(bits, want))
	if err != nil {
		return key
	}
	return p.String()
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
// whole upload timeout. end is the overall deadline, never extended. The
// gate reads its progress (got, state) from other goroutines, and may cut
// it at once (cut) to give its slot to another upload.
type pacedReader struct {
	r       io.Reader
	rc      *http.ResponseController
	start   time.Time
	end     time.Time
	grace   time.Duration
	minRate int64 // bytes a second; <= 0: only the overall deadline

	n     int64
	got   atomic.Int64 // n, for the gate
	state atomic.Int32 // bodyReading, bodyIn or bodyCut; changed under mu

	mu       sync.Mutex // orders the deadlines set by Read, done and cut
	deadline time.Time
	// slow reports whether the deadline now set is the rate's rather than
	// the overall one, to tell "too_slow" from "timeout".
	slow bool
	err  error // from SetReadDeadline, e.g. not supported
}

// A body's states: being read, all in (no longer preemptible), or cut.
const (
	bodyReading = iota
	bodyIn
	bodyCut
)

func newPacedReader(r io.Reader, rc *http.ResponseController, start time.Time, timeout, grace time.Duration, minRate int64) *pacedReader {
	p := &pacedReader{r: r, rc: rc, start: start, end: start.Add(timeout), grace: grace, minRate: minRate}
	p.move()
	return p
}

func (p *pacedReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		p.got.Store(p.n)
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.Equal(p.deadline) || p.state.Load() == bodyCut {
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
// cancel the request's context. The overall deadline stays. It reports
// false if the body was cut first (its slot went to another upload).
func (p *pacedReader) done() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() == bodyCut {
		return false
	}
	p.state.Store(bodyIn)
	if p.slow {
		p.deadline, p.slow = p.end, false
		p.rc.SetReadDeadline(p.end)
	}
	return true
}

// cut ends the body's reading now: the read under way, or the next one,
// fails with os.ErrDeadlineExceeded. It reports false if the body is
// already all in.
func (p *pacedReader) cut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() != bodyReading {
		return false
	}
	p.state.Store(bodyCut)
	p.slow = false
	// A deadline long past wakes a blocked read at once.
	p.rc.SetReadDeadline(time.Unix(1, 0))
	return true
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

// refusePreempted answers an upload whose slot was taken back: 503
// "preempted" with Retry-After, and on HTTP/1 the connection is closed,
// as the rest of the body may still come.
func (s *Server) refusePreempted(c echo.Context, r *http.Request) error {
	h := c.Response().Header()
	if r.ProtoMajor == 1 {
		h.Set("Connection", "close")
	}
	h.Set("Retry-After", s.retryAfter)
	return s.fail(c, http.StatusServiceUnavailable, reasonPreempted)
}
