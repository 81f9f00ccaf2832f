package roles

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

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
