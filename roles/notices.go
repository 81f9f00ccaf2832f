package roles

import (
	"strconv"

	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Notices (docs/protocol.md "Notices"): what the operators tell a user,
// stored in Redis (broker/notices.go). A client that knows of them asks
// with notices (notices_ack lists them), clears them with notices_seen,
// and, from its first notices on or from a login or register that said
// "notices":true, is pushed each new one as a notice frame; a client that
// does neither gets no frame it does not know (its login_ack only gains
// a "notices" count, an extra member).

// The two requests share a token bucket: a client asks after a login and
// after a notice, and clears what it showed.
const (
	noticesRate  = 1.0 // per second
	noticesBurst = 5
)

func (ss *session) notices(req *wire.Request) error {
	var upto uint64
	if req.Cmd == "notices_seen" {
		var err error
		if upto, err = req.U64("upto"); err != nil {
			return err
		}
	}
	if !allowLazy(&ss.noticeLim, noticesRate, noticesBurst) {
		return wire.Errorf(wire.RateLimited, "too many notices requests; slow down")
	}
	b := ss.srv.broker
	if req.Cmd == "notices_seen" {
		left, err := b.NoticesSeen(ss.ctx, ss.user, upto)
		if err != nil {
			return unavailable(err)
		}
		f := []byte(`{"cmd":"notices_seen_ack","result":"ok","upto":`)
		f = strconv.AppendUint(f, upto, 10)
		f = append(f, `,"notices":`...)
		f = strconv.AppendInt(f, int64(left), 10)
		ss.Send(append(f, '}'))
		return nil
	}
	// Set before the read, so that a notice made meanwhile is pushed
	// (and perhaps listed too: ids tell the client it is the same).
	ss.wantNotices.Store(true)
	list, err := b.Notices(ss.ctx, ss.user)
	if err != nil {
		return unavailable(err)
	}
	f := []byte(`{"cmd":"notices_ack","result":"ok","notices":[`)
	for i, n := range list {
		if !wire.ValidString(n) || len(n) < 2 || n[0] != '{' {
			ss.logger().Warn("skipping a stored notice that is not a JSON object", zap.Int("bytes", len(n)))
			continue
		}
		if i > 0 && f[len(f)-1] != '[' {
			f = append(f, ',')
		}
		f = append(f, n...)
	}
	ss.Send(append(f, "]}"...))
	return nil
}

// optInNotices reads a register's or login's "notices":true: the client
// knows notices, so they are pushed to it from the start (an older node
// ignores the member, and its login_ack never counts notices).
func (ss *session) optInNotices(req *wire.Request) {
	if string(req.Get("notices")) == "true" {
		ss.wantNotices.Store(true)
	}
}

// Notice is presence.Noticer: a notice for the user (on any node's
// word). Called from the subscriber's reader: it must not block.
func (ss *session) Notice(n []byte) {
	if ss.gen.Load() == 0 || !ss.wantNotices.Load() {
		return // a login not checked yet, or a client that never asked
	}
	f := make([]byte, 0, len(n)+16)
	f = append(f, `{"cmd":"notice",`...)
	f = append(f, n[1:]...)
	ss.Send(f)
}
