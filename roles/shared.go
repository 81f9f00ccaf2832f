package roles

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/occase/occase/broker"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// This file holds what a db node shares with the other nodes through
// Redis and must agree on before it takes connections: the password-digest
// key (and the image key) by their fingerprints, and the data epoch.

// setupShared learns the secret (from Redis when none was configured),
// checks that this node's keys are the ones the other nodes use, reads the
// data epoch, and marks the node started. An error wrapping
// broker.ErrUnavailable is worth retrying; any other is a misconfiguration.
func (s *Server) setupShared(ctx context.Context) error {
	if s.started.Load() {
		return nil
	}
	if s.secret == nil {
		sec, err := s.broker.Secret(ctx)
		if err != nil {
			return fmt.Errorf("no --secret given and none could be read from Redis: %w", err)
		}
		if !s.broker.Embedded() {
			s.log.Warn("no --secret given: using the password-digest key stored in Redis; set --secret (the same on every node) in production")
		}
		// Peers started with --secret: the stored key is not theirs. Say
		// that the flag is missing rather than that it differs.
		if err := s.broker.CheckFingerprint(ctx, "secret", broker.Fingerprint(sec)); errors.Is(err, broker.ErrKeyMismatch) {
			return fmt.Errorf("no --secret given, and the key stored in Redis is not the one the other nodes sharing it use (they were given --secret; logins of users registered there would fail): give this node the same --secret: %w", err)
		}
		s.secret = sec
	}
	if err := s.checkShared(ctx); err != nil {
		return err
	}
	s.started.Store(true)
	s.log.Info("redis reached; keys agree with the other nodes", zap.String("epoch", s.Epoch()))
	return nil
}

// checkShared compares the key fingerprints with those recorded in Redis
// (recording them when absent) and reads the data epoch, counting and
// logging a change.
func (s *Server) checkShared(ctx context.Context) error {
	if err := s.broker.CheckFingerprint(ctx, "secret", broker.Fingerprint(s.secret)); err != nil {
		if errors.Is(err, broker.ErrKeyMismatch) {
			return fmt.Errorf("--secret is not the one the other nodes sharing this Redis use (logins of users registered there would fail): give every node the same --secret: %w", err)
		}
		return err
	}
	if s.cfg.ImageKey != nil {
		if err := s.broker.CheckFingerprint(ctx, "image_key", broker.Fingerprint(s.cfg.ImageKey)); err != nil {
			if errors.Is(err, broker.ErrKeyMismatch) {
				return fmt.Errorf("--image-key is not the one the other nodes sharing this Redis use (uploads would be refused): give every db and img node the same --image-key: %w", err)
			}
			return err
		}
	}
	e, created, err := s.broker.Epoch(ctx)
	if err != nil {
		return err
	}
	old := s.epoch.Load()
	switch {
	case old != nil && *old != e:
		s.m.epochChanges.Inc()
		s.log.Error("THE DATA IN REDIS WAS LOST: its epoch changed (a Redis without persistence restarted, or a flush); user and post ids start again, and apps drop what they hold from the old epoch",
			zap.String("old_epoch", *old), zap.String("epoch", e))
	case old == nil && created:
		s.log.Info("new data epoch: this Redis held no occase data", zap.String("epoch", e))
	}
	s.epoch.Store(&e)
	return nil
}

// Epoch is the data epoch sent in register_ack and login_ack ("" before
// the node has started).
func (s *Server) Epoch() string {
	if e := s.epoch.Load(); e != nil {
		return *e
	}
	return ""
}

// watchShared finishes setupShared once Redis can be reached (retrying
// with backoff, logging once per cause), then looks again every
// SharedCheckEvery and after every Redis reconnect: a lost epoch is logged
// and counted; a key mismatch stops the node (Run returns it).
func (s *Server) watchShared(ctx context.Context) {
	select {
	case <-s.broker.Connected():
	case <-ctx.Done():
		return
	}
	backoff := broker.Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	var last string
	for attempts := 1; !s.started.Load(); attempts++ {
		err := s.setupShared(ctx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case !errors.Is(err, broker.ErrUnavailable):
			s.stop(err)
			return
		default:
			if cause := err.Error(); cause != last {
				s.log.Warn("cannot finish starting: redis unavailable; retrying", zap.Error(err), zap.Int("attempts", attempts))
				last = cause
			}
			if !backoff.Wait(ctx.Done()) {
				return
			}
		}
	}
	t := time.NewTicker(s.cfg.SharedCheckEvery)
	defer t.Stop()
	var retry <-chan time.Time // sooner than the ticker after a failure
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-retry:
		case <-s.checkNow:
		}
		retry = nil
		if err := s.checkShared(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, broker.ErrUnavailable) {
				s.stop(err)
				return
			}
			s.log.Debug("checking the shared keys and epoch failed", zap.Error(err))
			retry = time.After(time.Second)
		}
	}
}

// stop hands a misconfiguration found after New to Run, which returns it.
func (s *Server) stop(err error) {
	s.log.Error("stopping", zap.Error(err))
	select {
	case s.fatal <- err:
	default:
	}
}

// registerKeyInfo exports the fingerprints of the configured keys (never
// the keys), so that an operator can compare nodes, the img nodes too,
// which have no Redis to compare with.
func (s *Server) registerKeyInfo() {
	fp := func(k []byte) string {
		if k == nil {
			return ""
		}
		return broker.Fingerprint(k)
	}
	s.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_key_info",
		Help:        "Always 1; the labels are the fingerprints (HMAC of a fixed label) of the configured --secret and --image-key, empty when not configured. Every node must show the same.",
		ConstLabels: prometheus.Labels{"secret": fp(s.cfg.Secret), "image_key": fp(s.cfg.ImageKey)}},
		func() float64 { return 1 }))
}

// registerRedisMetrics exports whether Redis answers now; readiness does
// not depend on it (see ready).
func (s *Server) registerRedisMetrics() {
	s.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_redis_up",
		Help: "1 when Redis answered a PING at scrape time (bounded by 1 s)."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s.broker.Ping(ctx) == nil {
			return 1
		}
		return 0
	}))
	s.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_started",
		Help: "1 once the node has reached Redis and its keys agree with the other nodes'."}, func() float64 {
		if s.started.Load() {
			return 1
		}
		return 0
	}))
}

// countBadSignatures counts uploads refused 403 (a name whose signature
// does not check: forged, or signed with another --image-key).
func (s *Server) countBadSignatures(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if c.Request().Method == http.MethodPost && c.Response().Status == http.StatusForbidden {
			s.badSigs.Add(1)
		}
		return err
	}
}

// warnBadSignatures logs, once per KeyWarnEvery and only when there were
// any, how many uploads were refused for a bad signature: an img node has
// no Redis to compare its --image-key with, and every upload failing is
// how another key shows.
func (s *Server) warnBadSignatures(ctx context.Context) {
	t := time.NewTicker(s.cfg.KeyWarnEvery)
	defer t.Stop()
	fp := ""
	if s.cfg.ImageKey != nil {
		fp = broker.Fingerprint(s.cfg.ImageKey)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := s.badSigs.Swap(0); n > 0 {
				s.log.Warn("uploads refused for a bad signature; if most uploads fail, --image-key differs between the db nodes and this node (compare occase_key_info)",
					zap.Int64("count", n), zap.Duration("interval", s.cfg.KeyWarnEvery), zap.String("image_key_fingerprint", fp))
			}
		}
	}
}
