// Package roles is the composition root: it decides which parts run in each
// role (db, img, all), builds them, mounts them on one echo router, and owns
// the WebSocket session loop. The frames and the close codes are wire's.
// Feature packages never learn which role is running.
package roles

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/presence"
	"github.com/occase/occase/push"
	"github.com/occase/occase/webapp"
	"github.com/occase/occase/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// PostsConn is what the posts service sees of a connection. An alias, so
// that *posts.Service satisfies postsService as it is.
type PostsConn = posts.Conn

type postsService interface {
	Subscribe(ctx context.Context, c PostsConn, req *wire.Request) error
	Publish(ctx context.Context, c PostsConn, req *wire.Request) error
	Delete(ctx context.Context, c PostsConn, req *wire.Request) error
	Update(ctx context.Context, c PostsConn, req *wire.Request) error
	SetStatus(ctx context.Context, c PostsConn, req *wire.Request) error
	Renew(ctx context.Context, c PostsConn, req *wire.Request) error
	// Mine answers my_posts; MineCount is the count login_ack carries.
	Mine(ctx context.Context, c PostsConn, req *wire.Request) error
	MineCount(user string) int
	Leave(c PostsConn)
	RemainingPosts(ctx context.Context, user string) (int, error)
	// DeleteAllOf deletes every post of user (delete_account).
	DeleteAllOf(ctx context.Context, user string) (int, error)
	// Report stores a report of a post (reports.go).
	Report(ctx context.Context, c PostsConn, req *wire.Request, b broker.ReportBounds) (posts.ReportDone, error)
	// SetReviewer makes the author's copies of hidden posts carry review
	// tokens of their photos (docs/protocol.md "The author's photos of a
	// listing under review").
	SetReviewer(token func(digest string) string)
}

type nameIssuer interface {
	Names(n int) ([]string, error)
}

// Server is one node.
type Server struct {
	cfg  Config
	log  *zap.Logger
	echo *echo.Echo
	// modAPI is the moderation API once served (SetAdminTokens).
	modAPI atomic.Pointer[moderation.Handler]

	// db role
	broker   *broker.Client
	secret   []byte
	hub      *presence.Hub
	chat     *chat.Service
	posts    postsService
	names    nameIssuer
	regLimit *addrLimiter
	regNode  *rate.Limiter // every address together; nil: unlimited
	coolOff  *coolOff      // who was closed with 4006, for --abuse-cooloff
	app      http.Handler  // the web app

	// afterLoginScript, nil but in tests (export_test.go), runs on a
	// login's goroutine between its script and its generation.
	afterLoginScript func(*session)

	// drainBudget bounds a session's shutdown (cfg.DrainTimeout) with a
	// context shared by the sessions that end within a tick.
	drainBudget *broker.Deadlines

	push *push.Service
	// pushStop ends the push sender's Run; pushDone closes when it has.
	pushStop context.CancelFunc
	pushDone chan struct{}

	// postsStop ends the posts service's Run; postsDone closes when it has.
	postsStop context.CancelFunc
	postsDone chan struct{}
	// index tells whether the posts index has been loaded at start.
	index interface {
		Loaded() bool
		LoadSeconds() float64
	}
	// started: what the node needs from Redis before it can take
	// connections is done (the secret is known, the shared keys agree,
	// the data epoch is read). Set once.
	started atomic.Bool
	epoch   atomic.Pointer[string] // the data epoch, for register_ack and login_ack
	// fatal carries a misconfiguration found after New (a key that
	// differs from the other nodes'): Run returns it.
	fatal    chan error
	checkNow chan struct{} // asks the shared-state watcher to look now
	// bg owns the background work that needs Redis (shared-state setup
	// and watch); bgStop ends it.
	bg     sync.WaitGroup
	bgStop context.CancelFunc
	bgCtx  context.Context

	closeOnce sync.Once
	badSigs   atomic.Int64 // uploads refused for a bad signature since the last warning
	// img role
	imgStore *images.DirStore
	imgGC    *images.GC // sweeps and purges imgStore; nil without Redis
	// photos follows hides and purges (photos.go); nil without Redis.
	photos *photoFollower
	// photoBroker is the Redis connection of a node of role img given
	// --redis, for photos alone.
	photoBroker *broker.Client

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
	// drainDeadline is when a drain (SIGTERM) must be over; close waits for
	// the sessions' hand-back until then. Zero when no drain began.
	drainDeadline time.Time
	handlers      sync.WaitGroup // WebSocket handlers still running
	stopDog       chan struct{}  // ends the write watchdog
	dogDone       chan struct{}
	readPoll      readPoller // parks idle connections (park.go)

	m *metrics
}

// New builds a node for cfg.Role. It connects to Redis when the role
// needs it; a Redis that cannot be reached yet is retried in the
// background (the node is not ready until it has been reached). On any
// failure New releases everything it started.
func New(ctx context.Context, cfg Config, log *zap.Logger) (_ *Server, err error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.SharedCheckEvery <= 0 {
		cfg.SharedCheckEvery = 10 * time.Second
	}
	if cfg.KeyWarnEvery <= 0 {
		cfg.KeyWarnEvery = time.Minute
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	db, img, _ := cfg.parts()
	s := &Server{cfg: cfg, log: log, sessions: map[*session]struct{}{},
		stopDog: make(chan struct{}), dogDone: make(chan struct{}),
		fatal: make(chan error, 1), checkNow: make(chan struct{}, 1)}
	s.bgCtx, s.bgStop = context.WithCancel(context.Background())
	s.drainBudget = broker.NewDeadlines(cfg.DrainTimeout)
	s.m = newMetrics(s)
	go s.writeWatchdog()
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if !db {
		s.started.Store(true) // nothing to wait for
	}
	s.echo = echo.New()
	s.echo.HideBanner, s.echo.HidePort = true, true
	s.echo.Use(s.m.httpMiddleware)
	s.echo.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	if cfg.AdminAddr == "" {
		s.echo.GET("/metrics", echo.WrapHandler(s.MetricsHandler()))
	}
	signer, err := s.imageSigner(db, img)
	if err != nil {
		return nil, err
	}
	s.registerKeyInfo()
	if db {
		s.warnAutoHide()
	}
	if db {
		if err := s.buildDB(ctx); err != nil {
			return nil, err
		}
		if signer == nil && img {
			if signer, err = s.processImageSigner(ctx); err != nil {
				return nil, err
			}
		}
		if signer != nil { // never store a typed nil in the interface
			s.names = signer
			// The seller sees the photos of its own listings under
			// review, which the img nodes refuse to everyone else.
			s.posts.SetReviewer(signer.ReviewToken)
		}
	}
	if img {
		if err := s.buildImg(ctx, signer, !db); err != nil {
			return nil, err
		}
	}
	if db && img {
		s.startImageGC(signer)
	}
	return s, nil
}

// imageSigner builds the signer shared by both halves of the node.
func (s *Server) imageSigner(db, img bool) (*images.Signer, error) {
	key := s.cfg.ImageKey
	if key == nil {
		switch {
		case db && img:
			return nil, nil // processImageSigner, once the broker is open
		case img:
			return nil, errors.New("the img role needs --image-key or --image-key-file, the same key as the db nodes")
		default:
			s.log.Warn("no --image-key: filenames will answer unavailable")
			return nil, nil
		}
	}
	return images.NewSigner(key, images.WithClock(s.cfg.Clock))
}

// processImageSigner is the signer of a node of role all with no
// --image-key: both halves are this process, so any key works. On the
// embedded server it is kept with the data, so names handed out before a
// restart still work after it; on a real Redis it is random per process
// (other img nodes could not share it anyway).
func (s *Server) processImageSigner(ctx context.Context) (*images.Signer, error) {
	var key []byte
	if s.broker.Embedded() {
		k, err := s.broker.ImageKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("keep the image key in the embedded server: %w", err)
		}
		key = k
		s.log.Info("no --image-key: using the one the embedded server keeps with its data")
	} else {
		k, err := images.RandomKey()
		if err != nil {
			return nil, err
		}
		key = k
		s.log.Warn("no --image-key: using a random one; upload names issued now stop working when the process restarts")
	}
	return images.NewSigner(key, images.WithClock(s.cfg.Clock))
}

// buildImg mounts the image routes. A node without the db role answers its
// own /readyz: it is ready once the store is open.
func (s *Server) buildImg(ctx context.Context, signer *images.Signer, alone bool) error {
	st, err := images.NewDirStore(s.cfg.ImageDir)
	if err != nil {
		return err
	}
	s.imgStore = st
	if err := s.buildPhotos(ctx, signer, alone); err != nil {
		return err
	}
	s.echo.Use(s.countBadSignatures)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.warnBadSignatures(s.bgCtx)
	}()
	ic := s.cfg.Images
	ic.Metrics = s.m.reg
	if s.photos != nil { // never a typed nil in the interface
		ic.Withheld = s.photos
	}
	if ic.ClientKey == nil {
		// Uploads per address count the same client as the other limits.
		ic.ClientKey = func(r *http.Request) string { return s.clientKey(clientAddr(r, s.cfg.TrustedProxies)) }
	}
	images.NewServer(ic, signer, st, s.log.Named("images")).Register(s.echo)
	if alone {
		s.echo.GET("/readyz", func(c echo.Context) error { return c.String(http.StatusOK, "ready\n") })
	}
	return nil
}

func (s *Server) buildDB(ctx context.Context) error {
	ro := s.cfg.Redis
	ro.Metrics = s.m.reg
	b, err := broker.Open(ctx, ro, s.log.Named("broker"))
	if err != nil {
		return err
	}
	s.broker = b
	s.secret = s.cfg.Secret
	s.registerRedisMetrics()
	if err := s.buildPush(ctx, b); err != nil {
		return err
	}
	cc := s.cfg.Chat
	cc.Clock = s.cfg.Clock
	cc.OnStored = s.push.Due
	s.chat = chat.New(cc, b, s.log.Named("chat"))
	s.hub = presence.New(b, s.log.Named("presence"))
	s.regLimit = newAddrLimiter(s.cfg.RegisterRate, s.cfg.RegisterBurst, s.cfg.Clock)
	s.regNode = newLimiter(s.cfg.RegisterNodeRate, max(s.cfg.RegisterNodeBurst, 1))
	s.coolOff = newCoolOff(s.cfg.AbuseCoolOff)
	if err := s.buildPosts(b); err != nil {
		return err
	}
	s.echo.GET("/ws", s.serveWS)
	s.echo.GET("/", s.serveWS)
	// The web app: index.html at / (a plain GET; an upgrade is the
	// WebSocket) and its files under /assets/, registered explicitly so the
	// image server's catch-all routes never take them.
	s.app = webapp.Handler()
	s.echo.GET("/assets/*", echo.WrapHandler(s.app))
	s.echo.HEAD("/assets/*", echo.WrapHandler(s.app))
	s.echo.GET(webapp.FaviconPath, echo.WrapHandler(s.app))
	s.echo.GET(webapp.ServiceWorkerPath, echo.WrapHandler(s.app))
	s.echo.GET("/readyz", s.ready)
	// What needs Redis before connections are taken: at once when Redis
	// answers (a misconfiguration then stops New with one clear error),
	// else in the background.
	select {
	case <-b.Connected():
		if err := s.setupShared(ctx); err != nil && !errors.Is(err, broker.ErrUnavailable) {
			return err
		}
	default:
	}
	b.OnResubscribed(func() {
		select {
		case s.checkNow <- struct{}{}:
		default:
		}
	})
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.watchShared(s.bgCtx)
	}()
	s.startNoticeResend()
	return nil
}

// buildPosts starts the posts service: its Run (index load, broadcasts,
// expiry sweep) lives as long as the Server and ends in Close, before the
// broker closes.
func (s *Server) buildPosts(b *broker.Client) error {
	pc := s.cfg.Posts
	pc.Clock = s.cfg.Clock
	if pc.Menu == nil && b.Embedded() {
		// Try-it-out mode: the demo menu, so apps have codes to use.
		pc.Menu = posts.DemoMenu()
	}
	if pc.ClientKey == nil {
		// HTTP reads and publishes count the same client as every other
		// per-address limit: behind --trusted-proxies, by /64 for IPv6.
		pc.ClientKey = func(r *http.Request) string { return s.clientKey(clientAddr(r, s.cfg.TrustedProxies)) }
	}
	ps, err := posts.New(pc, b, s.log.Named("posts"))
	if err != nil {
		return err
	}
	ps.Register(s.echo)
	s.posts = ps
	s.index = ps
	reg := s.m.reg
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_live",
		Help: "Live posts in this node's index."}, func() float64 { return float64(ps.Stats().Posts) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_subscriptions",
		Help: "Connections of this node with a posts subscription."}, func() float64 { return float64(ps.Stats().Subscriptions) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_posts_delivered_total",
		Help: "Live posts queued to connections of this node."}, func() float64 { return float64(ps.Stats().Delivered) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_index_loaded",
		Help: "1 once this node has loaded the posts index at start (it is not ready before)."}, func() float64 {
		if ps.Loaded() {
			return 1
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_index_load_seconds",
		Help: "How long the first load of the posts index took (0 until done)."}, ps.LoadSeconds))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_posts_skipped_total",
		Help: "Post broadcasts or stored posts skipped because they did not parse (logged)."}, func() float64 { return float64(ps.Stats().Skipped) }))
	registerPostsMetrics(reg, ps)
	ctx, cancel := context.WithCancel(context.Background())
	s.postsStop, s.postsDone = cancel, make(chan struct{})
	go func() {
		defer close(s.postsDone)
		if err := ps.Run(ctx); err != nil {
			s.log.Error("posts service stopped", zap.Error(err))
		}
	}()
	return nil
}

// buildPush starts the push notification sender; it lives as long as the
// Server and ends in Close, before the broker closes.
func (s *Server) buildPush(ctx context.Context, b *broker.Client) error {
	pc := s.cfg.Push
	if pc.Clock == nil {
		pc.Clock = s.cfg.Clock
	}
	if pc.CountTTL <= 0 {
		pc.CountTTL = s.cfg.Chat.QueueTTL
	}
	ps, err := push.New(ctx, pc, b, s.m.reg, s.log.Named("push"))
	if err != nil {
		return err
	}
	s.push = ps
	s.echo.GET("/api/push/vapid-public-key", echo.WrapHandler(ps.VAPIDKeyHandler()))
	rctx, cancel := context.WithCancel(context.Background())
	s.pushStop, s.pushDone = cancel, make(chan struct{})
	go func() {
		defer close(s.pushDone)
		if err := ps.Run(rctx); err != nil {
			s.log.Error("push sender stopped", zap.Error(err))
		}
	}()
	return nil
}

// MetricsHandler serves the Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{})
}

// Handler is the node's HTTP handler (for tests and for Run).
func (s *Server) Handler() http.Handler { return s.echo }

// Online tells whether user is connected to this node.
func (s *Server) Online(user string) bool { return s.hub != nil && s.hub.Local(user) != nil }
