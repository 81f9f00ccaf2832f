// Package roles is the composition root: it decides which parts run in each
// role (db, img, all), builds them, mounts them on one echo router, and owns
// the WebSocket session loop, the frame envelope and the close codes.
// Feature packages never learn which role is running.
package roles

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/images"
	"github.com/occase/occase/logs"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/presence"
	"github.com/occase/occase/push"
	"github.com/occase/occase/webapp"
	"github.com/occase/occase/wire"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
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
	Leave(c PostsConn)
	RemainingPosts(ctx context.Context, user string) (int, error)
}

type nameIssuer interface {
	Names(n int) ([]string, error)
}

// Server is one node.
type Server struct {
	cfg  Config
	log  *zap.Logger
	echo *echo.Echo

	// db role
	broker   *broker.Client
	secret   []byte
	hub      *presence.Hub
	chat     *chat.Service
	posts    postsService
	names    nameIssuer
	regLimit *addrLimiter
	app      http.Handler // the web app

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

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
	// drainDeadline is when a drain (SIGTERM) must be over; close waits for
	// the sessions' hand-back until then. Zero when no drain began.
	drainDeadline time.Time
	handlers      sync.WaitGroup // WebSocket handlers still running
	stopDog       chan struct{}  // ends the write watchdog
	dogDone       chan struct{}

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
	db, img, err := cfg.parts()
	if err != nil {
		return nil, err
	}
	if cfg.Secret != nil && len(cfg.Secret) != 32 {
		return nil, fmt.Errorf("the password-digest secret must be 32 bytes, got %d", len(cfg.Secret))
	}
	if db && !img && len(cfg.Redis.Addrs) == 0 && len(cfg.Redis.Sentinels) == 0 {
		return nil, errors.New("role db needs --redis, the Redis shared by every node (--redis=embedded runs the in-process server, for a single node)")
	}
	s := &Server{cfg: cfg, log: log, sessions: map[*session]struct{}{},
		stopDog: make(chan struct{}), dogDone: make(chan struct{}),
		fatal: make(chan error, 1), checkNow: make(chan struct{}, 1)}
	s.bgCtx, s.bgStop = context.WithCancel(context.Background())
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
		if err := s.buildDB(ctx); err != nil {
			return nil, err
		}
		if signer != nil { // never store a typed nil in the interface
			s.names = signer
		}
	}
	if img {
		if err := s.buildImg(signer, !db); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// imageSigner builds the signer shared by both halves of the node.
func (s *Server) imageSigner(db, img bool) (*images.Signer, error) {
	key := s.cfg.ImageKey
	if key == nil {
		switch {
		case db && img:
			k, err := images.RandomKey()
			if err != nil {
				return nil, err
			}
			key = k
			s.log.Warn("no --image-key: using a random one; upload names issued now stop working when the process restarts")
		case img:
			return nil, errors.New("the img role needs --image-key or --image-key-file, the same key as the db nodes")
		default:
			s.log.Warn("no --image-key: filenames will answer unavailable")
			return nil, nil
		}
	}
	return images.NewSigner(key, images.WithClock(s.cfg.Clock))
}

// buildImg mounts the image routes. A node without the db role answers its
// own /readyz: it is ready once the store is open.
func (s *Server) buildImg(signer *images.Signer, alone bool) error {
	st, err := images.NewDirStore(s.cfg.ImageDir)
	if err != nil {
		return err
	}
	s.imgStore = st
	s.echo.Use(s.countBadSignatures)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.warnBadSignatures(s.bgCtx)
	}()
	ic := s.cfg.Images
	ic.Metrics = s.m.reg
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

// ready answers /readyz: whether THIS node can serve (it has started, its
// posts index is loaded, it is not draining), not whether the Redis that
// every node shares is up: a Redis outage must not take every node off
// the load balancer at once (occase_redis_up and the alerts say that).
// /readyz?deep=1 also checks Redis and the subscriber connection, for
// operators who want it.
func (s *Server) ready(c echo.Context) error {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	switch {
	case draining:
		return c.String(http.StatusServiceUnavailable, "draining\n")
	case !s.started.Load():
		return c.String(http.StatusServiceUnavailable, "starting: waiting for redis\n")
	case s.index != nil && !s.index.Loaded():
		return c.String(http.StatusServiceUnavailable, "loading posts\n")
	}
	if c.QueryParam("deep") != "" {
		if err := s.broker.Ping(c.Request().Context()); err != nil {
			return c.String(http.StatusServiceUnavailable, "redis unreachable\n")
		}
		if !s.broker.SubscribeReady() {
			return c.String(http.StatusServiceUnavailable, "redis subscription not live\n")
		}
	}
	return c.String(http.StatusOK, "ready\n")
}

func (s *Server) serveWS(c echo.Context) error {
	r := c.Request()
	if r.Header.Get("Upgrade") == "" {
		if r.URL.Path == "/" {
			s.app.ServeHTTP(c.Response(), r)
			return nil
		}
		return echo.ErrNotFound
	}
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		return c.String(http.StatusServiceUnavailable, "draining\n")
	}
	if !s.started.Load() {
		// Until Redis has been reached the password-digest key may be
		// unknown: nothing a connection asks could be served.
		c.Response().Header().Set("Retry-After", "1")
		return c.String(http.StatusServiceUnavailable, "starting: waiting for redis\n")
	}
	cw := &corkWriter{ResponseWriter: c.Response()}
	conn, err := websocket.Accept(cw, r, &websocket.AcceptOptions{
		OriginPatterns:  s.cfg.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil // Accept has answered the client
	}
	if cw.conn == nil { // cannot happen: an accepted connection was hijacked
		conn.CloseNow()
		return errors.New("websocket accepted without a hijack")
	}
	ss := s.newSession(conn, cw.conn, clientAddr(r, s.cfg.TrustedProxies))
	if !s.track(ss) {
		conn.Close(wire.CloseGoingAway, "draining")
		return nil
	}
	// The session gets a goroutine of its own and this handler returns:
	// net/http's goroutine (and its deep stack), the request and echo's
	// context are freed instead of living as long as the connection.
	go func() {
		defer s.handlers.Done()
		ss.serve()
	}()
	return nil
}

func (s *Server) track(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.sessions[ss] = struct{}{}
	s.handlers.Add(1)
	return true
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// Run serves on cfg.Addr (and cfg.AdminAddr) until ctx ends, then drains.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	var g run.Group
	if s.cfg.AdminAddr != "" {
		al, err := net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("listen on %s: %w", s.cfg.AdminAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		admin := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: s.cfg.HTTPIdleTimeout}
		addServer(&g, "admin", admin, al)
		s.log.Info("admin listener", zap.String("addr", al.Addr().String()))
	}
	return s.serve(ctx, l, &g)
}

// addServer makes hs on l a member of g: a failure to serve stops the
// node; the node stopping closes hs.
func addServer(g *run.Group, name string, hs *http.Server, l net.Listener) {
	g.Add(func() error {
		if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s on %s: %w", name, l.Addr(), err)
		}
		return nil
	}, func(error) { hs.Close() })
}

// tlsConfig returns the TLS setup, or nil for plain TCP. Only HTTP/1.1 is
// offered: WebSockets upgrade over it, and nothing on the connection is
// ever given a deadline after the upgrade (the original cut TLS sessions
// after 30 s).
func (s *Server) tlsConfig() (*tls.Config, http.Handler, error) {
	switch {
	case s.cfg.TLSCert != "" || s.cfg.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil, nil
	case len(s.cfg.Domains) > 0:
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(s.cfg.Domains...),
			Cache:      autocert.DirCache(s.cfg.ACMECache),
		}
		c := m.TLSConfig()
		c.MinVersion = tls.VersionTLS12
		c.NextProtos = []string{"http/1.1", acme.ALPNProto}
		return c, m.HTTPHandler(nil), nil
	}
	return nil, nil, nil
}

// Serve serves on l until ctx ends, then drains: stop accepting, mark not
// ready, close every session with 1001 after flushing and handing back what
// it holds, within the drain timeout.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l, &run.Group{})
}

// serve runs the node's long-running members as one group (the listeners,
// the wait for ctx, and the wait for a misconfiguration found after
// start): the first to end stops the others, and serve returns its error
// after the node has drained and closed.
func (s *Server) serve(ctx context.Context, l net.Listener, g *run.Group) error {
	defer s.Close()
	tc, acmeHTTP, err := s.tlsConfig()
	if err != nil {
		l.Close()
		return err
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	if acmeHTTP != nil && s.cfg.ACMEHTTPAddr != "" {
		hl, err := net.Listen("tcp", s.cfg.ACMEHTTPAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("listen on %s: %w", s.cfg.ACMEHTTPAddr, err)
		}
		addServer(g, "ACME HTTP-01", &http.Server{Handler: acmeHTTP, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: s.cfg.HTTPIdleTimeout}, hl)
	}
	// IdleTimeout closes keep-alive connections that sit idle (a hijacked
	// WebSocket is no longer the server's and is not affected). No
	// ReadTimeout: it would stay on a hijacked connection's deadline;
	// uploads have their own timeout.
	hs := &http.Server{Handler: s.echo, ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, IdleTimeout: s.cfg.HTTPIdleTimeout,
		ErrorLog: logs.StdLog(s.log.Named("http"), "http server error")}
	g.Add(func() error {
		if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	}, func(error) {
		// Drain: stop accepting and mark not ready; the sessions are
		// closed by Close once every member has ended.
		s.log.Info("draining")
		dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		defer cancel()
		deadline, _ := dctx.Deadline()
		s.mu.Lock()
		s.draining = true
		s.drainDeadline = deadline
		s.mu.Unlock()
		hs.Shutdown(dctx)
		s.spreadCloses(deadline)
	})
	stop := make(chan struct{})
	g.Add(func() error {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		return nil
	}, func(error) { close(stop) })
	stopFatal := make(chan struct{})
	g.Add(func() error {
		select {
		case err := <-s.fatal:
			return err
		case <-stopFatal:
			return nil
		}
	}, func(error) { close(stopFatal) })
	s.log.Info("serving", zap.String("role", s.cfg.Role), zap.String("addr", l.Addr().String()), zap.Bool("tls", tc != nil))
	return g.Run()
}

// Close ends every session (1001, handing back what each holds), the
// background work and the broker connection. It may be called more than
// once, and concurrently: every call returns once the node is closed.
func (s *Server) Close() {
	s.closeOnce.Do(s.close)
}

// close waits for the sessions' hand-back until the drain's deadline when
// a drain set one (at least drainLastWait), else for the drain timeout.
func (s *Server) close() {
	s.mu.Lock()
	deadline := s.drainDeadline
	s.mu.Unlock()
	if deadline.IsZero() {
		deadline = time.Now().Add(s.cfg.DrainTimeout)
	}
	s.mu.Lock()
	s.draining = true
	all := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss.shutdown(wire.CloseGoingAway, "server shutting down")
		}()
	}
	wg.Wait()
	// Sessions that were already ending on their own are untracked but
	// may still be handing back what they hold.
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(max(time.Until(deadline), drainLastWait)):
		s.log.Warn("some connections did not finish within the drain timeout")
	}
	if s.postsStop != nil {
		s.postsStop()
		<-s.postsDone
	}
	if s.pushStop != nil {
		s.pushStop()
		<-s.pushDone
	}
	select {
	case <-s.stopDog:
	default:
		close(s.stopDog)
		<-s.dogDone
	}
	s.bgStop()
	s.bg.Wait()
	if s.broker != nil {
		s.broker.Close()
	}
	if s.imgStore != nil {
		s.imgStore.Close()
	}
}

// writeWatchdog closes connections whose current write has taken longer
// than the write timeout (a peer that stopped reading), checking every
// quarter of the timeout.
func (s *Server) writeWatchdog() {
	defer close(s.dogDone)
	t := time.NewTicker(max(s.cfg.WriteTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stopDog:
			return
		case now := <-t.C:
			limit := now.Add(-s.cfg.WriteTimeout).UnixNano()
			s.mu.Lock()
			for ss := range s.sessions {
				if w := ss.writeStart.Load(); w != 0 && w < limit {
					ss.abortWrite()
				}
			}
			s.mu.Unlock()
		}
	}
}

// clientAddr is the address the per-address limits count: the peer's,
// unless the peer is a trusted proxy; then the nearest address in
// X-Forwarded-For that is not a trusted proxy (read from the right: what a
// client writes on the left is not to be believed).
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	isTrusted := func(a string) bool {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return false
		}
		for _, p := range trusted {
			if p.Contains(ip.Unmap()) {
				return true
			}
		}
		return false
	}
	if len(trusted) == 0 || !isTrusted(host) {
		return host
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !isTrusted(hop) {
			if _, err := netip.ParseAddr(hop); err != nil {
				return host // garbage: count it against the proxy
			}
			return hop
		}
		host = hop
	}
	return host
}

// Online tells whether user is connected to this node.
func (s *Server) Online(user string) bool { return s.hub != nil && s.hub.Local(user) != nil }
