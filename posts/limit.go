package posts

import (
	"time"

	"github.com/occase/occase/keyrate"
)

// keyed is a token bucket per key (a client address or a user), with a
// bounded number of keys: see keyrate for how a full table makes room.
type keyed struct{ l *keyrate.Limiter }

// newKeyed returns nil (no limit) when perSecond is negative.
func newKeyed(perSecond float64, burst, maxKeys int) *keyed {
	if perSecond < 0 {
		return nil
	}
	return &keyed{keyrate.New(perSecond, burst, maxKeys)}
}

// allow takes one token of key's bucket at now. When there is none it
// says how long until there is.
func (k *keyed) allow(key string, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	return k.l.Allow(key, now)
}
