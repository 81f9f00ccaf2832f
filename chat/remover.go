package chat

import (
	"context"
	"time"

	"github.com/occase/occase/broker"
)

// Written messages leave Redis through the node's remover: the mailboxes
// that wrote a batch hand it their heads, and it removes the heads of all
// of them in one script call (one per hash slot on a cluster). A script
// call is what a chat message costs Redis, so under load this makes the
// removal of a message a small fraction of one call instead of one.
//
// A pump waits for its removal (so its picture of the queue stays simple);
// carried messages that reach it meanwhile wait in its inbox, and go out
// together after. What waits for a removal has been written: the wait
// delays nothing the user sees, and a crash meanwhile only means the
// messages come again (same msg_id).

// maxRemoveBatch bounds the heads of one call (its keys and arguments).
const maxRemoveBatch = 256

type removal struct {
	head broker.Head
	done chan removeResult
}

type removeResult struct {
	removed bool
	err     error
}

// removeHead removes user's written head through the remover and says
// whether it was found.
func (s *Service) removeHead(user string, count int, last string) (bool, error) {
	r := &removal{head: broker.Head{User: user, Count: count, Last: last}, done: make(chan removeResult, 1)}
	s.rmMu.Lock()
	s.rmPending = append(s.rmPending, r)
	if !s.rmRunning {
		s.rmRunning = true
		go s.removeLoop()
	}
	s.rmMu.Unlock()
	res := <-r.done
	return res.removed, res.err
}

// removeLoop runs while removals wait: it gathers them for
// cfg.RemoveDelay, removes them in one call, and goes again for those that
// came meanwhile.
func (s *Service) removeLoop() {
	for {
		if s.cfg.RemoveDelay > 0 {
			time.Sleep(s.cfg.RemoveDelay)
		}
		s.rmMu.Lock()
		batch := s.rmPending
		if len(batch) > maxRemoveBatch {
			batch, s.rmPending = batch[:maxRemoveBatch], batch[maxRemoveBatch:]
		} else {
			s.rmPending = nil
		}
		if len(batch) == 0 {
			s.rmRunning = false
			s.rmMu.Unlock()
			return
		}
		s.rmMu.Unlock()
		heads := make([]broker.Head, len(batch))
		for i, r := range batch {
			heads[i] = r.head
		}
		s.removeCalls.Add(1)
		removed, err := s.b.RemoveHeads(context.Background(), heads)
		for i, r := range batch {
			r.done <- removeResult{removed: err == nil && removed[i], err: err}
		}
	}
}

// removeLater puts m on the lazy remover's list: after cfg.RemoveAfter it
// starts m's pump to remove the written head that waited for more. One
// goroutine for the node, running while the list is not empty. m.mu is
// held (the order is always m.mu, then lzMu).
func (s *Service) removeLater(m *Mailbox) {
	s.lzMu.Lock()
	s.lzPending = append(s.lzPending, m)
	if !s.lzRunning {
		s.lzRunning = true
		go s.lazyLoop()
	}
	s.lzMu.Unlock()
}

func (s *Service) lazyLoop() {
	for {
		time.Sleep(s.cfg.RemoveAfter)
		s.lzMu.Lock()
		list := s.lzPending
		s.lzPending = nil
		if len(list) == 0 {
			s.lzRunning = false
			s.lzMu.Unlock()
			return
		}
		s.lzMu.Unlock()
		for _, m := range list {
			m.mu.Lock()
			m.rmQueued = false
			if !m.closed && m.doneCount > 0 {
				m.rmDue = true
				m.start()
			}
			m.mu.Unlock()
		}
	}
}
