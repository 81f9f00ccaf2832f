package roles

import (
	"context"
	"errors"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// serve starts the session's reader; it returns when the connection ends
// or its reader parks (park.go).
func (ss *session) serve() {
	if !ss.setStatus(statusAnonymous) {
		return // shut down before it started (the node is closing)
	}
	cfg := ss.srv.cfg
	ss.conn.SetReadLimit(cfg.MaxFrame)
	now := time.Now()
	ss.loginBy.Store(now.Add(cfg.LoginTimeout).UnixNano())
	first := firstPing(now, cfg.IdleTimeout/3)
	ss.pingAt.Store(first.UnixNano())
	ss.timer.Reset(min(cfg.LoginTimeout, first.Sub(now)))
	// The session's own count of the node's handlers: a parked session
	// has no goroutine, so the reader that ends the session releases it.
	ss.srv.handlers.Add(1)
	ss.run()
}

// run reads frames until the connection ends or the reader parks; the
// poller runs it again when a parked connection has something to read.
// Only one run is ever in progress for a session.
func (ss *session) run() {
	growStack()
	code, reason, parked := ss.readLoop()
	if parked {
		return
	}
	ss.shutdown(code, reason)
	ss.srv.readPoll.forget(ss)
	ss.srv.handlers.Done()
}

func (ss *session) readLoop() (code websocket.StatusCode, reason string, parked bool) {
	for {
		paused := false
		if !ss.frameTaken {
			paused = ss.waitFrame()
			ss.frameTaken = true
		}
		// No cancellable context: the library would hang a callback on it
		// for every read (and its parent keeps the map that held it); a
		// read ends when the socket closes, and shutdown closes it.
		typ, frame, err := ss.conn.Read(context.Background())
		// A frame that waited for either budget is one strike.
		if ss.raw.budget.tookPause() || paused {
			ss.strike()
		}
		if err != nil && errors.Is(err, errParked) {
			if ss.park(nil) {
				return 0, "", true
			}
			continue
		}
		ss.frameTaken = false
		if err != nil {
			var ce websocket.CloseError
			switch {
			case errors.As(err, &ce):
				ss.peerClosed.Store(true)
				return websocket.StatusNormalClosure, "", false
			case errors.Is(err, context.Canceled):
				return websocket.StatusNormalClosure, "", false
			case errors.Is(err, websocket.ErrMessageTooBig):
				return wire.CloseTooBig, "frame too large", false
			}
			return websocket.StatusAbnormalClosure, "", false
		}
		ss.touch()
		if ss.status() >= statusLeaving {
			// Replaced, overflowed or limited: the reader goes on only to
			// meet the peer's close frame.
			ss.srv.m.ignored.Inc()
			continue
		}
		if ss.overLimit() {
			code, reason = ss.rateExceeded()
			return code, reason, false
		}
		if typ != websocket.MessageText {
			ss.reject(wire.Malformedf("binary frames are not accepted; send JSON text"))
			return wire.CloseUnsupported, "text frames only", false
		}
		req, err := wire.ParseRequest(frame)
		if err != nil {
			ss.srv.m.request("", time.Now(), wire.BadRequest)
		}
		if errors.Is(err, wire.ErrNotJSON) {
			ss.reject(wire.Malformedf("the frame is not valid UTF-8 JSON"))
			return wire.CloseInvalidPayload, "invalid JSON", false
		}
		if err != nil {
			ss.reject(wire.AsError(err))
			return wire.ClosePolicy, "bad request", false
		}
		start := time.Now()
		code, reason, stop := ss.handle(req, start)
		if stop {
			return code, reason, false
		}
	}
}

// rateExceeded ends a connection that kept exceeding its limits.
func (ss *session) rateExceeded() (websocket.StatusCode, string) {
	ss.reject(wire.Errorf(wire.RateLimited, "this connection kept exceeding its limits; reconnect later"))
	return wire.CloseRateExceeded, "rate exceeded"
}

// reject sends the generic error frame that precedes a policy close.
func (ss *session) reject(e *wire.Error) {
	ss.Send(errorFrame("error", e))
}

// growStack makes the calling goroutine's stack as large as a session's
// reader needs (the library's read path, a login's Redis call, the close)
// while the goroutine is still shallow. A goroutine starts with a small
// stack, and the runtime doubles it whenever a call does not fit, copying
// every frame above: deep in the library, three doublings per connection
// cost 8 % of a node's CPU in a login storm. One growth here copies a few
// frames once. The stack goes back when the goroutine ends (a parked
// connection has none).
//
//go:noinline
func growStack() {
	var pad [readerStack]byte
	touchStack(pad[:])
}

// readerStack: the frame growStack asks for; the runtime then gives the
// goroutine the next power of two above it and what is already used
// (16 KiB).
const readerStack = 8 << 10

//go:noinline
func touchStack(b []byte) { b[len(b)-1] = 1 }
