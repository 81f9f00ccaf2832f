package roles

import (
	"math/rand/v2"
	"time"

	"github.com/occase/occase/wire"
)

// tick is the session's one timer (one per connection, not two): it ends
// a session not logged in by its login deadline, and every third of the
// idle timeout it pings. A ping closes a connection that has sent nothing
// (no frame, no pong) for the idle timeout, and sends the others a ping
// frame. The ping goes through the outbox, first in its next batch, and
// nothing waits for its pong: the library's Ping would hold a goroutine
// per connection until the pong and leave a map behind in the connection;
// the pong, like every byte the peer sends, counts as activity when the
// reader sees it (corkConn.owner), or the poller does, which reads the
// pongs of a parked connection itself (readPoller.readable).
func (ss *session) tick() {
	cfg := ss.srv.cfg
	st := ss.status()
	if st >= statusLeaving {
		return
	}
	now := time.Now().UnixNano()
	if st < statusActive && now >= ss.loginBy.Load() {
		ss.shutdown(wire.CloseLoginTimeout, "login timeout")
		return
	}
	ping := false
	if now >= ss.pingAt.Load() {
		idle := time.Duration(cfg.Clock().UnixNano() - ss.lastActivity.Load())
		if idle >= cfg.IdleTimeout {
			ss.shutdown(wire.CloseIdle, "idle timeout")
			return
		}
		ping = true
		ss.pingAt.Store(now + int64(cfg.IdleTimeout/3))
	}
	next := ss.pingAt.Load()
	if ss.status() < statusActive {
		next = min(next, ss.loginBy.Load())
	} else if ss.status() >= statusLeaving {
		return
	}
	// Armed before the ping is written: the write may run on this
	// goroutine (outbox.ping) and wait on a peer that stopped reading.
	ss.timer.Reset(time.Duration(next - now))
	if ping {
		ss.out.ping()
	}
}

// firstPing is when a new connection's first ping is due: somewhere in
// the second half of the ping interval, so that connections that came
// together (a node's restart, a bench) do not ping, and wake, together
// for ever after.
func firstPing(now time.Time, interval time.Duration) time.Time {
	return now.Add(interval - rand.N(interval/2+1))
}

// isPing tells the outbox's ping from frames in a batch (by identity: no
// frame the node sends is pingFrame itself).
func isPing(b []byte) bool { return len(b) == len(pingFrame) && &b[0] == &pingFrame[0] }
