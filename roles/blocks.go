package roles

import (
	"errors"
	"maps"
	"strconv"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
)

// Blocking a user (docs/protocol.md "Blocking a user"). The blocks live in
// Redis (broker/block.go), where the chat store script refuses a blocked
// sender's messages and receipts; presence signals never touch Redis, so
// the session keeps its user's blocks in memory too, read with the login
// (broker.LoginState.Blocks) and changed by the block commands, which only
// this session runs (one login per user), and drops a blocked sender's
// signals as they arrive.

// blockSet is the ids a user blocks; never changed once published, a
// change publishes a copy.
type blockSet map[string]struct{}

func (ss *session) setBlocks(ids []string) {
	if len(ids) == 0 {
		ss.blocked.Store(nil)
		return
	}
	s := make(blockSet, len(ids))
	for _, id := range ids {
		s[id] = struct{}{}
	}
	ss.blocked.Store(&s)
}

// blocks tells whether frame, a presence signal ('{"from":"<id>",...}',
// built so by the sending node), comes from a user this one blocks.
func (ss *session) blocks(frame []byte) bool {
	p := ss.blocked.Load()
	if p == nil {
		return false
	}
	const head = `{"from":"`
	if len(frame) < len(head) || string(frame[:len(head)]) != head {
		return false
	}
	rest := frame[len(head):]
	for i, c := range rest {
		if c == '"' {
			_, ok := (*p)[string(rest[:i])]
			return ok
		}
	}
	return false
}

// blocking runs block, unblock and blocks.
func (ss *session) blocking(req *wire.Request) error {
	var target string
	if req.Cmd != "blocks" {
		var err error
		if target, err = req.Str("user"); err != nil {
			return err
		}
	}
	if !allowLazy(&ss.blockLim, ss.srv.cfg.BlockRate, ss.srv.cfg.BlockBurst) {
		return wire.Errorf(wire.RateLimited, "too many block requests; slow down")
	}
	b := ss.srv.broker
	if req.Cmd == "blocks" {
		ids, err := b.Blocks(ss.ctx, ss.user)
		if err != nil {
			return unavailable(err)
		}
		f := []byte(`{"cmd":"blocks_ack","result":"ok","users":[`)
		for i, id := range ids {
			if i > 0 {
				f = append(f, ',')
			}
			f = wire.AppendString(f, id)
		}
		ss.Send(append(f, "]}"...))
		return nil
	}
	if !chat.ValidUserID(target) {
		return wire.Errorf(wire.NotFound, "no user %q", target)
	}
	if target == ss.user {
		return wire.Errorf(wire.BadRequest, "one cannot block oneself")
	}
	var n int
	var err error
	if req.Cmd == "block" {
		ok, xerr := b.UserExists(ss.ctx, target)
		if xerr != nil {
			return unavailable(xerr)
		}
		if !ok {
			return wire.Errorf(wire.NotFound, "no user %q", target)
		}
		n, err = b.Block(ss.ctx, ss.user, target, ss.maxBlocks())
	} else {
		n, err = b.Unblock(ss.ctx, ss.user, target)
	}
	switch {
	case errors.Is(err, broker.ErrTooManyBlocks):
		return wire.Errorf(wire.TooManyBlocks, "one may block at most %d users; unblock some first", ss.maxBlocks())
	case errors.Is(err, broker.ErrNoUser):
		return wire.Errorf(wire.NotFound, "this account is gone")
	case err != nil:
		return unavailable(err)
	}
	ss.changeBlocks(req.Cmd == "block", target)
	f := []byte(`{"cmd":`)
	f = wire.AppendString(f, req.Cmd+"_ack")
	f = append(f, `,"result":"ok","user":`...)
	f = wire.AppendString(f, target)
	f = append(f, `,"blocks":`...)
	f = strconv.AppendInt(f, int64(n), 10)
	ss.Send(append(f, '}'))
	return nil
}

// changeBlocks publishes a copy of the in-memory blocks with target added
// or removed.
func (ss *session) changeBlocks(add bool, target string) {
	var s blockSet
	if p := ss.blocked.Load(); p != nil {
		s = maps.Clone(*p)
	} else {
		s = blockSet{}
	}
	if add {
		s[target] = struct{}{}
	} else {
		delete(s, target)
	}
	if len(s) == 0 {
		ss.blocked.Store(nil)
		return
	}
	ss.blocked.Store(&s)
}

func (ss *session) maxBlocks() int {
	if ss.srv.cfg.MaxBlocks > 0 {
		return ss.srv.cfg.MaxBlocks
	}
	return 1000
}
