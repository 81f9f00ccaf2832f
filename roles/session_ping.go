package roles

import (
	"time"

	"github.com/occase/occase/wire"
)

// tick is the session's one timer (one per connection, not two): it ends
// a session not logged in by its login deadline, and every third of the
// idle timeout it pings. A ping closes a connection that has sent nothing
// (no frame, no pong) for the idle timeout, and sends the others a ping
// frame. The ping goes through the outbox like any frame and nothing
// waits for its pong: the library's Ping would hold a goroutine per
// connection until the pong and leave a map behind in the connection; the
// pong, like every byte the peer sends, counts as activity when the
// reader sees it (corkConn.owner).
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
	if now >= ss.pingAt.Load() {
		idle := time.Duration(cfg.Clock().UnixNano() - ss.lastActivity.Load())
		if idle >= cfg.IdleTimeout {
			ss.shutdown(wire.CloseIdle, "idle timeout")
			return
		}
		ss.out.push(item{data: pingFrame, kind: transient})
		ss.pingAt.Store(now + int64(cfg.IdleTimeout/3))
	}
	next := ss.pingAt.Load()
	if ss.status() < statusActive {
		next = min(next, ss.loginBy.Load())
	} else if ss.status() >= statusLeaving {
		return
	}
	ss.timer.Reset(time.Duration(next - now))
}

// isPing tells the outbox's ping item from frames (by identity: no frame
// the node sends is pingFrame itself).
func isPing(b []byte) bool { return len(b) == len(pingFrame) && &b[0] == &pingFrame[0] }
