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
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/occase/occase/broker"
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

// Service is the posts feature of one node.
type Service struct {
	cfg   Config
	b     *broker.Client
	log   *zap.Logger
	quota broker.Quota
	node  string // origin prefix of this node's publishes
	seq   atomic.Uint64
	// legacyMade caches broker.MadeSince (0: not read yet).
	legacyMade atomic.Int64
	// reviewer makes the review tokens of the author's copies of hidden
	// posts (SetReviewer); nil: none.
	reviewer atomic.Pointer[func(digest string) string]

	mu      sync.RWMutex
	x       *index
	pending map[string]Conn  // origin -> connection whose publish it is, until acked
	tomb    map[uint64]int64 // ids deleted here, until their broadcast comes back
	hidden  map[uint64]*Post // posts hidden pending review, out of the index (hidden.go)
	// hiddenBy holds the posts held in hidden per author, in id order, so
	// that a subscribe of anyone else skips them at once and an author's
	// own reads walk only theirs (hidden.go, mine.go); setHidden and
	// unhide keep the two in step.
	hiddenBy map[string][]*Post
	menu     []byte // GET /api/menu body, nil without a menu

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
	// The authors' listings from Redis (mine.go): the first eviction
	// asks Run (mineBackfill) to backfill {posts}:mine:<user> once;
	// mineReady, once it is done, makes my_posts read Redis too.
	mineAsked    atomic.Bool
	mineBackfill chan struct{}
	mineReady    atomic.Bool
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
		quota:        broker.Quota{N: cfg.QuotaN, PeriodMs: cfg.QuotaPeriod.Milliseconds()},
		node:         hex.EncodeToString(r[:]) + ":",
		x:            newIndex(max(cfg.MaxWords, 0)),
		pending:      map[string]Conn{},
		tomb:         map[uint64]int64{},
		hidden:       map[uint64]*Post{},
		hiddenBy:     map[string][]*Post{},
		in:           inbox{sig: make(chan struct{}, 1)},
		mineBackfill: make(chan struct{}, 1),
		ready:        make(chan struct{}),
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
	RefusedReview     uint64 // publishes refused under_review: a listing of the author's is hidden pending review
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
	readLimited, subLimited, scanCapped, full, addressQuota, evicted, deletedSent, underReview atomic.Uint64

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
		RefusedAddress: k.addressQuota.Load(), RefusedReview: k.underReview.Load(), Evicted: k.evicted.Load(), DeletedSent: k.deletedSent.Load(),
		Changed: k.changed.Load(), EditsLimited: k.editLimited.Load(), RenewEarly: k.renewEarly.Load(),
		ChangesSent: k.changesSent.Load(), Words: len(s.x.words), WordsDropped: s.x.wordsDropped}
}
