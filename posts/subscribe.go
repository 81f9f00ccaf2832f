package posts

import (
	"context"
	"slices"
	"time"

	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Subscribe handles subscribe: it replaces the connection's subscription,
// replies subscribe_ack and then the catch-up.
//
// The catch-up is read under the read lock, so that neither its cost nor
// an adversary's subscribe storm holds up the fan-out. The write lock is
// then taken to send the frames and register the subscription together;
// what changed in between is settled there: catch-up posts deleted
// meanwhile are dropped, and posts inserted meanwhile (found through the
// index's ring of recent inserts) go out after the catch-up as the live
// posts they would have been. So every matching post the node learns of
// after the subscribe arrives once, and none in the catch-up arrives again.
//
// Live posts need an id above the subscription's floor, and the catch-up
// starts above it too. The floor is last_post_id when that is an id the
// server has issued (the client holds the posts up to it, perhaps from
// another node this one lags behind); when last_post_id is above every id
// ever issued (a client that wants no catch-up), the floor is the highest
// id issued at the subscribe, so that every post published after it
// arrives (PROTOCOL.md section 4; issue 11.2). Redis is asked for that
// highest id only in this case; if it cannot answer, the node's own newest
// post stands in.
func (s *Service) Subscribe(ctx context.Context, c Conn, req *wire.Request) error {
	f, err := decodeSubscribe(req, &s.cfg.Limits)
	if err != nil {
		return err
	}
	if ok, retry := s.subLimit.allow(c.User(), s.cfg.Clock()); !ok {
		s.counts.subLimited.Add(1)
		return wire.Errorf(wire.RateLimited, "too many subscribes; try again in %d s", seconds(retry))
	}
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	floor := f.After
	s.mu.RLock()
	top := s.x.newest()
	s.mu.RUnlock()
	if floor > top {
		// Read before the catch-up, so that every post published after
		// this read has an id above it and is caught up or live.
		if seq, err := s.b.PostSeq(ctx); err == nil {
			floor = min(floor, seq)
		} else {
			s.log.Warn("reading the post id counter failed; the floor of a subscription is this node's newest post", zap.Error(err))
			floor = top
		}
	}
	cutoff := s.cutoff()
	r := read{limit: s.cfg.MaxCatchUp, maxScan: s.cfg.MaxScan, from: floor}
	s.mu.RLock()
	res := s.x.scan(f, cutoff, r)
	gen := s.x.gen
	var frame []byte
	if len(res.posts) > 0 {
		frame = itemsFrame(res.posts)
	}
	s.mu.RUnlock()
	if s.betweenLocks != nil {
		s.betweenLocks()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// A connection that subscribes again kept its old subscription until
	// now: the posts inserted meanwhile that it matched went out through
	// it already, and must not go out again in this one's catch-up.
	old := s.x.subs[c]
	sent := func(p *Post) bool { return old != nil && p.ins > gen && old.match(p) }
	var late []*Post
	if d := s.x.gen - gen; d > uint64(len(s.x.recent)) {
		// Too much arrived meanwhile to replay: read again, here.
		res = s.x.scan(f, cutoff, r)
		frame = nil
		if len(res.posts) > 0 {
			frame = itemsFrame(res.posts)
		}
	} else if d > 0 {
		sb := sub{f: f, floor: floor}
		for g := gen + 1; g <= s.x.gen; g++ {
			if p := s.x.recent[g%uint64(len(s.x.recent))]; p.alive() && !p.expired(cutoff) && sb.match(p) && !sent(p) {
				late = append(late, p)
			}
		}
	}
	if drop := func(p *Post) bool { return !p.alive() || sent(p) }; slices.ContainsFunc(res.posts, drop) {
		res.posts = slices.DeleteFunc(slices.Clone(res.posts), drop)
		frame = nil
		if len(res.posts) > 0 {
			frame = itemsFrame(res.posts)
		}
	}
	if res.next != 0 {
		s.counts.scanCapped.Add(1)
	}
	c.Send([]byte(`{"cmd":"subscribe_ack","result":"ok"}`))
	if frame != nil {
		c.Send(frame)
	}
	for _, p := range late {
		c.Send(liveFrame(p))
		s.delivered.Add(1)
	}
	for _, fr := range s.authorCatchUp(c, f, floor, cutoff) {
		c.Send(fr)
	}
	s.x.subscribe(c, f, floor)
	return nil
}

func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// Leave drops the subscription of a closed connection.
func (s *Service) Leave(c Conn) {
	s.mu.Lock()
	s.x.leave(c)
	s.mu.Unlock()
}
