package roles

import (
	"github.com/occase/occase/posts"
	"github.com/prometheus/client_golang/prometheus"
)

// Client is the key of the session's client address (IPv6 grouped by
// --ipv6-prefix), for the posts service's per-address publish budget.
func (ss *session) Client() string { return ss.srv.clientKey(ss.remote) }

// registerPostsMetrics adds the posts service's refusal and guard counters
// to reg (buildPosts registers the gauges of the index itself).
func registerPostsMetrics(reg prometheus.Registerer, ps *posts.Service) {
	counter := func(name, help string, v func(posts.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(ps.Stats())) }))
	}
	counter("occase_posts_reads_rate_limited_total", "GET /api/posts requests refused 429 rate_limited (per client address).",
		func(s posts.Stats) uint64 { return s.ReadsLimited })
	counter("occase_posts_subscribes_rate_limited_total", "subscribes refused rate_limited (per user).",
		func(s posts.Stats) uint64 { return s.SubscribesLimited })
	counter("occase_posts_scans_capped_total", "Catch-ups and HTTP reads that stopped at --max-scan posts examined.",
		func(s posts.Stats) uint64 { return s.ScansCapped })
	counter("occase_posts_refused_full_total", "Publishes refused posts_full (--max-posts, --max-post-bytes).",
		func(s posts.Stats) uint64 { return s.RefusedFull })
	counter("occase_posts_refused_address_total", "Publishes refused quota_exceeded by --posts-per-address.",
		func(s posts.Stats) uint64 { return s.RefusedAddress })
	counter("occase_posts_refused_under_review_total", "Publishes refused under_review: the author has a listing hidden pending review.",
		func(s posts.Stats) uint64 { return s.RefusedReview })
	counter("occase_posts_evicted_total", "Posts this node dropped from its index at its bound, keeping the newest (logged).",
		func(s posts.Stats) uint64 { return s.Evicted })
	counter("occase_posts_deleted_sent_total", "post_deleted frames queued to connections of this node.",
		func(s posts.Stats) uint64 { return s.DeletedSent })
	counter("occase_posts_changed_total", "update, set_status and renew done through this node.",
		func(s posts.Stats) uint64 { return s.Changed })
	counter("occase_posts_edits_rate_limited_total", "update, set_status and renew refused rate_limited (per user, --edit-rate).",
		func(s posts.Stats) uint64 { return s.EditsLimited })
	counter("occase_posts_renew_early_total", "renew refused rate_limited: before the renewal window.",
		func(s posts.Stats) uint64 { return s.RenewEarly })
	counter("occase_posts_words_dropped_total", "Words of posts left out of this node's search index at its vocabulary bound.",
		func(s posts.Stats) uint64 { return s.WordsDropped })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_posts_search_words",
		Help: "Distinct words in this node's search index."}, func() float64 { return float64(ps.Stats().Words) }))
	counter("occase_posts_changes_sent_total", "Frames queued to connections of this node for changed posts (new versions, post_deleted).",
		func(s posts.Stats) uint64 { return s.ChangesSent })
}
