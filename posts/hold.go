package posts

import (
	"go.uber.org/zap"
)

// cutoff is the date at or before which a post has expired.
func (s *Service) cutoff() int64 {
	return s.cfg.Clock().Add(-s.cfg.Expiry).Unix()
}

// admit inserts p into the index, evicting the oldest posts first when p
// would pass the node's bounds (a node configured with lower bounds than
// the one that let p into Redis, or clock skew between their sweeps): the
// node keeps the newest posts, counts and logs what it let go, and never
// tells subscribers (the posts are still stored). It reports false when p
// was already there, or is itself older than every post it would evict.
func (s *Service) admit(p *Post) bool {
	if _, ok := s.x.byID[p.ID]; ok {
		return false
	}
	n := 0
	for s.cfg.MaxPosts > 0 && s.x.len() >= s.cfg.MaxPosts ||
		s.cfg.MaxPostBytes > 0 && int64(s.x.bytes+len(p.JSON)) > s.cfg.MaxPostBytes {
		o := s.x.oldest()
		if o == nil || o.ID > p.ID {
			s.evicted(1)
			return false
		}
		s.x.remove(o.ID)
		n++
	}
	if n > 0 {
		s.evicted(n)
		s.x.tidy()
	}
	return s.x.insert(p)
}

func (s *Service) evicted(n int) {
	s.counts.evicted.Add(uint64(n))
	if s.mineAsked.CompareAndSwap(false, true) {
		s.mineBackfill <- struct{}{} // once: never blocks
	}
	now := s.cfg.Clock().Unix()
	if last := s.lastEvictLog.Load(); now-last >= 60 && s.lastEvictLog.CompareAndSwap(last, now) {
		s.log.Warn("the posts index is at its bound (--max-posts, --max-post-bytes); dropped the oldest posts from this node",
			zap.Uint64("dropped_total", s.counts.evicted.Load()), zap.Int("posts", s.x.len()), zap.Int("bytes", s.x.bytes))
	}
}

// removed tells the subscriptions that asked for deletions that p (a post
// just removed from the index; nil: none was) is gone.
func (s *Service) removed(p *Post) {
	if p != nil {
		s.counts.deletedSent.Add(uint64(s.x.fanoutDeleted(p)))
	}
}
