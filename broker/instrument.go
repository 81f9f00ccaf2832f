package broker

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// scriptNames labels the Lua scripts in the metrics, by the SHA1 that
// EVALSHA carries. It is filled while the package's variables are
// initialised (every script is declared with newScript) and only read
// after that.
var scriptNames = map[string]string{}

// newScript declares a Lua script under a name for the metrics.
func newScript(name, src string) *rueidis.Lua {
	scriptNames[sha1hex(src)] = name
	return rueidis.NewLuaScript(src)
}

// metrics are the Redis series of a node.
type metrics struct {
	dur  *prometheus.HistogramVec
	errs *prometheus.CounterVec
	oom  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "occase_redis_command_duration_seconds",
			Help:    "Redis round trips by command (scripts by name), from the node's side: queueing in the client included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"cmd"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_redis_command_errors_total",
			Help: "Redis commands that failed (connection errors, timeouts and error replies; a nil reply is not an error)."}, []string{"cmd"}),
		oom: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_redis_oom_errors_total",
			Help: "Redis commands refused because Redis reached maxmemory (OOM replies; with noeviction every write fails until memory is freed or raised)."}),
	}
	reg.MustRegister(m.dur, m.errs, m.oom)
	return m
}

// instrumented is the shared client, timing every command. Pub/sub runs on
// dedicated clients made from the inner one and is not timed.
type instrumented struct {
	rueidis.Client
	m *metrics
}

// commandName reads a command's label. It must run before the command is
// sent: rueidis recycles a command once it is done.
func commandName(cmd rueidis.Completed) string {
	args := cmd.Commands()
	if len(args) == 0 {
		return "none"
	}
	name := strings.ToLower(args[0])
	switch name {
	case "evalsha", "evalsha_ro":
		if len(args) > 1 {
			if s, ok := scriptNames[args[1]]; ok {
				return s
			}
		}
		return "script"
	case "eval", "eval_ro":
		if len(args) > 1 {
			if s, ok := scriptNames[sha1hex(args[1])]; ok {
				return s
			}
		}
		return "script"
	}
	return name
}

func (c *instrumented) observe(name string, d time.Duration, err error) {
	c.m.dur.WithLabelValues(name).Observe(d.Seconds())
	if err != nil && !rueidis.IsRedisNil(err) {
		c.m.errs.WithLabelValues(name).Inc()
		if re, ok := rueidis.IsRedisErr(err); ok && IsOOM(re) {
			c.m.oom.Inc()
		}
	}
}

func (c *instrumented) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	name := commandName(cmd)
	start := time.Now()
	r := c.Client.Do(ctx, cmd)
	c.observe(name, time.Since(start), r.Error())
	return r
}

func (c *instrumented) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	names := make([]string, len(cmds))
	for i, cmd := range cmds {
		names[i] = commandName(cmd)
	}
	start := time.Now()
	rs := c.Client.DoMulti(ctx, cmds...)
	d := time.Since(start)
	for i, r := range rs {
		c.observe(names[i], d, r.Error())
	}
	return rs
}

// IsOOM tells whether err is Redis refusing a write at maxmemory: "OOM
// command not allowed when used memory > 'maxmemory'", as a command's reply
// or from inside a script.
func IsOOM(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "OOM ") || strings.Contains(msg, "OOM command not allowed")
}
