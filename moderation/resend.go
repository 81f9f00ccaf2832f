package moderation

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/occase/occase/broker"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The automatic resend (docs/security.md "A kept notice is resent by the
// nodes"): a removal's notice whose write failed is kept in {posts}:unsent
// (broker/notices.go "Unsent notices"); every db node looks at the kept
// notices every ResendConfig.Every and tries again each one that is due,
// its tries spaced from the removal: the first ResendConfig.First after
// it, then after a wait as long as the notice's age (so the waits double)
// up to ResendConfig.Max. The nodes share that pace through Redis
// (broker.ClaimKeptNotice): whoever claims a notice tries it, and no node
// is given it again before the wait is over. A notice is written at most
// once whoever sends it (the broker's add remembers the posts it told
// of), so an operator's resend meeting a node's tells the author once.
//
// The work is bounded: a round reads at most broker.MaxUnsentNotices
// entries (the hash's bound), claims and tries each due one at most once
// with a single write (no retries within the round), and stops at the
// round's time (Every), leaving the rest to the next round, oldest
// first. Each node also keeps, in memory, when it may next claim each
// notice, so that a round costs a Redis call only for the due ones.

// ResendConfig is the pace of the automatic resend.
type ResendConfig struct {
	// Every: how often a node looks at the kept notices (0: 30 s).
	Every time.Duration
	// First: the first try waits this long after the removal, past its
	// own retries (0: 30 s); Max bounds the wait between tries (0: 10
	// min).
	First, Max time.Duration
}

// DefaultResend is the pace of the nodes.
var DefaultResend = ResendConfig{Every: 30 * time.Second, First: 30 * time.Second, Max: 10 * time.Minute}

// Resender resends the kept notices in the background; Run owns it.
type Resender struct {
	s   *Service
	cfg ResendConfig
	// next: when this node may next try each kept notice (the ids of the
	// last round, at most broker.MaxUnsentNotices). Run's alone.
	next map[uint64]time.Time

	resent, failed, dropped prometheus.Counter
	kept, oldest            prometheus.Gauge
	lastErr                 string
}

// NewResender returns the automatic resend on s's store; reg gets its
// series (nil: none).
func NewResender(s *Service, cfg ResendConfig, reg prometheus.Registerer) *Resender {
	if cfg.Every <= 0 {
		cfg.Every = DefaultResend.Every
	}
	if cfg.First <= 0 {
		cfg.First = DefaultResend.First
	}
	if cfg.Max <= 0 {
		cfg.Max = DefaultResend.Max
	}
	r := &Resender{s: s, cfg: cfg, next: map[uint64]time.Time{},
		resent: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_notices_resent_total",
			Help: "Kept removal notices this node wrote to their authors by the automatic resend."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_notices_resend_failed_total",
			Help: "Tries of the automatic resend whose write failed again (the notice stays kept)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_notices_resend_dropped_total",
			Help: "Kept removal notices the automatic resend found gone or dropped unsent: past their lifetime, their post still there, their author gone, or sent meanwhile by an operator."}),
		kept: prometheus.NewGauge(prometheus.GaugeOpts{Name: "occase_notices_kept",
			Help: "Removal notices kept unsent ({posts}:unsent), as this node's last resend round saw them."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "occase_notices_kept_oldest_age_seconds",
			Help: "Age of the oldest kept removal notice (since its removal) at this node's last resend round; 0: none."}),
	}
	if reg != nil {
		reg.MustRegister(r.resent, r.failed, r.dropped, r.kept, r.oldest)
	}
	return r
}

// Run tries the kept notices every cfg.Every until ctx ends.
func (r *Resender) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Round(ctx)
		}
	}
}

// Round is what one round did.
type Round struct {
	Kept, Tried, Resent, Failed, Dropped int
}

// Round tries once each kept notice that is due, within cfg.Every.
func (r *Resender) Round(ctx context.Context) Round {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Every)
	defer cancel()
	now := r.s.now()
	list, err := r.s.store.KeptNotices(ctx)
	if err != nil {
		// Logged when it changes: a Redis down for long says it once.
		if e := err.Error(); e != r.lastErr {
			r.s.log.Warn("resend: the kept notices could not be read", zap.Error(err))
			r.lastErr = e
		}
		return Round{}
	}
	r.lastErr = ""
	out := Round{Kept: len(list)}
	r.kept.Set(float64(len(list)))
	slices.SortFunc(list, func(a, b broker.KeptNotice) int { return cmp.Compare(a.At, b.At) })
	var oldest time.Duration
	for _, k := range list {
		if k.At > 0 { // 0: an entry that does not parse, dropped below
			oldest = max(now.Sub(time.UnixMilli(k.At)), 0)
			break
		}
	}
	r.oldest.Set(oldest.Seconds())
	live := make(map[uint64]bool, len(list))
	for _, k := range list {
		live[k.Post] = true
	}
	for id := range r.next {
		if !live[id] {
			delete(r.next, id)
		}
	}
	for _, k := range list {
		if ctx.Err() != nil {
			break
		}
		age := now.Sub(time.UnixMilli(k.At))
		if age < r.cfg.First || now.Before(r.next[k.Post]) {
			continue
		}
		wait := min(max(age, r.cfg.First), r.cfg.Max)
		r.next[k.Post] = now.Add(wait)
		claimed, found, err := r.s.store.ClaimKeptNotice(ctx, k.Post, now.UnixMilli(), wait)
		if err != nil || !claimed {
			if !found && err == nil {
				delete(r.next, k.Post) // sent meanwhile
			}
			continue // another node tries it, or Redis fails: next time
		}
		out.Tried++
		switch told, found, err := r.s.autoResend(ctx, k.Post); {
		case err != nil:
			out.Failed++
			r.failed.Inc()
			r.s.log.Warn("resend: a kept notice could not be written again; tried later",
				zap.Uint64("post", k.Post), zap.String("author", k.Author), zap.Duration("age", age.Round(time.Second)),
				zap.Duration("next_in", wait), zap.Error(err))
		case !found || !told:
			out.Dropped++
			r.dropped.Inc()
			delete(r.next, k.Post)
		default:
			out.Resent++
			r.resent.Inc()
			delete(r.next, k.Post)
		}
	}
	return out
}

// autoResend is the node's own resend of post id's kept notice: one try
// or two within a millisecond's retry budget (the node tries again later), and a line in the moderation log by
// AutoBy only when the notice is sent (or the author is found gone), so
// that failing tries do not push the operators' lines out of the log
// (the node's log and occase_notices_resend_failed_total have them).
// found false: nothing kept, or dropped (past its lifetime, its post
// still there).
func (s *Service) autoResend(ctx context.Context, id uint64) (told, found bool, err error) {
	r, found, err := s.store.ResendNotice(ctx, id, s.now().UnixMilli(), time.Millisecond)
	if !found || err != nil {
		return false, found, err
	}
	told = r.Notice > 0
	e := LogEntry{By: AutoBy, Action: "resend", Target: strconv.FormatUint(id, 10), Reason: r.Reason, Result: ResultOK,
		Detail: "author " + r.Author + ", its removal's notice sent by the nodes' automatic resend"}
	if !told {
		e.Detail = "author " + r.Author + ", the account is gone: nobody to tell; the kept notice dropped"
	}
	s.log.Info("moderation: a kept removal notice resent automatically", zap.Uint64("post", id), zap.String("author", r.Author),
		zap.Bool("told", told))
	s.record(ctx, e)
	return told, true, nil
}
