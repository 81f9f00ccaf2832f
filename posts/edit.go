package posts

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Editing a listing (docs/protocol.md, "Editing a listing"): update,
// set_status and renew change a stored post in place, keeping its id, its
// author and its date. Redis checks the owner and changes the post in one
// script (broker.ChangePost), which also broadcasts the new version to
// every node ({"op":"upd"}); each node applies it in channel order, which
// is the order Redis ran the changes in.

// postID reads the request's "id" as delete does: missing or not a number
// is malformed; a number that is no post id is not_found.
func postID(req *wire.Request) (uint64, error) {
	raw := req.Get("id")
	if raw == nil {
		return 0, malformed(`missing field "id"`)
	}
	id, ok := wire.Uint64(raw)
	if !ok {
		if !isNumber(raw) {
			return 0, malformed(`"id" must be a number`)
		}
		return 0, wire.Errorf(wire.NotFound, "there is no post %s", clip(raw))
	}
	return id, nil
}

// allowEdit takes one change of the user's edit rate.
func (s *Service) allowEdit(c Conn) error {
	if ok, retry := s.editLimit.allow(c.User(), s.cfg.Clock()); !ok {
		s.counts.editLimited.Add(1)
		return wire.Errorf(wire.RateLimited, "too many changes to posts; try again in %d s", seconds(retry))
	}
	return nil
}

// Update handles {"cmd":"update","id":18,"items":[<post>]}: the post's
// body, codes, features and range_values are replaced by the item's,
// validated as a publish's are. Its id, author and date stay; it gets an
// "edited" date. Reply {"cmd":"update_ack","result":"ok","id":18,"post":{...}}.
func (s *Service) Update(ctx context.Context, c Conn, req *wire.Request) error {
	id, err := postID(req)
	if err != nil {
		return err
	}
	d, err := decodePublish(req, &s.cfg.Limits)
	if err != nil {
		return err
	}
	if _, err := wire.ChannelHash(d.loc, s.cfg.LocationDepth); err != nil {
		return invalid("location code: %v", err)
	}
	if _, err := wire.ChannelHash(d.prod, s.cfg.ProductDepth); err != nil {
		return invalid("product code: %v", err)
	}
	if m := s.cfg.Menu; m != nil {
		if !m.Locations.valid(d.loc) {
			return invalid("the location code %s is not in the menu", appendCode(nil, d.loc))
		}
		if !m.Products.valid(d.prod) {
			return invalid("the product code %s is not in the menu", appendCode(nil, d.prod))
		}
	}
	if err := s.allowEdit(c); err != nil {
		return err
	}
	head, tail := d.parts(c.User())
	return s.change(ctx, c, "update", id, broker.PostChange{Kind: "update", Head: head, Tail: tail, MaxBytes: s.cfg.MaxPostBytes})
}

// SetStatus handles {"cmd":"set_status","id":18,"status":"sold"}: status is
// "sold", "reserved" or "available" (which removes the status member).
// Reply {"cmd":"set_status_ack","result":"ok","id":18,"post":{...}}.
func (s *Service) SetStatus(ctx context.Context, c Conn, req *wire.Request) error {
	id, err := postID(req)
	if err != nil {
		return err
	}
	raw := req.Get("status")
	if raw == nil {
		return malformed(`missing field "status"`)
	}
	st, ok := wire.String(raw)
	if !ok {
		return malformed(`"status" must be a string`)
	}
	switch st {
	case "sold", "reserved", "available":
	default:
		return invalid(`"status" must be "sold", "reserved" or "available"`)
	}
	if err := s.allowEdit(c); err != nil {
		return err
	}
	return s.change(ctx, c, "set_status", id, broker.PostChange{Kind: "status", Status: st})
}

// Renew handles {"cmd":"renew","id":18}: the post's expiry clock starts
// again from now (a "renewed" date), allowed only in the last RenewWindow
// before it expires. Reply {"cmd":"renew_ack","result":"ok","id":18,
// "expires":<unix>,"post":{...}}.
func (s *Service) Renew(ctx context.Context, c Conn, req *wire.Request) error {
	id, err := postID(req)
	if err != nil {
		return err
	}
	if err := s.allowEdit(c); err != nil {
		return err
	}
	return s.change(ctx, c, "renew", id, broker.PostChange{Kind: "renew",
		Expiry: int64(s.cfg.Expiry / time.Second), Window: int64(s.cfg.RenewWindow / time.Second)})
}

// change runs ch in Redis and acks it; the node applies the new version
// when its broadcast arrives, like every other node.
func (s *Service) change(ctx context.Context, c Conn, cmd string, id uint64, ch broker.PostChange) error {
	now := s.cfg.Clock().Unix()
	post, from, err := s.b.ChangePost(ctx, id, c.User(), now, ch)
	switch {
	case errors.Is(err, broker.ErrPostNotFound):
		return wire.Errorf(wire.NotFound, "there is no post %d", id)
	case errors.Is(err, broker.ErrNotOwner):
		return wire.Errorf(wire.NotOwner, "post %d is not yours", id)
	case errors.Is(err, broker.ErrTooEarly):
		s.counts.renewEarly.Add(1)
		return wire.Errorf(wire.RateLimited, "a post can be renewed in the last %s before it expires; post %d from %d (in %d s)",
			s.cfg.RenewWindow, id, from, from-now)
	case errors.Is(err, broker.ErrPostsFull):
		s.counts.full.Add(1)
		return wire.Errorf(wire.PostsFull, "this server holds as many posts as it may; try again later")
	case errors.Is(err, broker.ErrPostFormat):
		return wire.Errorf(wire.BadRequest, "post %d cannot be changed", id)
	case err != nil:
		s.log.Warn("changing a post failed", zap.String("cmd", cmd), zap.Uint64("post", id), zap.Error(err))
		return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	s.counts.changed.Add(1)
	ack := make([]byte, 0, len(post)+96)
	ack = append(ack, `{"cmd":"`...)
	ack = append(ack, cmd...)
	ack = append(ack, `_ack","result":"ok","id":`...)
	ack = strconv.AppendUint(ack, id, 10)
	if ch.Kind == "renew" {
		ack = append(ack, `,"expires":`...)
		ack = strconv.AppendInt(ack, now+int64(s.cfg.Expiry/time.Second), 10)
	}
	ack = append(ack, `,"post":`...)
	if s.isHidden(id) && strings.HasSuffix(post, "}") {
		// The author's copy of a hidden post is marked (hidden.go).
		ack = s.appendReview(ack, []byte(post))
	} else {
		ack = append(ack, post...)
	}
	c.SendPersistent(append(ack, '}'))
	return nil
}

// applyChange puts p, the new version of a post, in place of the old one
// and tells the subscriptions that asked for changes. A version equal to
// the one held, or of a post this node does not hold (deleted, expired,
// dropped at its bound), changes nothing. Called with s.mu held.
func (s *Service) applyChange(p *Post) {
	old := s.x.byID[p.ID]
	if old == nil || bytes.Equal(old.JSON, p.JSON) {
		return
	}
	s.x.remove(p.ID)
	if p.expired(s.cutoff()) {
		s.removed(old)
		s.x.tidy()
		return
	}
	// The new version takes the old one's place; a concurrent subscribe
	// drops the old one from its catch-up and sends this one after it.
	if !s.admit(p) {
		s.x.tidy()
		return
	}
	s.x.tidy()
	s.counts.changesSent.Add(uint64(s.x.fanoutChanged(old, p)))
}

// fanoutChanged sends the new version p of post old to every subscription
// that asked for changes ("deletions":true) and matches it, whatever its
// floor (the client may hold the post from anywhere), and post_deleted to
// those that matched old but do not match p (its codes, features or range
// values changed). It returns the frames queued.
func (x *index) fanoutChanged(old, p *Post) int {
	var frame, gone []byte
	n := 0
	visit := func(l []*sub, skipNew bool) {
		for _, s := range l {
			if !s.f.Deletions {
				continue
			}
			if s.f.matchProd(p) && s.f.matchRest(p) {
				if skipNew {
					continue // on the new product's list too: sent there
				}
				if frame == nil {
					frame = liveFrame(p)
				}
				s.c.SendLive(frame)
				n++
			} else if s.f.matchProd(old) && s.f.matchRest(old) {
				if gone == nil {
					gone = deletedFrame(old.ID)
				}
				s.c.SendLive(gone)
				n++
			}
		}
	}
	visit(x.prodSubs[p.Prod], false)
	if old.Prod != p.Prod {
		visit(x.prodSubs[old.Prod], true)
	}
	visit(x.wild, false)
	return n
}
