//go:build !linux

package roles

import (
	"errors"
	"syscall"
)

// readPoller parks nothing on this system: every connection keeps its
// reader goroutine (park.go).
type readPoller struct{ pollerGauge }

func (p *readPoller) register(*session) (bool, error) {
	return false, errors.New("no readiness poller on this system")
}
func (p *readPoller) arm(*session, bool, *epollCtl) error {
	return errors.New("no readiness poller on this system")
}
func (p *readPoller) forget(*session) {}
func (p *readPoller) close()          {}

// epollCtl has nothing to hold without a poller.
type epollCtl struct{}

func parkable(syscall.RawConn) bool { return false }

// writeMore is a plain write here (no connection has a raw conn).
func (c *corkConn) writeMore(p []byte) (int, error) { return c.Conn.Write(p) }
