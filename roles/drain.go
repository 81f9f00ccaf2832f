package roles

import (
	"sync"
	"time"

	"github.com/occase/occase/wire"
)

// Spreading the closes of a drain: closing every session at once sends all
// of a node's clients to the others in the same instant (a reconnect storm
// of logins and queue fetches on the other nodes, the balancer and Redis).
// They are closed in batches over half the time left of the drain
// deadline instead, leaving the other half for the last batch to hand back
// what it holds. The time left, not the drain timeout: stopping the HTTP
// server may already have used some or all of it, and the whole drain
// must fit in the orchestrator's grace period.
const (
	drainStep     = 50 * time.Millisecond
	drainMinBatch = 50 // a node with few clients closes them at once
	// drainLastWait is the least Close waits for sessions to hand back
	// what they hold, when the drain deadline has passed already.
	drainLastWait = time.Second
)

// drainBatch says how many sessions to close per drainStep for n sessions
// spread over span.
func drainBatch(n int, span time.Duration) int {
	steps := int(span / drainStep)
	if steps < 1 {
		return max(n, 1)
	}
	return max((n+steps-1)/steps, drainMinBatch)
}

// spreadCloses closes the sessions open now over half the time left until
// deadline. Close then ends what is left (sessions that arrived meanwhile
// cannot: the node is draining).
func (s *Server) spreadCloses(deadline time.Time) {
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	per := drainBatch(n, time.Until(deadline)/2)
	if per >= n {
		return // one batch: Close does it
	}
	t := time.NewTicker(drainStep)
	defer t.Stop()
	s.closeSpread(per, t.C)
}

// closeSpread closes per of the sessions open now, then per more at each
// tick, until none is left; it returns once every batch has finished
// closing. A session that ended meanwhile is closed already (shutdown runs
// once).
func (s *Server) closeSpread(per int, tick <-chan time.Time) {
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < len(all); i += per {
		if i > 0 {
			<-tick
		}
		for _, ss := range all[i:min(i+per, len(all))] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ss.shutdown(wire.CloseGoingAway, wire.CloseReason(wire.CloseGoingAway))
			}()
		}
	}
	wg.Wait()
}
