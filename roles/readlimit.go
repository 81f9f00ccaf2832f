package roles

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// What one connection may make the node read, checked before the bytes
// are decoded (docs/security.md, "Connection limits"):
//
//   - bytes per second (a token bucket on the socket under the WebSocket
//     library): a connection over it is not read until its debt is paid,
//     so TCP pushes back on the client and the node spends nothing;
//   - frames per second (a token bucket taken before each frame is read):
//     the same pause;
//   - strikes: every frame that had to wait for either budget, and every
//     request refused by a rate limit, is one; a connection with more than
//     --abuse-limit strikes within --abuse-window is closed with 4006.

// byteBudget paces a corkConn's reads. Reads are serialised by the
// WebSocket library (and the poller reads a parked connection's pongs
// only while it owns it), so it needs no lock. It is a token bucket kept
// as one time, tat, when the bucket is full again (the generic cell rate
// algorithm): the same pacing as a rate.Limiter with nothing allocated,
// so that an idle connection, whose pongs are charged too, holds no
// limiter.
type byteBudget struct {
	nsByte   float64       // 1/rate in ns: what one byte adds to tat
	window   time.Duration // burst/rate: how far tat may run ahead of now without a pause
	burst    int
	tat      time.Time
	next     time.Time                // when the bytes read so far are paid for
	throttle func(wait time.Duration) // told of each pause
	paused   atomic.Bool              // a read paused since the reader last asked
}

func newByteBudget(bytesPerSec float64, burst int, throttle func(time.Duration)) *byteBudget {
	if bytesPerSec <= 0 || burst <= 0 {
		return nil
	}
	return &byteBudget{nsByte: 1e9 / bytesPerSec, window: time.Duration(float64(burst) / bytesPerSec * 1e9), burst: burst, throttle: throttle}
}

// read reads from c's socket within the budget: it first waits until what
// was read before is paid for, then reads at most burst bytes and charges
// them. The wait ends early when the connection closes.
func (b *byteBudget) read(c *corkConn, p []byte) (int, error) {
	if d := time.Until(b.next); d > 0 {
		b.throttle(d)
		b.paused.Store(true)
		if !pause(d, c.closed()) {
			return 0, errConnClosed
		}
	}
	if len(p) > b.burst {
		p = p[:b.burst]
	}
	n, err := c.readSocket(p)
	if n > 0 {
		b.charge(n)
	}
	return n, err
}

// charge counts n bytes read against the budget.
func (b *byteBudget) charge(n int) { b.chargeAt(time.Now(), n) }

func (b *byteBudget) chargeAt(now time.Time, n int) {
	if b.tat.Before(now) {
		b.tat = now
	}
	b.tat = b.tat.Add(time.Duration(float64(n) * b.nsByte))
	b.next = b.tat.Add(-b.window)
}

// pause waits for d or until stop closes; false when stop closed.
func pause(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// newAbuseLimiter allows limit strikes per window, refilled evenly.
func newAbuseLimiter(limit int, window time.Duration) *rate.Limiter {
	if limit <= 0 || window <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(float64(limit)/window.Seconds()), limit)
}

// releaseLimiters drops the frame limiter while it is full, before the
// session parks: an idle connection holds none, and its next frame makes
// it again as it was (full). Per-user limiters are made at their
// first use (allowLazy). Only the reader, or the poller while it owns a
// parked session, calls it.
func (ss *session) releaseLimiters() {
	if l := ss.frameLim; l != nil && l.TokensAt(time.Now()) >= float64(l.Burst()) {
		ss.frameLim = nil
	}
}

// tookPause reports whether a read paused since it was last asked.
func (b *byteBudget) tookPause() bool { return b != nil && b.paused.Swap(false) }

// waitFrame takes a frame token before the next frame is read, pausing
// the reader when there is none; it reports whether it paused. A session
// already leaving reads on unpaced: it only looks for the close frame.
func (ss *session) waitFrame() bool {
	cfg := &ss.srv.cfg
	if cfg.ReadRateFrames <= 0 || ss.status() >= statusLeaving {
		return false
	}
	if ss.frameLim == nil {
		ss.frameLim = rate.NewLimiter(rate.Limit(cfg.ReadRateFrames), cfg.ReadBurstFrames)
	}
	d := ss.frameLim.Reserve().Delay()
	if d <= 0 {
		return false
	}
	ss.throttled("frames", d)
	select {
	case <-ss.leave:
	case <-ss.raw.closed():
	case <-time.After(d):
	}
	return true
}

func (ss *session) throttled(budget string, d time.Duration) {
	ss.srv.m.throttled(budget, d)
}

// strike records one over-limit event; the reader weighs them (overLimit)
// where it is safe to end the session.
func (ss *session) strike() { ss.strikes.Add(1) }

// overLimit reports whether the strikes so far exceed what the abuse
// window allows. Only the reader calls it; the limiter is made at the
// first strike, so a connection that never strikes holds none.
func (ss *session) overLimit() bool {
	n := ss.strikes.Swap(0)
	if n == 0 {
		return false
	}
	cfg := ss.srv.cfg
	if ss.abuse == nil {
		if ss.abuse = newAbuseLimiter(cfg.AbuseLimit, cfg.AbuseWindow); ss.abuse == nil {
			return false
		}
	}
	return !ss.abuse.AllowN(time.Now(), int(n))
}
