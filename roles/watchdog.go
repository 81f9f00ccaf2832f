package roles

import (
	"time"
)

// writeWatchdog closes connections whose current write has taken longer
// than the write timeout (a peer that stopped reading), checking every
// quarter of the timeout.
func (s *Server) writeWatchdog() {
	defer close(s.dogDone)
	t := time.NewTicker(max(s.cfg.WriteTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stopDog:
			return
		case now := <-t.C:
			limit := now.Add(-s.cfg.WriteTimeout).UnixNano()
			s.mu.Lock()
			for ss := range s.sessions {
				if w := ss.writeStart.Load(); w != 0 && w < limit {
					ss.abortWrite()
				}
			}
			s.mu.Unlock()
		}
	}
}
