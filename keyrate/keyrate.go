// Package keyrate owns a token bucket per key (a client address, a user)
// in a table of bounded size. It has two owners, posts (read and subscribe
// limits) and roles (the per-address registration limit), and imports
// nothing of the project, so neither has to import the other.
//
// When the table is full, a new key evicts the key used least recently.
// Every key that is in use keeps its own bucket, so an adversary who fills
// the table with keys it keeps busy can neither grow memory nor share a
// bucket with a new legitimate client: the worst it buys is that its own
// least recent keys start again with a full bucket, which is what a new
// key of its own would have bought it anyway.
package keyrate

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is safe for concurrent use. A nil *Limiter admits everything.
type Limiter struct {
	r     rate.Limit
	burst int
	max   int

	mu  sync.Mutex
	m   map[string]*list.Element // of *entry
	lru list.List                // front: used most recently
	ev  uint64
}

type entry struct {
	key string
	lim *rate.Limiter
}

// New returns a limiter of perSecond tokens a second and burst per key,
// keeping at most maxKeys keys (at least 1).
func New(perSecond float64, burst, maxKeys int) *Limiter {
	return &Limiter{r: rate.Limit(perSecond), burst: burst, max: max(maxKeys, 1), m: map[string]*list.Element{}}
}

// Allow takes one token of key's bucket at now. When there is none it says
// how long until there is.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var lim *rate.Limiter
	if e := l.m[key]; e != nil {
		l.lru.MoveToFront(e)
		lim = e.Value.(*entry).lim
	} else {
		if len(l.m) >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.m, old.Value.(*entry).key)
			l.ev++
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[key] = l.lru.PushFront(&entry{key, lim})
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len is the number of keys held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// Evicted is how many keys have been evicted to make room for new ones.
func (l *Limiter) Evicted() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ev
}
