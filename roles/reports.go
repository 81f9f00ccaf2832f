package roles

import (
	"slices"

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
	return nil
}
