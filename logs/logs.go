// Package logs owns how many log lines a node writes: a zap core that
// limits the lines of each message per second and says how many it left
// out, instead of sampling silently, and that writes a message marked with
// Repeated once per interval with the count of its repetitions (a Redis
// outage makes every connected user's mailbox warn; the operator needs one
// line and a number, not thousands with user ids).
//
// Feature packages only use the Repeated field; main builds the core.
package logs

import (
	"log"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// repeatedKey marks a field made by Repeated. A core that is not a Limiter
// (zap.NewNop, zaptest) skips the field and writes every line.
const repeatedKey = "occase_logs_repeated"

// RepeatEvery is the interval of the Redis-outage warnings.
const RepeatEvery = 10 * time.Second

// Repeated marks a line as one of a kind that may repeat in bulk: the
// Limiter writes its first occurrence and then, at most once per every, a
// line with the same message and the number of occurrences left out
// ("repeated"), without the fields of the lines it left out.
func Repeated(every time.Duration) zap.Field {
	return zap.Field{Key: repeatedKey, Type: zapcore.SkipType, Integer: int64(every)}
}

// Options configure a Limiter.
type Options struct {
	// PerSecond is how many lines of one message (and level and logger
	// name) are written in each second; the rest are counted and reported
	// in one line when the second ends. 0 writes every line.
	PerSecond int
	// Clock is injected by tests; nil is time.Now.
	Clock func() time.Time
}

// maxKeys bounds the messages tracked at once; messages are constants in
// the code, so this is a guard against a dynamic message, not a limit
// reached in practice. Past it, lines of untracked messages are dropped
// and counted (one line per second says how many), never written: a
// dynamic message an adversary can vary must not buy it unlimited lines.
const maxKeys = 4096

// overflowMsg is the summary of the lines dropped past maxKeys.
const overflowMsg = "log lines dropped: too many distinct messages"

type key struct {
	level zapcore.Level
	name  string
	msg   string
}

type window struct {
	start   time.Time
	every   time.Duration
	repeat  bool // marked Repeated: the window stays hot while lines keep coming
	written int
	left    int // lines left out in this window
}

type summary struct {
	k      key
	left   int
	repeat bool
	over   time.Duration
}

// Limiter is the shared state of a limiting core and its children (With).
type Limiter struct {
	inner     zapcore.Core // without the fields of With, for the summaries
	perSecond int
	clock     func() time.Time
	dropped   *prometheus.CounterVec

	mu   sync.Mutex
	keys map[key]*window
	// overflow counts the lines dropped past maxKeys since the last
	// summary, by level.
	overflow map[zapcore.Level]int

	stop chan struct{}
	done chan struct{}
}

// New wraps inner. Close it to write the last summaries and stop its
// goroutine.
func New(inner zapcore.Core, opt Options) *Limiter {
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	l := &Limiter{
		inner: inner, perSecond: opt.PerSecond, clock: opt.Clock,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_log_dropped_total",
			Help: "Log lines not written by the log limiter (sampled out, or repetitions summarised in one line), by level."},
			[]string{"level"}),
		keys: map[key]*window{}, overflow: map[zapcore.Level]int{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, lvl := range []zapcore.Level{zapcore.DebugLevel, zapcore.InfoLevel, zapcore.WarnLevel, zapcore.ErrorLevel} {
		l.dropped.WithLabelValues(lvl.String()) // exported at 0 from the start
	}
	go l.run()
	return l
}

// Core is the core to build the logger on.
func (l *Limiter) Core() zapcore.Core { return &core{Core: l.inner, l: l} }

// Metric is occase_log_dropped_total, for the node's registry.
func (l *Limiter) Metric() prometheus.Collector { return l.dropped }

// Close writes the pending summaries and stops the ticker. Safe to call
// twice.
func (l *Limiter) Close() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	<-l.done
	l.Flush(true)
}

func (l *Limiter) run() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Flush(false)
		}
	}
}

// Flush writes a summary for every window that has ended (every window,
// when all is set) and left lines out. A Repeated window that left lines
// out stays hot: its next lines are counted, not written, until a window
// passes without any. The ticker calls Flush every second; tests call it
// directly.
func (l *Limiter) Flush(all bool) {
	now := l.clock()
	var out []summary
	l.mu.Lock()
	for k, w := range l.keys {
		if !all && now.Sub(w.start) < w.every {
			continue
		}
		if w.left > 0 {
			out = append(out, summary{k, w.left, w.repeat, now.Sub(w.start)})
		}
		if w.left > 0 && w.repeat && !all {
			w.start, w.left = now, 0
			continue
		}
		delete(l.keys, k)
	}
	for lvl, n := range l.overflow {
		out = append(out, summary{key{lvl, "logs", overflowMsg}, n, false, time.Second})
		delete(l.overflow, lvl)
	}
	l.mu.Unlock()
	for _, s := range out {
		l.write(s, now)
	}
}

func (l *Limiter) write(s summary, now time.Time) {
	field := "dropped"
	if s.repeat {
		field = "repeated"
	}
	ent := zapcore.Entry{Level: s.k.level, LoggerName: s.k.name, Message: s.k.msg, Time: now}
	l.inner.Write(ent, []zapcore.Field{zap.Int(field, s.left), zap.Duration("over", s.over.Round(time.Millisecond))})
}

// allow decides whether a line is written, counting those that are not.
func (l *Limiter) allow(ent zapcore.Entry, every time.Duration, budget int, repeat bool) bool {
	k := key{ent.Level, ent.LoggerName, ent.Message}
	now := l.clock()
	var pending *summary
	l.mu.Lock()
	w, ok := l.keys[k]
	switch {
	case !ok && len(l.keys) >= maxKeys:
		l.overflow[ent.Level]++
		l.mu.Unlock()
		l.dropped.WithLabelValues(ent.Level.String()).Inc()
		return false
	case !ok:
		w = &window{start: now, every: every, repeat: repeat}
		l.keys[k] = w
	case now.Sub(w.start) >= w.every:
		// Ended, and the ticker has not been by yet.
		if w.left > 0 {
			pending = &summary{k, w.left, w.repeat, now.Sub(w.start)}
		}
		if w.left == 0 || !w.repeat {
			w.written = 0
		}
		w.start, w.left = now, 0
	}
	written := w.written < budget
	if written {
		w.written++
	} else {
		w.left++
	}
	l.mu.Unlock()
	if pending != nil {
		l.write(*pending, now)
	}
	if !written {
		l.dropped.WithLabelValues(ent.Level.String()).Inc()
	}
	return written
}

// core is the zapcore.Core of a logger built on a Limiter; With keeps
// the shared state.
type core struct {
	zapcore.Core
	l *Limiter
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{Core: c.Core.With(fields), l: c.l}
}

func (c *core) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

// Write decides here rather than in Check because only here are the
// fields (and so the Repeated mark) known; nothing has been encoded yet.
func (c *core) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	every, budget, repeat := time.Second, c.l.perSecond, false
	for _, f := range fields {
		if f.Key == repeatedKey && f.Type == zapcore.SkipType && f.Integer > 0 {
			every, budget, repeat = time.Duration(f.Integer), 1, true
		}
	}
	if budget > 0 && ent.Level < zapcore.DPanicLevel && !c.l.allow(ent, every, budget, repeat) {
		return nil
	}
	return c.Core.Write(ent, fields)
}

// StdLog is a *log.Logger for the standard library's servers
// (http.Server.ErrorLog) that writes every line with one constant message
// and the text in the "text" field. zap.NewStdLog puts the text itself in
// the message, and the standard library's texts carry the peer's address
// and port ("http: TLS handshake error from 203.0.113.9:50123: EOF"), so
// every line would be a message of its own and none would be limited.
func StdLog(l *zap.Logger, msg string) *log.Logger {
	return log.New(stdWriter{l.WithOptions(zap.AddCallerSkip(3)), msg}, "", 0)
}

type stdWriter struct {
	l   *zap.Logger
	msg string
}

func (w stdWriter) Write(p []byte) (int, error) {
	n := len(p)
	for n > 0 && p[n-1] == '\n' {
		n--
	}
	w.l.Warn(w.msg, zap.String("text", string(p[:n]))) // a copy: log.Logger reuses p
	return len(p), nil
}
