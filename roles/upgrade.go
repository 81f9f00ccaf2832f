package roles

import (
	"errors"
	"net/http"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/occase/occase/wire"
)

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
