package posts

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/occase/occase/wire"
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
	s.mu.RLock()
	frame := s.mineFrame(c.User(), before, cutoff, s.cfg.MaxCatchUp)
	s.mu.RUnlock()
	c.Send(frame)
	return nil
}

// mineFrame builds the my_posts_ack of user's posts below before (0: no
// bound), at most limit of them. Called with s.mu held (read).
func (s *Service) mineFrame(user string, before uint64, cutoff int64, limit int) []byte {
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
	b := []byte(`{"cmd":"my_posts_ack","result":"ok","items":[`)
	n := 0
	var last uint64
	for i >= 0 || j >= 0 {
		var p *Post
		marked := false
		if j < 0 || i >= 0 && live[i].ID > hid[j].ID {
			p, i = live[i], i-1
		} else {
			p, j, marked = hid[j], j-1, true
		}
		if p.expired(cutoff) {
			continue // not swept yet
		}
		if n == limit {
			b = append(b, `],"next":`...)
			b = strconv.AppendUint(b, last, 10)
			return append(b, '}')
		}
		if n > 0 {
			b = append(b, ',')
		}
		if marked {
			b = append(b, p.JSON[:len(p.JSON)-1]...)
			b = append(b, underReview...)
		} else {
			b = append(b, p.JSON...)
		}
		n++
		last = p.ID
	}
	return append(b, "]}"...)
}
