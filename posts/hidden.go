package posts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/occase/occase/images"
)

// Listings hidden pending review (docs/protocol.md "Listings hidden
// pending review"): once enough distinct, aged users report a post, the
// report's script in Redis hides it and announces {"op":"hide"} on the
// posts channel (broker/reports.go); an operator's dismissal announces
// {"op":"show"}.
//
// A node takes a hidden post out of its index and holds it aside in
// Service.hidden, so that the fan-out, the catch-up, the counts, the
// search and the HTTP reads, which all read the index, never meet it and
// pay nothing for it: the hot paths have no per-post check and no Redis
// round trip. Only the post's author still sees it: the subscribe of the
// author's own connection checks the posts held aside (anyone else's
// subscribe pays one map lookup, Service.hiddenBy, however many are
// hidden) and sends the matching ones marked
// "under_review":true, and the changes of a hidden post go to the
// author's subscriptions only, marked the same way.
//
// Service.hidden maps each id the node knows hidden to the post, or to
// nil when the node does not hold it (a hide announced for a post it
// dropped at its bound). Its size is bounded by Redis's hidden set,
// itself a subset of the review queue (--report-queue-max).

// underReview is the member the author's copy of a hidden post ends with.
const underReview = `,"under_review":true}`

// reviewFrame is the post frame of hidden post p as its author gets it
// (appendReview).
func (s *Service) reviewFrame(p *Post) []byte {
	b := make([]byte, 0, len(p.JSON)+len(underReview)+32)
	b = append(b, `{"cmd":"post","items":[`...)
	b = s.appendReview(b, p.JSON)
	return append(b, "]}"...)
}

// The author's photos of a hidden post (docs/protocol.md "The author's
// photos of a listing under review"): the img nodes refuse them to
// everyone (404 hidden), so on a node with the image key (SetReviewer)
// the author's copy also carries "images_review", a review token per
// photo path of its body's "images" (images.PostPhotos and
// images.ReviewTokens: the entries of the web app's shape, at most four,
// in order; "" for a path whose digest is not one the img nodes name),
// made when the copy is sent and working for 10 minutes: the same
// member, tokens and life as the report lines of the operator page. Only
// the author's copy is built here: the fan-out to anyone else, the
// catch-up, the counts and the HTTP reads never meet a hidden post.

// SetReviewer makes the author's copies of hidden posts carry a review
// token per photo (images_review) made by token from the photo's digest
// (images.Signer.ReviewToken). The roles set it on nodes with the image
// key; nil: none.
func (s *Service) SetReviewer(token func(digest string) string) {
	if token == nil {
		s.reviewer.Store(nil)
		return
	}
	s.reviewer.Store(&token)
}

// appendReview appends js, the stored JSON of a hidden post, as its
// author gets it: "under_review":true and, on a node with a reviewer and
// for a body with photo paths, "images_review" as its last members.
func (s *Service) appendReview(b, js []byte) []byte {
	b = append(b, js[:len(js)-1]...)
	if tok := s.reviewer.Load(); tok != nil {
		if paths := bodyPhotos(js); len(paths) > 0 {
			b = append(b, `,"under_review":true,"images_review":[`...)
			for i, t := range images.ReviewTokens(paths, *tok) {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = append(b, t...) // digits, '.' and hex: nothing to escape
				b = append(b, '"')
			}
			return append(b, "]}"...)
		}
	}
	return append(b, underReview...)
}

// bodyPhotos returns the photo paths of the "images" of the body of js, a
// stored post (images.PostPhotos).
func bodyPhotos(js []byte) []string {
	var p struct {
		Body string `json:"body"`
	}
	if json.Unmarshal(js, &p) != nil {
		return nil
	}
	var b map[string]json.RawMessage
	if json.Unmarshal([]byte(p.Body), &b) != nil {
		return nil
	}
	return images.PostPhotos(b["images"])
}

// hideLocked hides post id on this node: out of the index, held aside.
// Subscriptions that asked for deletions and match it get post_deleted,
// but the author's, which get it marked under review. Called with s.mu
// held.
func (s *Service) hideLocked(id uint64) {
	if _, ok := s.hidden[id]; ok {
		return
	}
	p := s.x.byID[id]
	if p == nil {
		s.setHidden(id, nil)
		return
	}
	aside := *p // remove clears the JSON of the indexed one
	s.x.remove(id)
	s.x.tidy()
	s.setHidden(id, &aside)
	s.counts.deletedSent.Add(uint64(s.x.fanoutHidden(&aside, s.reviewFrame)))
}

// showLocked shows post id again: back in the index, sent to the
// subscriptions that asked for changes and match it (as a changed post
// is: they may have dropped it at the hide). Called with s.mu held.
func (s *Service) showLocked(id uint64) {
	p, ok := s.hidden[id]
	if !ok {
		return
	}
	s.unhide(id)
	if p == nil || p.expired(s.cutoff()) || !s.admit(p) {
		return
	}
	s.counts.changesSent.Add(uint64(s.x.fanoutChanged(p, p)))
}

// goneHidden forgets hidden post id, deleted or expired: its author's
// subscriptions that asked for deletions are told (the others were at
// the hide). It reports whether the post was hidden. Called with s.mu
// held.
func (s *Service) goneHidden(id uint64) bool {
	p, ok := s.hidden[id]
	if !ok {
		return false
	}
	s.unhide(id)
	if p != nil {
		s.counts.deletedSent.Add(uint64(s.x.fanoutAuthor(p, deletedFrame(p.ID))))
	}
	return true
}

// changeHidden takes p, a new version of a hidden post, aside in place of
// the old one, and sends it, marked under review, to its author's
// subscriptions. It reports false when the post is not hidden. Called
// with s.mu held.
func (s *Service) changeHidden(p *Post) bool {
	old, ok := s.hidden[p.ID]
	if !ok {
		return false
	}
	if old != nil && bytes.Equal(old.JSON, p.JSON) {
		return true
	}
	s.setHidden(p.ID, p)
	s.counts.changesSent.Add(uint64(s.x.fanoutAuthor(p, s.reviewFrame(p))))
	return true
}

// authorCatchUp returns the frames of the hidden posts of c's user that f
// matches above floor, marked under review, for its subscribe. Called
// with s.mu held.
func (s *Service) authorCatchUp(c Conn, f *Filter, floor uint64, cutoff int64) [][]byte {
	mine := s.hiddenBy[c.User()] // in id order
	if len(mine) == 0 {
		return nil
	}
	var out [][]byte
	for _, p := range mine {
		if p.ID > floor && !p.expired(cutoff) && f.matchProd(p) && f.matchRest(p) &&
			(f.Search == nil || f.Search.match(p)) && (f.Status == 0 || f.Status&p.status != 0) {
			out = append(out, s.reviewFrame(p))
		}
	}
	return out
}

// reloadHidden makes the hidden posts those of ids (Redis's hidden set,
// read before the posts of seen), after a reload read seen from Redis:
// posts of the index now hidden are hidden, posts held aside no longer
// hidden are shown (when still in Redis), and posts hidden in Redis that
// the node lacks are held aside. Called with s.mu held, before the
// reload inserts the posts new to the node, which skips those in
// s.hidden.
func (s *Service) reloadHidden(ids []uint64, seen map[uint64]*Post) {
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for id, p := range s.hidden {
		if want[id] {
			continue
		}
		if sp, ok := seen[id]; ok {
			if p == nil || !bytes.Equal(p.JSON, sp.JSON) {
				s.setHidden(id, sp)
			}
			s.showLocked(id)
		} else {
			s.unhide(id)
		}
	}
	for id := range want {
		if _, ok := s.hidden[id]; ok {
			// Redis's version: an edit may have been missed, or the
			// post gone (nil), while the node was cut off.
			s.setHidden(id, seen[id])
			continue
		}
		if s.x.byID[id] != nil {
			s.hideLocked(id)
		} else {
			s.setHidden(id, seen[id]) // nil when Redis holds no such post
		}
	}
}

// isHidden tells whether post id is hidden on this node.
func (s *Service) isHidden(id uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.hidden[id]
	return ok
}

// HiddenCount is how many posts this node holds aside as hidden pending
// review.
func (s *Service) HiddenCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.hidden)
}

// hiddenIDs reads Redis's hidden set, for a reload.
func (s *Service) hiddenIDs(ctx context.Context) ([]uint64, error) {
	ids, err := s.b.HiddenPosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("load the hidden posts: %w", err)
	}
	return ids, nil
}

// fanoutHidden tells the subscriptions that asked for deletions and match
// p that it is gone, but those of its author, which get it marked under
// review (frame). It returns how many were told.
func (x *index) fanoutHidden(p *Post, frame func(*Post) []byte) int {
	var gone, review []byte
	n := 0
	for _, l := range [2][]*sub{x.prodSubs[p.Prod], x.wild} {
		for _, s := range l {
			if !s.f.Deletions || !s.f.matchRest(p) {
				continue
			}
			if s.c.User() == p.From {
				if review == nil {
					review = frame(p)
				}
				s.c.SendLive(review)
			} else {
				if gone == nil {
					gone = deletedFrame(p.ID)
				}
				s.c.SendLive(gone)
			}
			n++
		}
	}
	return n
}

// fanoutAuthor sends frame to the subscriptions of p's author that asked
// for changes and match p. It returns how many got it.
func (x *index) fanoutAuthor(p *Post, frame []byte) int {
	n := 0
	for _, l := range [2][]*sub{x.prodSubs[p.Prod], x.wild} {
		for _, s := range l {
			if s.f.Deletions && s.c.User() == p.From && s.f.matchRest(p) {
				s.c.SendLive(frame)
				n++
			}
		}
	}
	return n
}

// setHidden holds p aside as hidden post id (nil: hidden, not held),
// keeping hiddenBy. Called with s.mu held.
func (s *Service) setHidden(id uint64, p *Post) {
	s.unhide(id)
	s.hidden[id] = p
	if p != nil {
		s.hiddenBy[p.From] = addByID(s.hiddenBy[p.From], p)
	}
}

// unhide forgets hidden post id, keeping hiddenBy. Called with s.mu held.
func (s *Service) unhide(id uint64) {
	if old := s.hidden[id]; old != nil {
		if l := dropByID(s.hiddenBy[old.From], old.ID); len(l) == 0 {
			delete(s.hiddenBy, old.From)
		} else {
			s.hiddenBy[old.From] = l
		}
	}
	delete(s.hidden, id)
}
