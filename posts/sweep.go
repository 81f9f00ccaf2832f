package posts

import (
	"context"
)

// Sweep removes expired posts from Redis (announcing them to every node)
// and from this node's index. Run calls it periodically; every node may run
// it, the work is idempotent.
func (s *Service) Sweep(ctx context.Context) error {
	cutoff := s.cutoff()
	const batch = 500
	for {
		n, err := s.b.ExpirePosts(ctx, cutoff, batch)
		if err != nil {
			return err
		}
		if n < batch {
			break
		}
	}
	now := s.cfg.Clock().Unix()
	s.mu.Lock()
	for _, p := range s.x.removeOlder(cutoff) {
		s.removed(p)
	}
	for id, t := range s.tomb {
		// A deletion whose broadcast never came back (the subscriber
		// connection was down) is settled by the reload that followed.
		if now-t > 600 {
			delete(s.tomb, id)
		}
	}
	s.mu.Unlock()
	return nil
}
