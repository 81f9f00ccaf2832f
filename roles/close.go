package roles

import (
	"sync"
	"time"

	"github.com/occase/occase/wire"
)

// Close ends every session (1001, handing back what each holds), the
// background work and the broker connection. It may be called more than
// once, and concurrently: every call returns once the node is closed.
func (s *Server) Close() {
	s.closeOnce.Do(s.close)
}

// close waits for the sessions' hand-back until the drain's deadline when
// a drain set one (at least drainLastWait), else for the drain timeout.
func (s *Server) close() {
	s.mu.Lock()
	deadline := s.drainDeadline
	s.mu.Unlock()
	if deadline.IsZero() {
		deadline = time.Now().Add(s.cfg.DrainTimeout)
	}
	s.mu.Lock()
	s.draining = true
	all := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss.shutdown(wire.CloseGoingAway, wire.CloseReason(wire.CloseGoingAway))
		}()
	}
	wg.Wait()
	// Sessions that were already ending on their own are untracked but
	// may still be handing back what they hold.
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(max(time.Until(deadline), drainLastWait)):
		s.log.Warn("some connections did not finish within the drain timeout")
	}
	s.readPoll.close()
	if s.postsStop != nil {
		s.postsStop()
		<-s.postsDone
	}
	if s.pushStop != nil {
		s.pushStop()
		<-s.pushDone
	}
	select {
	case <-s.stopDog:
	default:
		close(s.stopDog)
		<-s.dogDone
	}
	s.bgStop()
	s.bg.Wait()
	if s.broker != nil {
		s.broker.Close()
	}
	if s.photoBroker != nil {
		s.photoBroker.Close()
	}
	if s.imgStore != nil {
		s.imgStore.Close()
	}
}
