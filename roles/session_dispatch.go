package roles

import (
	"cmp"
	"errors"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/logs"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// closeError asks the reader to end the session with a close code; only
// dispatch returns it (shutdown itself must not run inside dispatch).
type closeError struct {
	code   websocket.StatusCode
	reason string
	metric string // the request's reason in occase_request_errors_total
	// ok: the request succeeded and the close is its outcome (a deleted
	// account), not counted among the failed requests.
	ok bool
}

func (e *closeError) Error() string { return e.reason }

// dispatchLive runs req unless the session is leaving; shutdown waits for
// a request that is running (dispatchMu), so none is acted on after it
// began handing back what the session holds.
func (ss *session) dispatchLive(req *wire.Request) (err error, ran bool) {
	ss.dispatchMu.Lock()
	defer ss.dispatchMu.Unlock()
	if ss.status() >= statusLeaving {
		return nil, false
	}
	return ss.dispatch(req), true
}

// handle runs one request. A panic is recovered: the connection closes
// with 1011 and every other connection is unaffected.
func (ss *session) handle(req *wire.Request, start time.Time) (code websocket.StatusCode, reason string, stop bool) {
	defer func() {
		if r := recover(); r != nil {
			ss.logger().Error("request handler panicked", zap.String("cmd", req.Cmd), zap.Any("panic", r), zap.Stack("stack"))
			ss.reject(&wire.Error{Reason: wire.Internal})
			code, reason, stop = wire.CloseInternal, "internal error", true
		}
	}()
	err, ran := ss.dispatchLive(req)
	if !ran {
		ss.srv.m.ignored.Inc()
		return 0, "", false
	}
	var ce *closeError
	if errors.As(err, &ce) {
		if ce.ok {
			ss.srv.m.request(req.Cmd, start, "")
		} else {
			ss.srv.m.request(req.Cmd, start, cmp.Or(ce.metric, "closed"))
		}
		return ce.code, ce.reason, true
	}
	if err == nil {
		ss.srv.m.request(req.Cmd, start, "")
		return 0, "", false
	}
	we := wire.AsError(err)
	ss.srv.m.request(req.Cmd, start, we.Reason)
	switch we.Reason {
	case wire.Internal:
		ss.logger().Error("request failed", zap.String("cmd", req.Cmd), zap.Error(err))
	case wire.Unavailable:
		ss.logger().Warn("request failed: redis unavailable", logs.Repeated(logs.RepeatEvery), zap.String("cmd", req.Cmd), zap.Error(err))
	case wire.RateLimited:
		ss.srv.m.rateRefused(req.Cmd)
		ss.strike()
	}
	if we.Malformed {
		ss.reject(we)
		return wire.ClosePolicy, "bad request", true
	}
	switch req.Cmd {
	case "message":
		to, _ := wire.String(req.Get("to"))
		ss.Send(chat.FailAck(req, to, we))
	case "presence":
		// presence has no reply
	case "report":
		ss.Send(posts.ReportFail(req, we))
	default:
		ss.Send(errorFrame(req.Cmd+"_ack", we))
	}
	// A wrong password of delete_account leaves the session as it was.
	if we.Reason == wire.BadCredentials && req.Cmd != "delete_account" {
		return wire.CloseBadCredentials, "bad credentials", true
	}
	if we.Reason == wire.Banned {
		return wire.CloseBanned, wire.CloseReason(wire.CloseBanned), true
	}
	return 0, "", false
}

func (ss *session) dispatch(req *wire.Request) error {
	if ss.status() != statusActive {
		switch req.Cmd {
		case "register":
			return ss.register(req)
		case "login":
			return ss.login(req)
		case "message", "presence", "subscribe", "publish", "delete", "filenames", "update", "set_status", "renew", "push_subscribe", "push_unsubscribe",
			"delete_account", "block", "unblock", "blocks", "report", "notices", "notices_seen", "my_posts":
			return wire.Errorf(wire.NotLoggedIn, "send register or login first")
		}
		return wire.Malformedf("unknown command %q", req.Cmd)
	}
	switch req.Cmd {
	case "message":
		return ss.message(req)
	case "presence":
		return ss.presence(req)
	case "register", "login":
		return wire.Errorf(wire.BadRequest, "this connection is already logged in")
	case "filenames":
		return ss.filenames(req)
	case "block", "unblock", "blocks":
		return ss.blocking(req)
	case "report":
		return ss.report(req)
	case "notices", "notices_seen":
		return ss.notices(req)
	case "subscribe", "publish", "delete", "update", "set_status", "renew", "my_posts":
		return ss.posts(req)
	case "delete_account":
		return ss.deleteAccount(req)
	case "push_subscribe", "push_unsubscribe":
		if ss.srv.push == nil {
			return wire.Errorf(wire.Unavailable, "push notifications are not configured on this node")
		}
		// Devices change rarely; each change is a Redis script.
		if !allow(ss.pushLimiter()) {
			return wire.Errorf(wire.RateLimited, "too many device changes; slow down")
		}
		ack, err := ss.srv.push.Handle(ss.ctx, ss.user, req)
		if err != nil {
			return err
		}
		ss.Send(ack)
		return nil
	}
	return wire.Malformedf("unknown command %q", req.Cmd)
}

func allow(l *rate.Limiter) bool { return l == nil || l.Allow() }

// allowLazy is allow for a limiter made at its first use (rate r per
// second, 0: none), so that an idle connection holds none. Only the
// session's reader calls it.
func allowLazy(l **rate.Limiter, r float64, burst int) bool {
	if r <= 0 {
		return true
	}
	if *l == nil {
		*l = rate.NewLimiter(rate.Limit(r), burst)
	}
	return (*l).Allow()
}

func newLimiter(r float64, burst int) *rate.Limiter {
	if r <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(r), burst)
}

// errorFrame is a fail reply: {"cmd":cmd,"result":"fail","reason":...}.
func errorFrame(cmd string, e *wire.Error) []byte {
	b := []byte(`{"cmd":`)
	b = wire.AppendString(b, cmd)
	b = append(b, `,"result":"fail","reason":`...)
	b = wire.AppendString(b, e.Reason)
	if e.Detail != "" {
		b = append(b, `,"detail":`...)
		b = wire.AppendString(b, e.Detail)
	}
	return append(b, '}')
}
