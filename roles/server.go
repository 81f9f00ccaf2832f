// Package roles is the composition root: it decides which parts run in each
// role (db, img, all), builds them, mounts them on one echo router, and owns
// the WebSocket session loop, the frame envelope and the close codes.
// Feature packages never learn which role is running.
package roles

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/images"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/presence"
	"github.com/occase/occase/webapp"
	"github.com/occase/occase/wire"
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

	// postsStop ends the posts service's Run; postsDone closes when it has.
	postsStop context.CancelFunc
	postsDone chan struct{}
	// img role
	imgStore *images.DirStore

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
	handlers sync.WaitGroup // WebSocket handlers still running
	stopDog  chan struct{}  // ends the write watchdog
	dogDone  chan struct{}
	readPoll readPoller // parks idle connections (park.go)

	m *metrics
}

// New builds a node for cfg.Role. It connects to Redis when the role
// needs it.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*Server, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	db, img, err := cfg.parts()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, sessions: map[*session]struct{}{},
		stopDog: make(chan struct{}), dogDone: make(chan struct{})}
	s.m = newMetrics(s)
	go s.writeWatchdog()
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
			s.Close()
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
	switch {
	case s.secret != nil && len(s.secret) != 32:
		return fmt.Errorf("the password-digest secret must be 32 bytes, got %d", len(s.secret))
	case s.secret == nil && b.Embedded():
		s.secret = make([]byte, 32)
		rand.Read(s.secret)
	case s.secret == nil:
		if s.secret, err = b.Secret(ctx); err != nil {
			return fmt.Errorf("no --secret given and none could be read from Redis: %w", err)
		}
		s.log.Warn("no --secret given: using the password-digest key stored in Redis; set --secret (the same on every node) in production")
	}
	cc := s.cfg.Chat
	cc.Clock = s.cfg.Clock
	s.chat = chat.New(cc, b, s.log.Named("chat"))
	s.hub = presence.New(b, s.log.Named("presence"))
	s.regLimit = newAddrLimiter(s.cfg.RegisterRate, s.cfg.RegisterBurst)
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
	s.echo.GET("/readyz", s.ready)
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
	reg := s.m.reg
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_live",
		Help: "Live posts in this node's index."}, func() float64 { return float64(ps.Stats().Posts) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_subscriptions",
		Help: "Connections of this node with a posts subscription."}, func() float64 { return float64(ps.Stats().Subscriptions) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_posts_delivered_total",
		Help: "Live posts queued to connections of this node."}, func() float64 { return float64(ps.Stats().Delivered) }))
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

// MetricsHandler serves the Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{})
}

// Handler is the node's HTTP handler (for tests and for Run).
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) ready(c echo.Context) error {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		return c.String(http.StatusServiceUnavailable, "draining\n")
	}
	if err := s.broker.Ping(c.Request().Context()); err != nil {
		return c.String(http.StatusServiceUnavailable, "redis unreachable\n")
	}
	if !s.broker.SubscribeReady() {
		return c.String(http.StatusServiceUnavailable, "redis subscription not live\n")
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
	if s.cfg.AdminAddr != "" {
		al, err := net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("listen on %s: %w", s.cfg.AdminAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		admin := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go admin.Serve(al)
		defer admin.Close()
		s.log.Info("admin listener", zap.String("addr", al.Addr().String()))
	}
	return s.Serve(ctx, l)
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
		hs := &http.Server{Handler: acmeHTTP, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(hl)
		defer hs.Close()
	}
	hs := &http.Server{Handler: s.echo, ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, ErrorLog: zap.NewStdLog(s.log.Named("http"))}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	s.log.Info("serving", zap.String("role", s.cfg.Role), zap.String("addr", l.Addr().String()), zap.Bool("tls", tc != nil))
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("draining")
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	hs.Shutdown(dctx)
	s.spreadCloses()
	s.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close ends every session (1001, handing back what each holds) and the
// broker connection.
func (s *Server) Close() {
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
	case <-time.After(s.cfg.DrainTimeout):
		s.log.Warn("some connections did not finish within the drain timeout")
	}
	s.readPoll.close()
	if s.postsStop != nil {
		s.postsStop()
		<-s.postsDone
	}
	select {
	case <-s.stopDog:
	default:
		close(s.stopDog)
		<-s.dogDone
	}
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
