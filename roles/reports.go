package roles

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/occase/occase/moderation"
	"go.uber.org/zap"

	"github.com/occase/occase/posts"
	"github.com/occase/occase/wire"
)

// Reporting a post (docs/protocol.md "Reporting a post"): the session
// bounds the rate (a token bucket per session, made at the first report),
// the posts service checks the request and Redis stores it
// (broker/reports.go). Operators review reports with `occase moderate`.

// reportResults bound the result label of occase_reports_total.
var reportResults = []string{posts.ReportNew, posts.ReportAgain, posts.ReportCapped, posts.ReportQueueFull,
	wire.NotFound, wire.BadRequest, wire.RateLimited, wire.Unavailable, wire.Internal}

func (ss *session) report(req *wire.Request) error {
	err := ss.reportPost(req)
	if err == nil {
		return nil
	}
	result := wire.AsError(err).Reason
	if !slices.Contains(reportResults, result) {
		result = wire.Internal
	}
	ss.srv.m.reports.WithLabelValues(result).Inc()
	return err
}

func (ss *session) reportPost(req *wire.Request) error {
	if ss.srv.posts == nil {
		return wire.Errorf(wire.Unavailable, "posts are not available on this node")
	}
	if !allowLazy(&ss.reportLim, ss.srv.cfg.ReportRate, ss.srv.cfg.ReportBurst) {
		return wire.Errorf(wire.RateLimited, "too many reports; slow down")
	}
	done, err := ss.srv.posts.Report(ss.ctx, ss, req, ss.srv.cfg.Reports.OrDefaults())
	if err != nil {
		return err
	}
	ss.srv.m.reports.WithLabelValues(done.Outcome).Inc()
	if done.Evicted != 0 {
		ss.srv.m.reportsEvicted.Inc()
	}
	if done.Hidden {
		ss.srv.autoHidden(ss.ctx, done)
	}
	return nil
}

// autoHidden records a post that a report of this node hid: in the
// moderation log, by "auto", written after the report's script (the log
// is in its own slot), so a failed write leaves the post hidden, the
// hide unlogged and an error in the node's log.
func (s *Server) autoHidden(ctx context.Context, done posts.ReportDone) {
	s.m.autoHidden.Inc()
	line := moderation.AutoHideEntry(s.cfg.Clock().UnixMilli(), done.Post, done.Reporters, s.cfg.Reports.HideAt)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.broker.AppendModLog(wctx, line); err != nil {
		s.log.Error("a post was hidden pending review but the moderation log could not record it",
			zap.Uint64("post", done.Post), zap.Error(err))
		return
	}
	s.log.Info("post hidden pending review", zap.Uint64("post", done.Post), zap.Int("reporters", done.Reporters))
}

// warnAutoHide says, at start, when the automatic hide's settings let one
// person hide any listing (docs/security.md "Automatic hiding and
// brigading"): the node starts all the same, an operator may mean it.
func (s *Server) warnAutoHide() {
	h, age := s.cfg.Reports.HideAt, s.cfg.Posts.ReportMinAge
	if h <= 0 {
		return
	}
	if h < 3 {
		s.log.Warn(fmt.Sprintf("--auto-hide-reports %d: one person with %d accounts hides any listing (docs/security.md \"Automatic hiding and brigading\": 5 is the default, 3 the least advised)", h, h),
			zap.Int("auto_hide_reports", h))
	}
	if age <= 0 {
		s.log.Warn(fmt.Sprintf("--auto-hide-min-age 0: accounts registered now count, so registering %d accounts hides any listing at once", h),
			zap.Int("auto_hide_reports", h))
	}
}
