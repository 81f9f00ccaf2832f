package posts

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Run subscribes to the posts channel, loads the index from Redis, then
// applies broadcasts, reloads after Redis reconnects and sweeps expired
// posts until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.b.Handle(broker.PostsChannel, func(_, payload string) { s.in.push(item{payload: payload}) })
	s.b.OnResubscribed(func() { s.in.push(item{reload: true}) })
	ch := s.b.Key(broker.PostsChannel)
	// Redis may be unreachable at start: keep trying (subscribes fail fast
	// with unavailable meanwhile) rather than take the node down.
	if !s.retry(ctx, "subscribe to the posts channel", func() error { return s.b.Subscribe(ctx, ch) }) {
		return nil
	}
	defer s.b.Unsubscribe(context.WithoutCancel(ctx), ch)
	start := time.Now()
	if !s.retry(ctx, "load posts", func() error { return s.reload(ctx) }) {
		return nil
	}
	took := time.Since(start)
	s.loadNanos.Store(int64(took))
	close(s.ready)
	s.log.Info("posts index loaded; the node can be ready", zap.Int("posts", s.Stats().Posts), zap.Duration("took", took))
	sweep := time.NewTicker(s.cfg.SweepEvery)
	defer sweep.Stop()
	var retry <-chan time.Time
	var bg sync.WaitGroup
	defer bg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.mineBackfill:
			bg.Add(1)
			go func() {
				defer bg.Done()
				s.backfillMine(ctx)
			}()
		case <-s.in.sig:
			for _, it := range s.in.take() {
				if !it.reload {
					s.apply(it.payload)
				} else if err := s.reload(ctx); err != nil {
					s.log.Warn("reloading posts after a Redis reconnect failed; retrying", zap.Error(err))
					retry = time.After(time.Second)
				}
				if s.applied != nil {
					s.applied()
				}
			}
		case <-retry:
			retry = nil
			s.in.push(item{reload: true})
		case <-sweep.C:
			if err := s.Sweep(ctx); err != nil {
				s.log.Warn("expiry sweep failed", zap.Error(err))
			}
		}
	}
}

// retry runs fn until it succeeds (true) or ctx ends (false). It logs once
// per cause, with the count of attempts, not once per attempt.
func (s *Service) retry(ctx context.Context, what string, fn func() error) bool {
	backoff := broker.Backoff{First: 100 * time.Millisecond, Max: 2 * time.Second}
	var last string
	for attempts := 1; ; attempts++ {
		err := fn()
		if err == nil {
			if attempts > 1 {
				s.log.Info(what+" succeeded", zap.Int("attempts", attempts))
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if cause := err.Error(); cause != last {
			s.log.Warn(what+" failed; retrying", zap.Error(err), zap.Int("attempts", attempts))
			last = cause
		}
		if !backoff.Wait(ctx.Done()) {
			return false
		}
	}
}

// Loaded tells whether the index has been loaded from Redis once (at
// start); from then on it is served, and a reload after a Redis reconnect
// is built aside and applied in one step.
func (s *Service) Loaded() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// LoadSeconds is how long the first load of the index took (0 until it
// is done).
func (s *Service) LoadSeconds() float64 {
	return time.Duration(s.loadNanos.Load()).Seconds()
}

// waitReady waits a little for the first load of the index, so that no
// subscribe is answered from an empty one.
func (s *Service) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return &wire.Error{Reason: wire.Unavailable, Detail: "posts are not loaded yet"}
	}
}

// reload replaces the index's posts with what Redis holds. Posts new to
// this node (published while its subscriber connection was down) go to the
// matching subscribers, in id order; posts gone from Redis leave; posts
// already known stay as they are, so nobody gets one twice.
func (s *Service) reload(ctx context.Context) error {
	// The hidden set first: a hide or show announced after this read
	// comes through the channel and is applied after the reload.
	// Start the clock of the accounts made without their age (an
	// upgrade's): reports from them count --auto-hide-min-age after it.
	if _, err := s.madeSince(ctx); err != nil {
		s.log.Warn("recording when accounts began to keep their age failed; the first report will", zap.Error(err))
	}
	hidden, err := s.hiddenIDs(ctx)
	if err != nil {
		return err
	}
	seen := map[uint64]*Post{}
	bad := 0
	err = s.b.ScanPosts(ctx, func(js string) {
		p, err := parseStored([]byte(js), s.cfg.LocationDepth, s.cfg.ProductDepth)
		if err != nil {
			bad++
			return
		}
		seen[p.ID] = p
	})
	if err != nil {
		return fmt.Errorf("load posts: %w", err)
	}
	if bad > 0 {
		s.log.Warn("skipped stored posts that do not parse", zap.Int("count", bad))
		s.skipped.Add(uint64(bad))
	}
	cutoff := s.cutoff()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.x.byID {
		// A post gone from Redis leaves. One whose bytes changed (ids
		// start over when Redis lost its data) is replaced.
		if p, ok := seen[id]; !ok || !bytes.Equal(p.JSON, old.JSON) {
			s.removed(s.x.remove(id))
		}
	}
	s.x.tidy()
	s.reloadHidden(hidden, seen)
	fresh := make([]*Post, 0)
	for id, p := range seen {
		if _, ok := s.x.byID[id]; ok || p.expired(cutoff) {
			continue
		}
		if _, ok := s.hidden[id]; ok {
			continue
		}
		if _, ok := s.tomb[id]; ok {
			continue
		}
		fresh = append(fresh, p)
	}
	sortByID(fresh)
	if m := s.cfg.MaxPosts; m > 0 && len(fresh) > m {
		// Only the newest can stay: do not deliver what admit would
		// drop right after.
		s.evicted(len(fresh) - m)
		fresh = fresh[len(fresh)-m:]
	}
	// A publisher whose publish_ack is not out yet gets its echo from
	// Publish, after the ack.
	publishing := map[string]Conn{}
	for _, c := range s.pending {
		publishing[c.User()] = c
	}
	for _, p := range fresh {
		if !s.admit(p) {
			continue
		}
		s.delivered.Add(uint64(s.x.fanout(p, liveFrame(p), publishing[p.From])))
	}
	s.log.Info("posts loaded", zap.Int("posts", s.x.len()), zap.Int("new", len(fresh)))
	return nil
}

func sortByID(ps []*Post) { slices.SortFunc(ps, cmpID) }
