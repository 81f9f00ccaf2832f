package roles

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/occase/occase/logs"
	"github.com/oklog/run"
	"go.uber.org/zap"
)

// Bounds of one request on the admin listener.
const (
	adminReadTimeout  = 10 * time.Second
	adminWriteTimeout = 60 * time.Second
)

// Run serves on cfg.Addr (and cfg.AdminAddr) until ctx ends, then drains.
func (s *Server) Run(ctx context.Context) error {
	// No TCP keepalive on the node's sockets (four setsockopt calls per
	// connection): a WebSocket is pinged (--idle-timeout) and an idle
	// HTTP connection is closed (--http-idle-timeout) by the node itself.
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("--addr: listen on %s: %w", s.cfg.Addr, err)
	}
	var g run.Group
	if s.cfg.AdminAddr != "" {
		al, err := net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("--admin-addr: listen on %s: %w", s.cfg.AdminAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		mh, err := s.moderationHandler()
		if err != nil {
			al.Close()
			l.Close()
			return err
		}
		mux.Handle("/admin/", mh)
		counted := newAdminConns(al, s.cfg.AdminMaxConns, s.m.reg)
		// ReadTimeout bounds a request's head and body (the moderation
		// API sets its own, longer, deadline once a token is checked):
		// without it a request announcing a body it never sends would
		// hold its connection while net/http waits to discard the body.
		// WriteTimeout bounds a client that does not read its answer.
		// Its connections are counted (adminconns.go); an anonymous one
		// is closed after each answer.
		admin := &http.Server{Handler: closeAnonymous(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: adminReadTimeout,
			WriteTimeout: adminWriteTimeout, IdleTimeout: s.cfg.HTTPIdleTimeout, MaxHeaderBytes: maxHeadBytes, ErrorLog: logs.StdLog(s.log.Named("admin"), "admin server error"),
			ConnContext: adminConnContext}
		addServer(&g, "admin", admin, counted)
		s.log.Info("admin listener", zap.String("addr", al.Addr().String()))
	}
	tctx, stopTuner := context.WithCancel(ctx)
	defer stopTuner()
	tuned := make(chan struct{})
	go func() {
		defer close(tuned)
		runGCTuner(tctx, s.cfg.QuietGCPercent, s.log)
	}()
	defer func() { stopTuner(); <-tuned }()
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
	} else if s.broker != nil {
		// WebSocket upgrades skip net/http (front.go).
		deferAccept(l)
		l = newFrontDoor(s, l)
	}
	if acmeHTTP != nil && s.cfg.ACMEHTTPAddr != "" {
		hl, err := net.Listen("tcp", s.cfg.ACMEHTTPAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("--acme-http-addr: listen on %s: %w", s.cfg.ACMEHTTPAddr, err)
		}
		addServer(g, "ACME HTTP-01", &http.Server{Handler: acmeHTTP, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: s.cfg.HTTPIdleTimeout}, hl)
	}
	// IdleTimeout closes keep-alive connections that sit idle (a hijacked
	// WebSocket is no longer the server's and is not affected). No
	// ReadTimeout: it would stay on a hijacked connection's deadline;
	// uploads have their own timeout.
	hs := &http.Server{Handler: s.echo, ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, IdleTimeout: s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes: maxHeadBytes,
		ErrorLog:       logs.StdLog(s.log.Named("http"), "http server error")}
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
