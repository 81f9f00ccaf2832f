package roles

import (
	"context"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// shutdown ends the session once: it stops acting on frames, waits for
// the request in flight, hands back what it holds (written chat messages
// are removed from Redis, unwritten replies requeued), lets go of the
// user, tells newer logins so, and closes the socket with code. It must
// not be called from inside dispatch (that returns a closeError instead).
func (ss *session) shutdown(code websocket.StatusCode, reason string) {
	if !ss.setStatus(statusLeaving) {
		return
	}
	if code == wire.CloseRateExceeded {
		ss.srv.coolOff.add(ss.coolOffKey(), ss.srv.cfg.Clock())
	}
	// A parked reader reads on, to meet the peer's close frame.
	ss.wake()
	ss.timer.Stop()
	ss.srv.untrack(ss)
	// A request read before the session began leaving finishes first; no
	// other starts (dispatchLive checks the status under the same lock).
	// After this, the reader's fields (user, attached) are settled.
	ss.dispatchMu.Lock()
	ss.dispatchMu.Unlock()
	// The drain budget: shared by the sessions that end within a tick
	// (a timer per tick, not per close), at least DrainTimeout long.
	ctx := ss.srv.drainBudget.Context()

	// A local sender that saw this session not leaving has finished its
	// store and poke; later ones see it leaving and notify through Redis.
	ss.deliverMu.Lock()
	ss.deliverMu.Unlock()

	// Let queued frames (an error reply, a last ack) go out before the
	// close frame, unless the peer is gone, idle or not reading.
	// A session closed by its app after its last reply went out has
	// nothing to wait for, and makes no timer for it.
	switch code {
	case websocket.StatusAbnormalClosure, wire.CloseSlowConsumer, wire.CloseIdle:
	default:
		if ss.out.busy() {
			fctx, fcancel := context.WithTimeout(ctx, min(ss.srv.cfg.WriteTimeout, 2*time.Second))
			ss.out.drain(fctx)
			fcancel()
		}
	}
	pending := ss.out.stop()
	if m := ss.mailbox(); m != nil {
		m.Close(ctx)
	}
	if ss.user != "" {
		if ss.srv.posts != nil {
			ss.srv.posts.Leave(ss)
		}
		if len(pending) > 0 && !ss.accountGone.Load() {
			ss.srv.m.requeued.Add(float64(len(pending)))
			if err := ss.srv.chat.Requeue(ctx, ss.user, pending); err != nil {
				ss.leftLogger().Error("lost undelivered replies", zap.Int("count", len(pending)), zap.Error(err))
			}
		}
	}
	// Also for a session kicked in the middle of its own login: it is
	// attached, holds nothing yet, and must still let go. The detach is
	// its answer to the kicks it got: the hub releases once per kick,
	// when every local peer that kick reached has detached.
	if ss.attached {
		ss.srv.hub.Detach(ctx, ss.user, ss)
	}
	ss.timer.Stop()
	ss.srv.m.closed(int(code))
	ss.setStatus(statusClosed)
	if ss.peerClosed.Load() {
		// The library answered the peer's close frame and closed the
		// connection already: Close returns at once.
		ss.conn.Close(code, reason)
	} else {
		go func() {
			// Close waits for the peer's close frame; never hold anyone up.
			ss.conn.Close(code, reason)
		}()
	}
	// The child logger costs an allocation of a kilobyte or so: built
	// only when the line is written.
	if ss.user != "" && ss.srv.log.Core().Enabled(zap.DebugLevel) {
		ss.leftLogger().Debug("session closed", zap.Int("code", int(code)), zap.String("reason", reason))
	}
}
