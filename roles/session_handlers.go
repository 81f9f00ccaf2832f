package roles

import (
	"time"

	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

func (ss *session) message(req *wire.Request) error {
	// The rate comes before the frame is rewritten: a refused message
	// costs a lookup, not a copy of its members. A missing "to" is still
	// malformed first.
	if _, err := req.Str("to"); err != nil {
		return err
	}
	if !allowLazy(&ss.chatLim, ss.srv.cfg.ChatRate, ss.srv.cfg.ChatBurst) {
		return wire.Errorf(wire.RateLimited, "too many messages; slow down")
	}
	m, err := ss.srv.chat.Prepare(ss.user, req)
	if err != nil {
		return err
	}
	// A recipient on this node is handed the stored message directly
	// instead of through Redis pub/sub; holding its deliverMu keeps it from
	// leaving between the store and the hand-over (after it leaves, its new
	// login fetches the queue).
	var local *session
	if p, ok := ss.srv.hub.Local(m.To).(*session); ok {
		p.deliverMu.RLock()
		if p.status() < statusLeaving {
			local = p
		} else {
			p.deliverMu.RUnlock()
		}
	}
	ack, err := ss.srv.chat.Store(ss.ctx, m, local == nil)
	if err == nil {
		ss.srv.m.chatStored.Inc()
	}
	if local != nil {
		if err == nil {
			local.Carry(m.Carried())
		}
		local.deliverMu.RUnlock()
	}
	if err != nil {
		return err
	}
	ss.Send(ack)
	return nil
}

func (ss *session) presence(req *wire.Request) error {
	to, err := req.Str("to")
	if err != nil {
		return err
	}
	if !allowLazy(&ss.presLim, ss.srv.cfg.PresenceRate, ss.srv.cfg.PresenceBurst) {
		// Never answered (handle sends no presence reply), but counted
		// as refused and a strike there.
		return &wire.Error{Reason: wire.RateLimited}
	}
	if !chat.ValidUserID(to) || len(req.Frame) > ss.srv.cfg.Chat.MaxMessage {
		return nil // never answered; dropped
	}
	f := make([]byte, 0, len(req.Frame)+24)
	f = append(f, `{"from":`...)
	f = wire.AppendString(f, ss.user)
	f = append(f, ',')
	f = req.AppendMembers(f, "from")
	f = append(f, '}')
	if err := ss.srv.hub.Signal(ss.ctx, to, f); err != nil {
		if ss.srv.log.Core().Enabled(zap.DebugLevel) {
			ss.logger().Debug("presence not forwarded", zap.Error(err))
		}
	}
	return nil
}

func (ss *session) filenames(*wire.Request) error {
	if ss.srv.names == nil {
		return wire.Errorf(wire.Unavailable, "image uploads are not configured on this node")
	}
	if !allowLazy(&ss.fileLim, ss.srv.cfg.FilenamesRate, ss.srv.cfg.FilenamesBurst) {
		return wire.Errorf(wire.RateLimited, "too many filename requests; slow down")
	}
	names, err := ss.srv.names.Names(9)
	if err != nil {
		return err
	}
	b := []byte(`{"cmd":"filenames_ack","result":"ok","names":[`)
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendString(b, n)
	}
	b = append(b, "]}"...)
	ss.SendPersistent(b)
	return nil
}

func (ss *session) posts(req *wire.Request) error {
	if ss.srv.posts == nil {
		return wire.Errorf(wire.Unavailable, "posts are not available on this node")
	}
	switch req.Cmd {
	case "subscribe":
		return ss.srv.posts.Subscribe(ss.ctx, ss, req)
	case "publish":
		return ss.srv.posts.Publish(ss.ctx, ss, req)
	case "update":
		return ss.srv.posts.Update(ss.ctx, ss, req)
	case "set_status":
		return ss.srv.posts.SetStatus(ss.ctx, ss, req)
	case "renew":
		return ss.srv.posts.Renew(ss.ctx, ss, req)
	case "my_posts":
		return ss.srv.posts.Mine(ss.ctx, ss, req)
	default:
		return ss.srv.posts.Delete(ss.ctx, ss, req)
	}
}

// pushLimiter bounds device changes: a burst of pushBurst, then one every
// pushEvery. Only the reader calls it, so it needs no lock.
func (ss *session) pushLimiter() *rate.Limiter {
	if ss.pushLim == nil {
		ss.pushLim = rate.NewLimiter(rate.Every(pushEvery), pushBurst)
	}
	return ss.pushLim
}

const (
	pushEvery = 2 * time.Second
	pushBurst = 10
)
