package posts

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyed is a token bucket per key (a client address or a user), with a
// bounded number of keys: when the table is full, buckets that have
// refilled (their keys idle) are dropped; if it is still full, new keys
// share one overflow bucket, so that an adversary with many keys cannot grow
// the table, only compete with itself for the shared bucket.
type keyed struct {
	r     rate.Limit
	burst int
	max   int

	mu       sync.Mutex
	m        map[string]*rate.Limiter
	overflow *rate.Limiter
	swept    time.Time
}

// newKeyed returns nil (no limit) when perSecond is negative.
func newKeyed(perSecond float64, burst, maxKeys int) *keyed {
	if perSecond < 0 {
		return nil
	}
	return &keyed{r: rate.Limit(perSecond), burst: burst, max: maxKeys,
		m: map[string]*rate.Limiter{}, overflow: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// allow takes one token of key's bucket at now. When there is none it
// says how long until there is.
func (k *keyed) allow(key string, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.m[key]
	if l == nil {
		if len(k.m) >= k.max && now.Sub(k.swept) >= time.Second {
			k.swept = now
			for key, l := range k.m {
				if l.TokensAt(now) >= float64(k.burst) {
					delete(k.m, key)
				}
			}
		}
		if len(k.m) < k.max {
			l = rate.NewLimiter(k.r, k.burst)
			k.m[key] = l
		} else {
			l = k.overflow
		}
	}
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}
