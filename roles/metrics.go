package roles

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus series; docs/operations.md says what
// each one means.
type metrics struct {
	reg        *prometheus.Registry
	framesIn   *prometheus.CounterVec
	framesOut  prometheus.Counter
	sockWrites prometheus.Counter
	duration   *prometheus.HistogramVec
	errors     *prometheus.CounterVec
	closes     *prometheus.CounterVec
	chatStored prometheus.Counter
	chatDeliv  prometheus.Counter
	requeued   prometheus.Counter
	overflows  prometheus.Counter
	httpReqs   *prometheus.CounterVec
	uploaded   prometheus.Counter
	// regRefused counts refused registrations by limit: rate (per second),
	// daily (per address per day), token (signup_token).
	regRefused *prometheus.CounterVec

	// Connection limits (docs/security.md).
	readThrottled    *prometheus.CounterVec
	readThrottledSec prometheus.Counter
	rateRefusedC     *prometheus.CounterVec
	ignored          prometheus.Counter
	// epochChanges counts changes of the data epoch seen by this node.
	epochChanges prometheus.Counter
	// accountsDeleted counts delete_account commands that deleted an
	// account (deleteaccount.go).
	accountsDeleted prometheus.Counter
	// loginsBanned counts logins refused because the user is banned;
	// sessionsBanned the live sessions a ban closed (bans.go).
	loginsBanned   prometheus.Counter
	sessionsBanned prometheus.Counter

	// reports counts report commands by result (reports.go).
	reports *prometheus.CounterVec
	// reportsEvicted counts posts taken out of the full review queue.
	reportsEvicted prometheus.Counter
	// autoHidden counts posts hidden by this node's reports (posts/hidden.go).
	autoHidden prometheus.Counter
	// heads counts connections the front door ended before a request:
	// timeout (--read-header-timeout spent), too_large (431), gone (the
	// client closed or reset).
	heads *prometheus.CounterVec
}

// knownCmds bounds the cmd label: anything else is counted as "other".
var knownCmds = map[string]bool{
	"register": true, "login": true, "message": true, "presence": true, "subscribe": true,
	"publish": true, "delete": true, "filenames": true,
	"push_subscribe": true, "push_unsubscribe": true,
	"update": true, "set_status": true, "renew": true,
	"delete_account": true,
	"block":          true, "unblock": true, "blocks": true,
	"report":  true,
	"notices": true, "notices_seen": true,
	"my_posts": true,
}

func cmdLabel(cmd string) string {
	if knownCmds[cmd] {
		return cmd
	}
	return "other"
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_frames_in_total",
			Help: "Frames received from apps, by command (other: unknown or unparsable)."}, []string{"cmd"}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_frames_out_total",
			Help: "Frames written to apps (replies, chat, posts, presence)."}),
		sockWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_socket_writes_total",
			Help: "Writes to app sockets; occase_frames_out_total divided by this is the frames each write(2) carried."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "occase_request_duration_seconds",
			Help:    "Time to handle one request, Redis round trips included, by command.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"cmd"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_request_errors_total",
			Help: "Failed requests by command and reason (the reason code sent to the app)."}, []string{"cmd", "reason"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_connection_closes_total",
			Help: "Connections closed by the server or the app, by close code."}, []string{"code"}),
		chatStored: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_chat_stored_total",
			Help: "Chat messages stored in a recipient's queue (acknowledged to the sender)."}),
		chatDeliv: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_chat_delivered_total",
			Help: "Chat messages written to a recipient's connection by this node."}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_replies_requeued_total",
			Help: "Replies (publish_ack, delete_ack, filenames_ack) that could not be written and were queued for the next login."}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_send_queue_overflows_total",
			Help: "Connections closed because their send queue overflowed (slow readers)."}),
		httpReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_http_requests_total",
			Help: "HTTP requests by route pattern, method and status (image uploads are route /:digest/:file, method POST)."},
			[]string{"route", "method", "code"}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_image_upload_bytes_total",
			Help: "Bytes of image uploads that were stored (as received, before metadata was removed)."}),
	}
	m.heads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_request_heads_refused_total",
		Help: "Connections ended before their first request was read whole (front door): timeout, too_large (answered 431), gone."}, []string{"why"})
	reg.MustRegister(m.framesIn, m.framesOut, m.sockWrites, m.duration, m.errors, m.closes, m.chatStored, m.chatDeliv, m.requeued, m.overflows,
		m.httpReqs, m.uploaded, m.heads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.readThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_read_throttled_total",
		Help: "Times a connection's reader paused because it was over its read budget (bytes or frames per second)."}, []string{"budget"})
	m.readThrottledSec = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_read_throttled_seconds_total",
		Help: "Time connection readers spent paused over their read budgets."})
	m.rateRefusedC = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_rate_refused_total",
		Help: "Requests refused or dropped by a per-user or per-address rate limit, by command."}, []string{"cmd"})
	m.ignored = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_frames_ignored_total",
		Help: "Frames read from connections that were already closing (replaced, overflowed, over their limits), not acted on."})
	reg.MustRegister(m.readThrottled, m.readThrottledSec, m.rateRefusedC, m.ignored)
	m.epochChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_data_epoch_changes_total",
		Help: "Times this node saw the data epoch in Redis change: the data was lost (a Redis without persistence restarted, or a flush)."})
	reg.MustRegister(m.epochChanges)
	m.accountsDeleted = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_accounts_deleted_total",
		Help: "Accounts deleted by their users (delete_account acknowledged ok)."})
	reg.MustRegister(m.accountsDeleted)
	m.loginsBanned = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_logins_banned_total",
		Help: "Logins refused because an operator banned the user (login_ack fail banned, close 4008)."})
	m.sessionsBanned = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_sessions_banned_total",
		Help: "Live sessions closed with 4008 because an operator banned their user."})
	reg.MustRegister(m.loginsBanned, m.sessionsBanned)

	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_reports_total",
		Help: "report commands by result: new (a new reporter counted), again (the same reporter again: reason and text replaced), capped (past the reporters kept per post: acknowledged, not stored), queue_full (a post not in the review queue, which is full of posts with several reporters: acknowledged, not stored), or the refusal's reason."},
		[]string{"result"})
	m.reportsEvicted = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_reports_evicted_total",
		Help: "Posts with a single reporter taken out of the full review queue (--report-queue-max), their reports deleted, to make room for a newly reported post."})
	m.autoHidden = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_posts_auto_hidden_total",
		Help: "Posts hidden pending review by a report this node stored: the report brought the post's distinct reporters with accounts older than --auto-hide-min-age to --auto-hide-reports."})
	reg.MustRegister(m.reports, m.reportsEvicted, m.autoHidden)
	for _, r := range reportResults {
		m.reports.WithLabelValues(r)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_connections",
		Help: "Open WebSocket connections on this node.", ConstLabels: prometheus.Labels{"state": "all"}},
		func() float64 { all, _, _ := s.gauges(); return float64(all) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_connections",
		Help: "Open WebSocket connections on this node.", ConstLabels: prometheus.Labels{"state": "logged_in"}},
		func() float64 { _, in, _ := s.gauges(); return float64(in) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_connections_parked",
		Help: "Connections whose reader is parked on the readiness poller (nothing to read, no goroutine held)."},
		func() float64 { return float64(s.readPoll.parked.Load()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_parked_wakes_total",
		Help: "Reader goroutines the readiness poller started for parked connections that had something other than pongs to read, or hung up."},
		func() float64 { return float64(s.readPoll.wakes.Load()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_parked_pongs_total",
		Help: "Wakes of parked connections that held only pongs, read by the poller itself (no reader goroutine started)."},
		func() float64 { return float64(s.readPoll.pongs.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_send_queue_frames",
		Help: "Frames waiting in the send queues of all connections of this node."},
		func() float64 { _, _, q := s.gauges(); return float64(q) }))
	m.regRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_register_refused_total",
		Help: "Registrations refused, by limit: rate (per address per second), node (this node, every address together), daily (per address per day), token (signup_token missing, bad, expired or used)."},
		[]string{"limit"})
	reg.MustRegister(m.regRefused)
	for _, l := range []string{"rate", "node", "daily", "token"} {
		m.regRefused.WithLabelValues(l)
	}
	chatRefused := func(limit string, get func(chat.Stats) int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_chat_refused_total",
			Help:        "Chat messages refused with queue_full, by limit: queue (the recipient's queue was full), sender_share (the sender held its share of it).",
			ConstLabels: prometheus.Labels{"limit": limit}},
			func() float64 {
				if s.chat == nil {
					return 0
				}
				return float64(get(s.chat.Stats()))
			}))
	}
	chatRefused("queue", func(st chat.Stats) int64 { return st.RefusedQueueFull })
	chatRefused("sender_share", func(st chat.Stats) int64 { return st.RefusedSenderShare })
	// How chat messages reached their recipients (docs/benchmarks.md, "Chat:
	// one script per message").
	chatCounter := func(name, help string, get func(chat.Stats) int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 {
				if s.chat == nil {
					return 0
				}
				return float64(get(s.chat.Stats()))
			}))
	}
	chatCounter("occase_chat_carried_total", "Chat messages written as they came with their store, without a fetch from Redis.",
		func(st chat.Stats) int64 { return st.Carried })
	chatCounter("occase_chat_fetches_total", "Chat queue fetches from Redis (at login, after a gap in the carried messages, after a re-subscription).",
		func(st chat.Stats) int64 { return st.Fetches })
	chatCounter("occase_chat_removals_total", "Written heads of chat queues removed from Redis on their own (not by a fetch).",
		func(st chat.Stats) int64 { return st.Removals })
	chatCounter("occase_chat_remove_calls_total", "Redis script calls that removed those heads (many users' each).",
		func(st chat.Stats) int64 { return st.RemoveCalls })
	chatCounter("occase_chat_store_calls_total", "Redis script calls that stored chat messages: the messages that come while one is in flight go together in the next (issue 13).",
		func(st chat.Stats) int64 { return st.StoreCalls })
	chatCounter("occase_chat_inbox_dropped_total", "Carried chat messages a connection's mailbox could not hold (more than a batch or 256 KiB waiting); they were fetched from Redis instead.",
		func(st chat.Stats) int64 { return st.InboxDropped })
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "occase_replies_dropped_total",
		Help: "Replies that could not be written nor requeued: the user's own queue held --chat-queue-cap plus a tenth (a client that reconnects without reading)."},
		func() float64 {
			if s.chat == nil {
				return 0
			}
			return float64(s.chat.Stats().RepliesDropped)
		}))
	b := s.cfg.Build
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_build_info",
		Help:        "Always 1; the labels name the running build (follow a rollout with count by (version)).",
		ConstLabels: prometheus.Labels{"version": orUnknown(b.Version), "revision": orUnknown(b.Revision), "goversion": orUnknown(b.GoVersion)}},
		func() float64 { return 1 }))
	for _, c := range s.cfg.Collectors {
		reg.MustRegister(c)
	}
	// The Redis series only where Redis is used: an img node would export
	// occase_redis_subscriber_up 0 for ever and fire its alert.
	if db, _, _ := s.cfg.parts(); db {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_redis_subscriber_up",
			Help: "1 when the Redis pub/sub connection is up and every channel subscribed."},
			func() float64 {
				if s.broker != nil && s.broker.SubscribeReady() {
					return 1
				}
				return 0
			}))
		reg.MustRegister(&redisMemory{s: s})
		reg.MustRegister(&reportQueue{s: s})
	}
	return m
}

// reportQueue reports the review queue's size and max at scrape time,
// asking Redis (ZCARD) at most every redisMemoryEvery.
type reportQueue struct {
	s *Server

	mu  sync.Mutex
	at  time.Time
	n   int
	err error
}

var (
	reportQueuedDesc = prometheus.NewDesc("occase_reports_queued",
		"Posts in the review queue of reported posts (all nodes see the same queue); at occase_reports_queue_max new reports evict or are not stored.", nil, nil)
	reportQueueMaxDesc = prometheus.NewDesc("occase_reports_queue_max",
		"--report-queue-max of this node: the most posts the review queue holds.", nil, nil)
)

func (r *reportQueue) Describe(ch chan<- *prometheus.Desc) {
	ch <- reportQueuedDesc
	ch <- reportQueueMaxDesc
}

func (r *reportQueue) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.s.broker; b != nil && time.Since(r.at) >= redisMemoryEvery {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r.n, r.err = b.ReportQueueLen(ctx)
		r.at = time.Now()
		cancel()
	}
	if r.s.broker != nil && r.err == nil {
		ch <- prometheus.MustNewConstMetric(reportQueuedDesc, prometheus.GaugeValue, float64(r.n))
	}
	ch <- prometheus.MustNewConstMetric(reportQueueMaxDesc, prometheus.GaugeValue, float64(r.s.cfg.Reports.OrDefaults().Queue))
}

// BuildInfo names the running binary (occase_build_info).
type BuildInfo struct {
	Version, Revision, GoVersion string
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// redisMemory reports INFO memory of each Redis server at scrape time,
// asking Redis at most every redisMemoryEvery however often the node is
// scraped.
type redisMemory struct {
	s *Server

	mu   sync.Mutex
	at   time.Time
	last []broker.Memory
}

const redisMemoryEvery = 5 * time.Second

var (
	redisUsedDesc = prometheus.NewDesc("occase_redis_memory_used_bytes",
		"Memory Redis uses (INFO memory used_memory, the figure maxmemory is compared with), by server.", []string{"addr"}, nil)
	redisMaxDesc = prometheus.NewDesc("occase_redis_memory_max_bytes",
		"Redis maxmemory by server; 0: unbounded (Redis grows until the host or container kills it).", []string{"addr"}, nil)
)

func (r *redisMemory) Describe(ch chan<- *prometheus.Desc) {
	ch <- redisUsedDesc
	ch <- redisMaxDesc
}

func (r *redisMemory) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.s.broker; b != nil && time.Since(r.at) >= redisMemoryEvery {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r.last, r.at = b.Memory(ctx), time.Now()
		cancel()
	}
	for _, m := range r.last {
		ch <- prometheus.MustNewConstMetric(redisUsedDesc, prometheus.GaugeValue, float64(m.Used), m.Addr)
		ch <- prometheus.MustNewConstMetric(redisMaxDesc, prometheus.GaugeValue, float64(m.Max), m.Addr)
	}
}

// httpMiddleware counts HTTP requests by route pattern (a bounded label;
// unmatched paths are "other") and the bytes of stored uploads. WebSocket
// upgrades are counted too (route /ws or /), once, at the upgrade.
func (m *metrics) httpMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		route := c.Path()
		if route == "" || route == "/*" {
			route = "other"
		}
		code := c.Response().Status
		if he, ok := err.(*echo.HTTPError); ok {
			code = he.Code
		}
		m.httpReqs.WithLabelValues(route, c.Request().Method, strconv.Itoa(code)).Inc()
		if c.Request().Method == http.MethodPost && code == http.StatusCreated && c.Request().ContentLength > 0 {
			m.uploaded.Add(float64(c.Request().ContentLength))
		}
		return err
	}
}

func (m *metrics) request(cmd string, start time.Time, reason string) {
	c := cmdLabel(cmd)
	m.framesIn.WithLabelValues(c).Inc()
	m.duration.WithLabelValues(c).Observe(time.Since(start).Seconds())
	if reason != "" {
		m.errors.WithLabelValues(c, reason).Inc()
	}
}

func (m *metrics) throttled(budget string, d time.Duration) {
	m.readThrottled.WithLabelValues(budget).Inc()
	m.readThrottledSec.Add(d.Seconds())
}

func (m *metrics) rateRefused(cmd string) {
	m.rateRefusedC.WithLabelValues(cmdLabel(cmd)).Inc()
}

func (m *metrics) closed(code int) {
	m.closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// gauges counts connections and queued frames at scrape time.
func (s *Server) gauges() (all, loggedIn, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		all++
		if ss.status() == statusActive {
			loggedIn++
		}
		ss.out.mu.Lock()
		queued += len(ss.out.q)
		ss.out.mu.Unlock()
	}
	return all, loggedIn, queued
}
