// Package posts owns classified posts: publish, subscribe with filters,
// live fan-out to every matching connection of this node, catch-up after a
// subscribe, owner-only delete, the per-user publish quota, expiry, the
// menus that give codes their meaning, and the HTTP read API.
//
// Redis (through broker) is the truth: a post exists once the store script
// has stored and announced it on the posts channel. Every node keeps an
// in-memory index of the live posts, built from Redis at start and again
// after every Redis reconnect, and kept current by the broadcasts; matching,
// catch-up and the HTTP reads are served from it.
//
// Ordering rules (PROTOCOL.md sections 1 and 4) rest on one lock: the index
// and the subscriptions change together under Service.mu, and frames are
// queued with Conn.Send, which never blocks, while it is held. So a
// subscribe_ack and its catch-up leave together with no live post between
// them, and a post is applied once per node whatever path it arrives by.
package posts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Conn is what posts needs from a live, logged-in connection. Its dynamic
// type must be comparable (a pointer): it keys the subscription table.
type Conn interface {
	User() string
	// Send queues a transient frame (a live or catch-up post). false when
	// the connection is gone or its bounded queue is full (it is then
	// being closed as a slow consumer; posts are not lost: they are in
	// Redis). It never blocks. The frame may be shared between
	// connections: it must not be modified.
	Send(frame []byte) bool
	// SendLive is Send for a live post (one published while the
	// connection is subscribed): it may wait up to the node's write delay
	// for other frames to share its write.
	SendLive(frame []byte) bool
	// SendPersistent queues a reply that must reach the user: if the
	// connection ends before it is written it goes to the user's offline
	// queue and comes after the next login_ack (publish_ack, delete_ack).
	SendPersistent(frame []byte) bool
	// Client is the key of the client's address (the address, or its
	// network for IPv6), for the per-address publish budget; "" when
	// unknown (no budget applies).
	Client() string
}

// Config of a Service. Zero fields take the defaults given.
type Config struct {
	// Clock gives the time of dates, quotas and expiry; default time.Now.
	Clock func() time.Time
	// Menu gives the valid codes; nil accepts any well-formed code.
	Menu *Menu
	// LocationDepth and ProductDepth are the filter depths (1..4) used to
	// hash codes; default 3 each. A menu that states another depth is an
	// error.
	LocationDepth int
	ProductDepth  int
	// MaxCatchUp caps the posts sent after a subscribe_ack; default 100.
	MaxCatchUp int
	// QuotaN publishes are allowed per QuotaPeriod; defaults 10 per 24 h.
	QuotaN      int
	QuotaPeriod time.Duration
	// Expiry: posts this old are removed and never returned; default 90 days.
	Expiry time.Duration
	// SweepEvery is the period of the expiry sweep; default 1 minute.
	SweepEvery time.Duration
	// Limits on what a request may hold.
	Limits Limits
	// CORSOrigins allowed to read the HTTP API; default ["*"] (the data is
	// public and no credentials are involved).
	CORSOrigins []string
	// PageSize is the default and MaxPage the largest page of GET
	// /api/posts; defaults 20 and 100.
	PageSize, MaxPage int

	// MaxScan bounds the posts one read examines (a catch-up, a page or a
	// count of GET /api/posts); default 10,000. A read that reaches it
	// answers what it found with a cursor to continue from.
	MaxScan int
	// ReadRate is the GET /api/posts and /api/posts/{id} requests allowed
	// per second per client address, with bursts of ReadBurst; defaults
	// 20 and 40. A negative rate means no limit.
	ReadRate  float64
	ReadBurst int
	// SubscribeRate is the subscribes allowed per second per user, with
	// bursts of SubscribeBurst; defaults 1 and 20 (a client pages through
	// a backlog by subscribing again). Negative: no limit.
	SubscribeRate  float64
	SubscribeBurst int
	// MaxPosts and MaxPostBytes bound the live posts (count, and total
	// length of their JSON): Redis refuses a publish past them (posts_full)
	// and a node's index holds no more (it keeps the newest). Defaults
	// 500,000 and 512 MiB; negative: no bound.
	MaxPosts     int
	MaxPostBytes int64
	// PostsPerAddress is the publishes allowed per client address
	// (Conn.Client) per UTC day; default 50; negative: no limit.
	PostsPerAddress int
	// EditRate is the update, set_status and renew commands allowed per
	// second per user, with bursts of EditBurst; defaults 0.1 (one per 10
	// s) and 10. Negative: no limit.
	EditRate  float64
	EditBurst int
	// RenewWindow is how long before its expiry a post may be renewed;
	// default 7 days.
	RenewWindow time.Duration
	// MaxWords bounds the distinct words of a node's search index;
	// default 2,000,000 (about 300 MB). Words new to a full index are not
	// indexed (the post is not found by them). Negative: no bound.
	MaxWords int
	// ClientKey gives the client address key of an HTTP request (roles
	// trusts its proxies and groups IPv6 by prefix); default echo's RealIP
	// when the router has an IPExtractor, else the peer's address.
	ClientKey func(*http.Request) string
}

// DefaultConfig returns the documented defaults, for flag definitions.
func DefaultConfig() Config {
	var c Config
	c.defaults()
	return c
}

func (c *Config) defaults() error {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.LocationDepth == 0 {
		c.LocationDepth = 3
	}
	if c.ProductDepth == 0 {
		c.ProductDepth = 3
	}
	for _, d := range []int{c.LocationDepth, c.ProductDepth} {
		if _, err := wire.ChannelHash(nil, d); err != nil {
			return err
		}
	}
	if c.Menu != nil {
		if d := c.Menu.Locations.Depth; d != 0 && d != c.LocationDepth {
			return fmt.Errorf("the menu's location depth is %d but the location depth is set to %d", d, c.LocationDepth)
		}
		if d := c.Menu.Products.Depth; d != 0 && d != c.ProductDepth {
			return fmt.Errorf("the menu's product depth is %d but the product depth is set to %d", d, c.ProductDepth)
		}
		m := *c.Menu
		m.Locations.Depth, m.Products.Depth = c.LocationDepth, c.ProductDepth
		c.Menu = &m
	}
	if c.MaxCatchUp <= 0 {
		c.MaxCatchUp = 100
	}
	if c.QuotaN <= 0 {
		c.QuotaN = 10
	}
	if c.QuotaPeriod <= 0 {
		c.QuotaPeriod = 24 * time.Hour
	}
	if c.Expiry <= 0 {
		c.Expiry = 90 * 24 * time.Hour
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = time.Minute
	}
	if len(c.CORSOrigins) == 0 {
		c.CORSOrigins = []string{"*"}
	}
	if c.PageSize <= 0 {
		c.PageSize = 20
	}
	if c.MaxPage <= 0 {
		c.MaxPage = 100
	}
	if c.MaxScan <= 0 {
		c.MaxScan = 10_000
	}
	if c.ReadRate == 0 {
		c.ReadRate = 20
	}
	if c.ReadBurst <= 0 {
		c.ReadBurst = 40
	}
	if c.SubscribeRate == 0 {
		c.SubscribeRate = 1
	}
	if c.SubscribeBurst <= 0 {
		c.SubscribeBurst = 20
	}
	if c.MaxPosts == 0 {
		c.MaxPosts = 500_000
	}
	if c.MaxPostBytes == 0 {
		c.MaxPostBytes = 512 << 20
	}
	if c.PostsPerAddress == 0 {
		c.PostsPerAddress = 50
	}
	if c.EditRate == 0 {
		c.EditRate = 0.1
	}
	if c.EditBurst <= 0 {
		c.EditBurst = 10
	}
	if c.RenewWindow <= 0 {
		c.RenewWindow = 7 * 24 * time.Hour
	}
	if c.MaxWords == 0 {
		c.MaxWords = 2_000_000
	}
	c.Limits.defaults()
	return nil
}

// Service is the posts feature of one node.
type Service struct {
	cfg   Config
	b     *broker.Client
	log   *zap.Logger
	quota broker.Quota
	node  string // origin prefix of this node's publishes
	seq   atomic.Uint64

	mu      sync.RWMutex
	x       *index
	pending map[string]Conn  // origin -> connection whose publish it is, until acked
	tomb    map[uint64]int64 // ids deleted here, until their broadcast comes back
	menu    []byte           // GET /api/menu body, nil without a menu

	in        inbox
	ready     chan struct{} // closed once the index is loaded at start
	loadNanos atomic.Int64  // how long that took

	readLimit *keyed // per client address, HTTP reads
	subLimit  *keyed // per user, subscribes
	editLimit *keyed // per user, update, set_status and renew

	delivered    atomic.Uint64 // live post frames queued to connections
	skipped      atomic.Uint64 // broadcasts and stored posts that did not parse
	counts       counters
	lastEvictLog atomic.Int64 // Unix s of the last eviction warning
	// applied, when set (by tests), is called after each broadcast or
	// reload has been applied, so tests wait for events, not for time.
	applied func()
	// betweenLocks, when set (by tests), runs in Subscribe between the
	// catch-up's read lock and the write lock.
	betweenLocks func()
}

// New builds the service; Run must run for it to work.
func New(cfg Config, b *broker.Client, log *zap.Logger) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("posts config: %w", err)
	}
	var r [6]byte
	rand.Read(r[:])
	s := &Service{cfg: cfg, b: b, log: log,
		quota:   broker.Quota{N: cfg.QuotaN, PeriodMs: cfg.QuotaPeriod.Milliseconds()},
		node:    hex.EncodeToString(r[:]) + ":",
		x:       newIndex(max(cfg.MaxWords, 0)),
		pending: map[string]Conn{},
		tomb:    map[uint64]int64{},
		in:      inbox{sig: make(chan struct{}, 1)},
		ready:   make(chan struct{}),
		// 100,000 keys: a few MB at most, far more than the clients of one node.
		readLimit: newKeyed(cfg.ReadRate, cfg.ReadBurst, 100_000),
		subLimit:  newKeyed(cfg.SubscribeRate, cfg.SubscribeBurst, 100_000),
		editLimit: newKeyed(cfg.EditRate, cfg.EditBurst, 100_000),
	}
	if cfg.Menu != nil {
		var err error
		if s.menu, err = marshalMenu(cfg.Menu); err != nil {
			return nil, err
		}
	}
	return s, nil
}

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
	for {
		select {
		case <-ctx.Done():
			return nil
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
	backoff := 100 * time.Millisecond
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
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
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
	seen := map[uint64]*Post{}
	bad := 0
	err := s.b.ScanPosts(ctx, func(js string) {
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
	fresh := make([]*Post, 0)
	for id, p := range seen {
		if _, ok := s.x.byID[id]; ok || p.expired(cutoff) {
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

// apply handles one message of the posts channel.
func (s *Service) apply(payload string) {
	var op, origin, postRaw, idsRaw []byte
	err := wire.Scan([]byte(payload), func(f wire.Field) {
		switch f.Key {
		case "op":
			op = f.Value
		case "origin":
			origin = f.Value
		case "post":
			postRaw = f.Value
		case "ids":
			idsRaw = f.Value
		}
	})
	if err != nil {
		s.log.Warn("skipped a posts broadcast that is not a JSON object", zap.Int("bytes", len(payload)))
		s.skipped.Add(1)
		return
	}
	switch string(op) {
	case `"post"`:
		p, err := parseStored(postRaw, s.cfg.LocationDepth, s.cfg.ProductDepth)
		if err != nil {
			s.log.Warn("skipped a broadcast post that does not parse", zap.Error(err), zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		o, _ := wire.String(origin)
		cutoff := s.cutoff()
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, gone := s.tomb[p.ID]; gone || p.expired(cutoff) || !s.admit(p) {
			return
		}
		// The publisher's own connection gets its echo from Publish, right
		// after its publish_ack, never before it.
		var skip Conn
		if strings.HasPrefix(o, s.node) {
			skip = s.pending[o]
		}
		s.delivered.Add(uint64(s.x.fanout(p, liveFrame(p), skip)))
	case `"del"`:
		ids, err := decodeU64s(idsRaw, "ids", 1<<20)
		if err != nil {
			s.log.Warn("skipped a broadcast deletion that does not parse", zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range ids {
			s.removed(s.x.remove(id))
			// The deletion came back through the channel, after the post
			// itself: the tombstone has done its job.
			delete(s.tomb, id)
		}
		s.x.tidy()
	case `"upd"`:
		p, err := parseStored(postRaw, s.cfg.LocationDepth, s.cfg.ProductDepth)
		if err != nil {
			s.log.Warn("skipped a broadcast change that does not parse", zap.Error(err), zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.applyChange(p)
	default:
		s.log.Warn("skipped a posts broadcast of unknown kind", zap.ByteString("op", clipBytes(op)))
		s.skipped.Add(1)
	}
}

func clipBytes(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// cutoff is the date at or before which a post has expired.
func (s *Service) cutoff() int64 {
	return s.cfg.Clock().Add(-s.cfg.Expiry).Unix()
}

// Publish handles {"cmd":"publish","items":[<post>]}: validate, take one
// publish of the user's quota, store and broadcast, reply publish_ack, then
// echo the post to the publisher if it matches the publisher's own
// subscription.
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
	s.x.subscribe(c, f, floor)
	return nil
}

func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// Delete handles {"cmd":"delete","id":N}: only the author may delete, and
// Redis checks that atomically with the removal.
func (s *Service) Delete(ctx context.Context, c Conn, req *wire.Request) error {
	raw := req.Get("id")
	if raw == nil {
		return malformed(`missing field "id"`)
	}
	id, ok := wire.Uint64(raw)
	if !ok {
		if !isNumber(raw) {
			return malformed(`"id" must be a number`)
		}
		return wire.Errorf(wire.NotFound, "there is no post %s", clip(raw))
	}
	err := s.b.DeletePost(ctx, id, c.User())
	switch {
	case errors.Is(err, broker.ErrPostNotFound):
		return wire.Errorf(wire.NotFound, "there is no post %d", id)
	case errors.Is(err, broker.ErrNotOwner):
		return wire.Errorf(wire.NotOwner, "post %d is not yours", id)
	case err != nil:
		s.log.Warn("deleting a post failed", zap.Uint64("post", id), zap.Error(err))
		return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	s.mu.Lock()
	s.removed(s.x.remove(id))
	s.x.tidy()
	// Until the deletion comes back through the channel, a late broadcast
	// of the post itself must not bring it back.
	s.tomb[id] = s.cfg.Clock().Unix()
	s.mu.Unlock()
	ack := []byte(`{"cmd":"delete_ack","result":"ok","id":`)
	ack = strconv.AppendUint(ack, id, 10)
	c.SendPersistent(append(ack, '}'))
	return nil
}

// Stats are a node's posts figures, for metrics.
type Stats struct {
	Posts         int    // live posts in this node's index
	Subscriptions int    // connections of this node with a subscription
	Delivered     uint64 // live post frames queued to connections, since start
	Skipped       uint64 // broadcasts or stored posts skipped because they did not parse

	ReadsLimited      uint64 // HTTP reads refused rate_limited (429)
	SubscribesLimited uint64 // subscribes refused rate_limited
	ScansCapped       uint64 // reads that stopped at MaxScan and answered a cursor
	RefusedFull       uint64 // publishes refused posts_full
	RefusedAddress    uint64 // publishes refused quota_exceeded by the per-address budget
	Evicted           uint64 // posts this node dropped from its index at its bound
	DeletedSent       uint64 // post_deleted frames queued to connections

	Changed      uint64 // update, set_status and renew done through this node
	EditsLimited uint64 // update, set_status and renew refused rate_limited by EditRate
	RenewEarly   uint64 // renew refused rate_limited: before the renewal window
	ChangesSent  uint64 // frames queued to connections for changed posts (new versions, post_deleted)
	Words        int    // distinct words in this node's search index
	WordsDropped uint64 // words of posts left unindexed at MaxWords
}

// counters are the refusal and guard counts behind Stats.
type counters struct {
	readLimited, subLimited, scanCapped, full, addressQuota, evicted, deletedSent atomic.Uint64

	changed, editLimited, renewEarly, changesSent atomic.Uint64
}

// Stats returns the current figures.
func (s *Service) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k := &s.counts
	return Stats{Posts: s.x.len(), Subscriptions: len(s.x.subs),
		Delivered: s.delivered.Load(), Skipped: s.skipped.Load(),
		ReadsLimited: k.readLimited.Load(), SubscribesLimited: k.subLimited.Load(),
		ScansCapped: k.scanCapped.Load(), RefusedFull: k.full.Load(),
		RefusedAddress: k.addressQuota.Load(), Evicted: k.evicted.Load(), DeletedSent: k.deletedSent.Load(),
		Changed: k.changed.Load(), EditsLimited: k.editLimited.Load(), RenewEarly: k.renewEarly.Load(),
		ChangesSent: k.changesSent.Load(), Words: len(s.x.words), WordsDropped: s.x.wordsDropped}
}

// Leave drops the subscription of a closed connection.
func (s *Service) Leave(c Conn) {
	s.mu.Lock()
	s.x.leave(c)
	s.mu.Unlock()
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

func deletedFrame(id uint64) []byte {
	b := []byte(`{"cmd":"post_deleted","id":`)
	b = strconv.AppendUint(b, id, 10)
	return append(b, '}')
}

func liveFrame(p *Post) []byte {
	return itemsFrame([]*Post{p})
}

func itemsFrame(ps []*Post) []byte {
	n := 32
	for _, p := range ps {
		n += len(p.JSON) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"cmd":"post","items":[`...)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.JSON...)
	}
	return append(b, "]}"...)
}

// inbox is the unbounded queue between the pub/sub reader (which must never
// block) and Run, which applies messages in arrival order.
type inbox struct {
	mu    sync.Mutex
	items []item
	sig   chan struct{}
}

type item struct {
	payload string
	reload  bool
}

func (q *inbox) push(it item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.sig <- struct{}{}:
	default:
	}
}

func (q *inbox) take() []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	its := q.items
	q.items = nil
	return its
}
