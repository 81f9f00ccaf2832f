package posts

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// A user's own listings (docs/protocol.md "My listings"): my_posts answers
// a logged-in user with their live posts, newest first, from this node's
// index and the posts it holds aside as hidden, with no Redis round trip.
// Every node holds every live post (up to its --max-posts bound), so the
// answer is the same on every node, whatever filter the user browses with
// and wherever the posts were published.
//
// The index keeps each author's live posts in id order (index.byFrom) and
// the service each author's hidden ones (Service.hiddenBy), so a read
// costs O(the author's posts). How many that is: the publish quota allows
// QuotaN publishes per QuotaPeriod (10 a day) and a post lives Expiry (90
// days), so a user who never renews holds at most QuotaN × (Expiry /
// QuotaPeriod + 1) live posts (910 with the defaults); renewals keep
// posts alive past that, so the count has no hard bound and the answer is
// paged: at most MaxCatchUp posts (100) a frame, the same bound as a
// subscribe's catch-up frame, with a cursor to the next page.

// addByID inserts p into l, kept in id order; almost always an append.
func addByID(l []*Post, p *Post) []*Post {
	if len(l) == 0 || l[len(l)-1].ID < p.ID {
		return append(l, p)
	}
	i, found := slices.BinarySearchFunc(l, p.ID, func(q *Post, id uint64) int { return cmpU64(q.ID, id) })
	if found {
		l[i] = p
		return l
	}
	return slices.Insert(l, i, p)
}

// dropByID removes the post with id from l, kept in id order.
func dropByID(l []*Post, id uint64) []*Post {
	i, found := slices.BinarySearchFunc(l, id, func(q *Post, id uint64) int { return cmpU64(q.ID, id) })
	if !found {
		return l
	}
	l = slices.Delete(l, i, i+1)
	switch {
	case len(l) == 0:
		return nil
	case cap(l) > 32 && len(l) < cap(l)/4:
		// An author whose many posts went keeps no large array.
		return slices.Clone(l)
	}
	return l
}

func cmpU64(a, b uint64) int { return cmp.Compare(a, b) }

// MineCount is how many live posts user holds on this node, those under
// review included, for login_ack. O(1).
func (s *Service) MineCount(user string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.x.byFrom[user]) + len(s.hiddenBy[user])
}

// Mine handles {"cmd":"my_posts"} and {"cmd":"my_posts","before":<id>}:
// the user's live posts with ids below before (all when absent or 0),
// newest first, at most MaxCatchUp of them, each the object subscribers
// get, a hidden one with "under_review":true last. Reply
// {"cmd":"my_posts_ack","result":"ok","items":[...]} with "next":<id>
// when more are left (send it as before to read them).
func (s *Service) Mine(ctx context.Context, c Conn, req *wire.Request) error {
	var before uint64
	if raw := req.Get("before"); raw != nil {
		var ok bool
		if before, ok = wire.Uint64(raw); !ok {
			return malformed(`"before" must be an unsigned integer`)
		}
	}
	// One per-user budget with subscribe: both are reads of the index
	// that a client sends after each login.
	if ok, retry := s.subLimit.allow(c.User(), s.cfg.Clock()); !ok {
		return wire.Errorf(wire.RateLimited, "too many reads of your listings; try again in %d s", seconds(retry))
	}
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	cutoff := s.cutoff()
	limit := s.cfg.MaxCatchUp
	s.mu.RLock()
	items := s.mineItems(c.User(), before, cutoff, limit+1)
	s.mu.RUnlock()
	if s.mineReady.Load() {
		items = s.mineFromRedis(ctx, c.User(), before, cutoff, limit+1, items)
	}
	c.Send(s.mineFrame(items, limit))
	return nil
}

// mineItem is one listing of a my_posts_ack: the post, and whether it is
// under review.
type mineItem struct {
	p      *Post
	marked bool
}

// mineItems is user's posts below before (0: no bound), newest first, at
// most limit of them, from the index and the hidden posts. Called with
// s.mu held (read).
func (s *Service) mineItems(user string, before uint64, cutoff int64, limit int) []mineItem {
	live, hid := s.x.byFrom[user], s.hiddenBy[user]
	// Both lists are in id order: walk them down from before together.
	below := func(l []*Post) int {
		if before == 0 {
			return len(l) - 1
		}
		i, _ := slices.BinarySearchFunc(l, before, func(q *Post, id uint64) int { return cmpU64(q.ID, id) })
		return i - 1
	}
	i, j := below(live), below(hid)
	var out []mineItem
	for (i >= 0 || j >= 0) && len(out) < limit {
		var it mineItem
		if j < 0 || i >= 0 && live[i].ID > hid[j].ID {
			it.p, i = live[i], i-1
		} else {
			it.p, j, it.marked = hid[j], j-1, true
		}
		if it.p.expired(cutoff) {
			continue // not swept yet
		}
		out = append(out, it)
	}
	return out
}

// mineFrame is the my_posts_ack of items (newest first): the first limit,
// and "next" when there are more.
func (s *Service) mineFrame(items []mineItem, limit int) []byte {
	b := []byte(`{"cmd":"my_posts_ack","result":"ok","items":[`)
	for n, it := range items {
		if n == limit {
			b = append(b, `],"next":`...)
			b = strconv.AppendUint(b, items[n-1].p.ID, 10)
			return append(b, '}')
		}
		if n > 0 {
			b = append(b, ',')
		}
		if it.marked {
			b = s.appendReview(b, it.p.JSON)
		} else {
			b = append(b, it.p.JSON...)
		}
	}
	return append(b, "]}"...)
}

// My listings beyond the node's bound (docs/protocol.md "My listings
// beyond a node's bound"): once this node has dropped posts from its
// index (--max-posts or --max-post-bytes lower than the publishing
// node's) and has backfilled the authors' sets in Redis
// (broker.BackfillMine, once, in the background), a my_posts also reads
// the author's page from Redis ({posts}:mine:<user>, one script, at most
// limit posts) and merges it with the index's by id: the index's copy
// wins (it knows the hidden ones), Redis adds the ones the index let go.
// A node that never dropped a post answers from its index alone, as
// before. Redis failing, the index's answer stands (logged).

// mineFromRedis merges index (user's items from the index, newest first,
// at most limit) with user's page from Redis; at most limit items.
func (s *Service) mineFromRedis(ctx context.Context, user string, before uint64, cutoff int64, limit int, index []mineItem) []mineItem {
	stored, err := s.b.MinePosts(ctx, user, before, limit)
	if err != nil {
		s.log.Warn("my_posts: reading the author's posts from Redis failed; answered from the index", zap.String("user", user), zap.Error(err))
		return index
	}
	var fromRedis []mineItem
	s.mu.RLock()
	for _, js := range stored {
		p, err := parseStored([]byte(js), s.cfg.LocationDepth, s.cfg.ProductDepth)
		if err != nil || p.From != user || p.expired(cutoff) {
			continue
		}
		_, hidden := s.hidden[p.ID]
		fromRedis = append(fromRedis, mineItem{p: p, marked: hidden})
	}
	s.mu.RUnlock()
	out := make([]mineItem, 0, min(len(index)+len(fromRedis), limit))
	i, j := 0, 0
	for len(out) < limit && (i < len(index) || j < len(fromRedis)) {
		switch {
		case j == len(fromRedis) || i < len(index) && index[i].p.ID > fromRedis[j].p.ID:
			out, i = append(out, index[i]), i+1
		case i == len(index) || fromRedis[j].p.ID > index[i].p.ID:
			out, j = append(out, fromRedis[j]), j+1
		default: // both: the index's
			out, i, j = append(out, index[i]), i+1, j+1
		}
	}
	return out
}

// backfillMine puts every stored post in its author's set in Redis
// (retried until done or ctx ends), then lets my_posts read them.
func (s *Service) backfillMine(ctx context.Context) {
	start := time.Now()
	var added int
	if !s.retry(ctx, "listing the stored posts by author", func() error {
		var err error
		added, err = s.b.BackfillMine(ctx)
		return err
	}) {
		return
	}
	s.mineReady.Store(true)
	s.log.Info("this node dropped posts from its index: my_posts now reads each author's listings from Redis too",
		zap.Int("backfilled", added), zap.Duration("took", time.Since(start)))
}
