package chat

import (
	"context"
	"sync"

	"github.com/occase/occase/broker"
)

// Chat messages go to Redis through the node's storer, a group commit: a
// message that finds no store call in flight goes at once, alone (no
// latency added at low load); the messages that come while a call is in
// flight wait for it to return and then go together, in one script call
// (broker.StoreMany, one per hash slot on a cluster), in the order they
// came. Each still gets its own result: its id, its refusal (queue_full,
// recipient_inactive...), or the call's failure. A message is acknowledged
// only after the call that stored it has returned, so nothing acknowledged
// is lost; and a session sends its next message only after the previous
// one's reply, so a sender's messages to one recipient are stored, and
// numbered, in the order sent.
//
// What a message costs Redis is mostly the call and its network work, not
// the commands inside (docs/benchmarks.md), so under load a call carrying
// many messages makes each of them cost a fraction of one call.

// maxStoreBatch and maxStoreBytes bound one call: its messages and the
// bytes of their frames (a message may have cfg.MaxMessage bytes).
const (
	maxStoreBatch = 64
	maxStoreBytes = 256 << 10
)

type storeCall struct {
	req  broker.StoreReq
	st   broker.Stored
	err  error
	done chan struct{}
}

var storeCalls = sync.Pool{New: func() any { return &storeCall{done: make(chan struct{}, 1)} }}

// store stores one message through the storer and returns what
// broker.Store would.
func (s *Service) store(ctx context.Context, req broker.StoreReq) (broker.Stored, error) {
	if s.cfg.StoreBatch == 1 {
		s.storeCalls.Add(1)
		return s.b.Store(ctx, req.To, req.Members, req.Now, req.Opt, req.Notify)
	}
	c := storeCalls.Get().(*storeCall)
	c.req = req
	s.stMu.Lock()
	s.stPending = append(s.stPending, c)
	if !s.stRunning {
		s.stRunning = true
		go s.storeLoop()
	}
	s.stMu.Unlock()
	<-c.done
	st, err := c.st, c.err
	*c = storeCall{done: c.done}
	storeCalls.Put(c)
	return st, err
}

// storeLoop runs while messages wait: it takes those waiting (up to the
// bounds), stores them in one call, answers each, and goes again for those
// that came meanwhile.
func (s *Service) storeLoop() {
	limit := s.cfg.StoreBatch
	if limit <= 0 {
		limit = maxStoreBatch
	}
	var batch []*storeCall
	var reqs []broker.StoreReq
	for {
		s.stMu.Lock()
		n, size := 0, 0
		for n < len(s.stPending) && n < limit {
			size += len(s.stPending[n].req.Members)
			if n > 0 && size > maxStoreBytes {
				break
			}
			n++
		}
		if n == 0 {
			s.stRunning = false
			s.stMu.Unlock()
			return
		}
		batch = append(batch[:0], s.stPending[:n]...)
		rest := copy(s.stPending, s.stPending[n:])
		clear(s.stPending[rest:])
		s.stPending = s.stPending[:rest]
		s.stMu.Unlock()

		reqs = reqs[:0]
		for _, c := range batch {
			reqs = append(reqs, c.req)
		}
		s.storeCalls.Add(1)
		sts, errs := s.b.StoreMany(context.Background(), reqs)
		for i, c := range batch {
			c.st, c.err = sts[i], errs[i]
			c.done <- struct{}{}
		}
		clear(batch)
		clear(reqs)
	}
}
