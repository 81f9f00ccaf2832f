package roles

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
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
	// epochChanges counts changes of the data epoch seen by this node.
	epochChanges prometheus.Counter
}

// knownCmds bounds the cmd label: anything else is counted as "other".
var knownCmds = map[string]bool{
	"register": true, "login": true, "message": true, "presence": true, "subscribe": true,
	"publish": true, "delete": true, "filenames": true,
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
	reg.MustRegister(m.framesIn, m.framesOut, m.sockWrites, m.duration, m.errors, m.closes, m.chatStored, m.chatDeliv, m.requeued, m.overflows,
		m.httpReqs, m.uploaded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.epochChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_data_epoch_changes_total",
		Help: "Times this node saw the data epoch in Redis change: the data was lost (a Redis without persistence restarted, or a flush)."})
	reg.MustRegister(m.epochChanges)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_connections",
		Help: "Open WebSocket connections on this node.", ConstLabels: prometheus.Labels{"state": "all"}},
		func() float64 { all, _, _ := s.gauges(); return float64(all) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_connections",
		Help: "Open WebSocket connections on this node.", ConstLabels: prometheus.Labels{"state": "logged_in"}},
		func() float64 { _, in, _ := s.gauges(); return float64(in) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_send_queue_frames",
		Help: "Frames waiting in the send queues of all connections of this node."},
		func() float64 { _, _, q := s.gauges(); return float64(q) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_redis_subscriber_up",
		Help: "1 when the Redis pub/sub connection is up and every channel subscribed."},
		func() float64 {
			if s.broker != nil && s.broker.SubscribeReady() {
				return 1
			}
			return 0
		}))
	return m
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

func (m *metrics) closed(code int) {
	m.closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// gauges counts connections and queued frames at scrape time.
func (s *Server) gauges() (all, loggedIn, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		all++
		if ss.loggedIn.Load() {
			loggedIn++
		}
		ss.out.mu.Lock()
		queued += len(ss.out.q)
		ss.out.mu.Unlock()
	}
	return all, loggedIn, queued
}
