package roles

import (
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
	cw := &corkWriter{ResponseWriter: c.Response()}
	ss := s.upgrade(cw, r)
	if ss == nil {
		return nil // answered
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

// hijackWriter is what upgrade answers on: net/http's writer wrapped in a
// corkWriter, or the front door's own (front.go). Its Hijack wraps the
// connection in a corkConn, which hijacked returns.
type hijackWriter interface {
	http.ResponseWriter
	http.Hijacker
	hijacked() *corkConn
}

func (w *corkWriter) hijacked() *corkConn  { return w.conn }
func (w *frontWriter) hijacked() *corkConn { return w.conn }

// upgrade answers a WebSocket handshake on w: a refusal (the node is
// draining or has not reached Redis yet, or the handshake is not valid)
// is answered and returns nil; otherwise the session, tracked, for the
// caller to serve and then call s.handlers.Done.
func (s *Server) upgrade(w hijackWriter, r *http.Request) *session {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		plainAnswer(w, http.StatusServiceUnavailable, "draining\n")
		return nil
	}
	if !s.started.Load() {
		// Until Redis has been reached the password-digest key may be
		// unknown: nothing a connection asks could be served.
		w.Header().Set("Retry-After", "1")
		plainAnswer(w, http.StatusServiceUnavailable, "starting: waiting for redis\n")
		return nil
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  s.cfg.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil // Accept has answered the client
	}
	raw := w.hijacked()
	if raw == nil { // cannot happen: an accepted connection was hijacked
		conn.CloseNow()
		s.log.Error("websocket accepted without a hijack")
		return nil
	}
	ss := s.newSession(conn, raw, clientAddr(r, s.cfg.TrustedProxies))
	if !s.track(ss) {
		conn.Close(wire.CloseGoingAway, "draining")
		return nil
	}
	return ss
}

// plainAnswer answers with a short text/plain body (as echo's c.String).
func plainAnswer(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(code)
	w.Write([]byte(body))
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
