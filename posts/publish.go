package posts

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Publish handles {"cmd":"publish","items":[<post>]}: validate, take one
// publish of the user's quota, store and broadcast, reply publish_ack, then
// echo the post to the publisher if it matches the publisher's own
// subscription. The store script refuses an author with a listing hidden
// pending review (under_review, docs/protocol.md "Publishing while under
// review"); the quotas taken are given back, as for posts_full.
func (s *Service) Publish(ctx context.Context, c Conn, req *wire.Request) error {
	d, err := decodePublish(req, &s.cfg.Limits)
	if err != nil {
		return err
	}
	p := &Post{Features: d.features, Ranges: d.ranges, From: c.User()}
	if p.Loc, err = wire.ChannelHash(d.loc, s.cfg.LocationDepth); err != nil {
		return invalid("location code: %v", err)
	}
	if p.Prod, err = wire.ChannelHash(d.prod, s.cfg.ProductDepth); err != nil {
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
	now := s.cfg.Clock()
	remaining, retry, ok, err := s.b.TakePostQuota(ctx, p.From, now.UnixMilli(), s.quota)
	if err != nil {
		s.log.Warn("post quota check failed", zap.String("user", p.From), zap.Error(err))
		return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	if !ok {
		return wire.Errorf(wire.QuotaExceeded, "%d posts per %s; the next is possible in %d s",
			s.quota.N, s.cfg.QuotaPeriod, (retry+999)/1000)
	}
	addr, day := c.Client(), now.Unix()/86400
	if addr == "" || s.cfg.PostsPerAddress < 0 {
		addr = ""
	} else if ok, err := s.b.TakeAddressPost(ctx, addr, day, s.cfg.PostsPerAddress); err != nil || !ok {
		s.refund(ctx, p.From, "", 0)
		if err != nil {
			s.log.Warn("address post quota check failed", zap.String("user", p.From), zap.Error(err))
			return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
		}
		s.counts.addressQuota.Add(1)
		return wire.Errorf(wire.QuotaExceeded, "%d posts per address per day; the next is possible in %d s (at 00:00 UTC)",
			s.cfg.PostsPerAddress, (day+1)*86400-now.Unix())
	}
	p.Date = now.Unix()
	members := d.members(p.From, p.Date)
	origin := s.node + strconv.FormatUint(s.seq.Add(1), 10)
	s.mu.Lock()
	s.pending[origin] = c
	s.mu.Unlock()
	id, err := s.b.StorePostWithin(ctx, members, p.From, p.Date, origin,
		broker.PostBounds{Posts: s.cfg.MaxPosts, Bytes: s.cfg.MaxPostBytes})
	if err != nil {
		s.mu.Lock()
		delete(s.pending, origin)
		s.mu.Unlock()
		s.refund(ctx, p.From, addr, day)
		if errors.Is(err, broker.ErrPostsFull) {
			s.counts.full.Add(1)
			return wire.Errorf(wire.PostsFull, "this server holds as many posts as it may; try again later")
		}
		if errors.Is(err, broker.ErrUnderReview) {
			// Checked in the store script: no round trip more for anyone.
			s.counts.underReview.Add(1)
			return wire.Errorf(wire.UnderReview, "a listing of yours is under review; you can publish again once a moderator has looked at it")
		}
		s.log.Warn("storing a post failed", zap.String("user", p.From), zap.Error(err))
		return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	p.ID = id
	p.words = bodyWords(d.body)
	p.status = statusAvailable
	p.JSON = make([]byte, 0, len(members)+32)
	p.JSON = append(p.JSON, `{"id":`...)
	p.JSON = strconv.AppendUint(p.JSON, id, 10)
	p.JSON = append(p.JSON, ',')
	p.JSON = append(append(p.JSON, members...), '}')

	ack := []byte(`{"cmd":"publish_ack","result":"ok","id":`)
	ack = strconv.AppendUint(ack, id, 10)
	ack = append(ack, `,"date":`...)
	ack = strconv.AppendInt(ack, p.Date, 10)
	ack = append(ack, `,"remaining_posts":`...)
	ack = strconv.AppendInt(ack, int64(remaining), 10)
	ack = append(ack, '}')
	c.SendPersistent(ack)

	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, origin)
	if _, gone := s.tomb[id]; gone {
		return nil
	}
	if h, ok := s.hidden[id]; ok {
		// Hidden meanwhile (its broadcast and its hide applied while
		// this waited): held aside, never indexed (hidden.go).
		if h == nil {
			s.setHidden(id, p)
		}
		return nil
	}
	if s.admit(p) {
		// First here: everyone matching, the publisher included, gets it.
		s.delivered.Add(uint64(s.x.fanout(p, liveFrame(p), nil)))
		return nil
	}
	// The broadcast was applied first and skipped the publisher.
	if sb, ok := s.x.subs[c]; ok && sb.match(p) {
		if q := s.x.byID[id]; q != nil {
			c.SendLive(liveFrame(q))
			s.delivered.Add(1)
		}
	}
	return nil
}

// refund gives back the publish taken from user's quota and, when addr is
// not "", from addr's, when the post was not stored after all.
func (s *Service) refund(ctx context.Context, user, addr string, day int64) {
	ctx = context.WithoutCancel(ctx)
	if err := s.b.RefundPostQuota(ctx, user); err != nil {
		s.log.Warn("refunding a post quota failed", zap.String("user", user), zap.Error(err))
	}
	if addr == "" {
		return
	}
	if err := s.b.RefundAddressPost(ctx, addr, day); err != nil {
		s.log.Warn("refunding an address post quota failed", zap.String("user", user), zap.Error(err))
	}
}

// LoginQuota is the publish quota and the time (Unix ms) RemainingPosts
// would read it with, for a login that reads the quota in a script of its
// own (broker.LoginFetch).
func (s *Service) LoginQuota() (broker.Quota, int64) {
	return s.quota, s.cfg.Clock().UnixMilli()
}

// RemainingPosts is how many posts user may still publish now, for
// login_ack.
func (s *Service) RemainingPosts(ctx context.Context, user string) (int, error) {
	n, err := s.b.PostQuotaRemaining(ctx, user, s.cfg.Clock().UnixMilli(), s.quota)
	if err != nil {
		return 0, fmt.Errorf("remaining posts of %s: %w", user, err)
	}
	return n, nil
}
