package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Every command runs within the command timeout (Options.Timeout), so a
// stuck Redis fails a request instead of hanging its session. A
// context.WithTimeout per call costs an allocation, a runtime timer set and
// stopped, and was a tenth of a login's allocated bytes. Calls made under a
// context that is never cancelled (every session's, every background
// loop's) share one deadline context instead: one per tick, made by the
// first call of the tick, ending the timeout after the tick's end. A call
// so bounded gets at least the timeout and at most the timeout plus one
// tick; the context's own timer releases it when it ends.

// boundTicks: the tick is the timeout over this, so the bound is at most
// about 3 % longer than asked.
const boundTicks = 32

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // called by the context's timer; kept for vet
	// before: calls starting before it may share ctx (its deadline is
	// before + timeout).
	before time.Time
}

// Deadlines hands out shared deadline contexts of one duration (a node's
// shutdown budget uses them too): see NewDeadlines.
type Deadlines = deadlines

// NewDeadlines returns shared contexts that end at least d and at most
// d/32 (or 1 ms) after they are asked for; they end only by their
// deadline. A Client bounding a call made under one keeps it when it ends
// before the command timeout would.
func NewDeadlines(d time.Duration) *Deadlines { return newDeadlines(d) }

// Context returns the shared context of now.
func (d *deadlines) Context() context.Context { return d.get(time.Now()) }

type deadlines struct {
	tmo, tick time.Duration
	mu        sync.Mutex // serialises making the next one
	cur       atomic.Pointer[sharedDeadline]
}

func newDeadlines(tmo time.Duration) *deadlines {
	return &deadlines{tmo: tmo, tick: max(tmo/boundTicks, time.Millisecond)}
}

// get returns a context whose deadline is at least tmo and at most tmo
// plus tick from now.
func (d *deadlines) get(now time.Time) context.Context {
	if s := d.cur.Load(); s != nil && now.Before(s.before) {
		return s.ctx
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.cur.Load(); s != nil && now.Before(s.before) {
		return s.ctx
	}
	before := now.Add(d.tick)
	ctx, cancel := context.WithDeadline(context.Background(), before.Add(d.tmo))
	d.cur.Store(&sharedDeadline{ctx: sharedCtx{ctx}, cancel: cancel, before: before})
	return sharedCtx{ctx}
}

// sharedCtx marks a context of deadlines: no values, and it ends only by
// its deadline.
type sharedCtx struct{ context.Context }

func noCancel() {}

// bound returns ctx bounded by the command timeout, and what to call when
// done with it.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Done() == nil && ctx == context.Background() {
		// Nothing to inherit: no cancellation, no values.
		return c.dl.get(time.Now()), noCancel
	}
	if s, ok := ctx.(sharedCtx); ok {
		// Both end only by their deadlines: the earlier one is the bound.
		now := time.Now()
		own := c.dl.get(now)
		if dl, _ := s.Deadline(); dl.Before(now.Add(c.tmo)) {
			return s, noCancel
		}
		return own, noCancel
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= c.tmo {
		// The caller's bound is the tighter one already.
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, c.tmo)
}
