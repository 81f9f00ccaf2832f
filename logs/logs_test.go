package logs

import (
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTest(t *testing.T, perSecond int) (*zap.Logger, *Limiter, *observer.ObservedLogs, *fakeClock) {
	obs, logs := observer.New(zapcore.DebugLevel)
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := New(obs, Options{PerSecond: perSecond, Clock: clk.now})
	t.Cleanup(l.Close)
	return zap.New(l.Core()), l, logs, clk
}

func field(e observer.LoggedEntry, key string) (int64, bool) {
	for _, f := range e.Context {
		if f.Key == key {
			return f.Integer, true
		}
	}
	return 0, false
}

// The old logger (zap's production sampler) dropped lines past 100 a
// second without a word; this one says how many it left out, per message,
// and counts them in occase_log_dropped_total.
func TestSamplingSaysWhatItDropped(t *testing.T) {
	log, l, logs, clk := newTest(t, 3)
	for i := range 10 {
		log.Info("registered", zap.Int("i", i))
	}
	log.Info("other message") // its own budget
	if n := logs.FilterMessage("registered").Len(); n != 3 {
		t.Fatalf("registered lines written in the first second = %d, want 3", n)
	}
	clk.add(time.Second)
	l.Flush(false)
	sum := logs.FilterMessage("registered").All()
	if len(sum) != 4 {
		t.Fatalf("registered lines after the second = %d, want 3 + a summary", len(sum))
	}
	if n, ok := field(sum[3], "dropped"); !ok || n != 7 {
		t.Fatalf("summary %+v: want dropped=7", sum[3].Context)
	}
	if got := counterValue(t, l, "info"); got != 7 {
		t.Fatalf("occase_log_dropped_total{level=info} = %v, want 7", got)
	}
	// A new second has a new budget.
	log.Info("registered")
	if n := logs.FilterMessage("registered").Len(); n != 5 {
		t.Fatalf("lines = %d, want 5", n)
	}
}

// A Redis outage made every connected user's mailbox warn every back-off
// (1,450 lines per node in ten seconds, with user ids). Marked Repeated,
// the first is written, then one line per interval with the count.
func TestRepeatedWritesOnceThenCounts(t *testing.T) {
	log, l, logs, clk := newTest(t, 100)
	for i := range 1450 {
		log.With(zap.Int("user", i)).Warn("fetch messages; retrying", Repeated(10*time.Second), zap.String("err", "redis unavailable"))
		if i%145 == 144 {
			clk.add(time.Second)
			l.Flush(false)
		}
	}
	all := logs.FilterMessage("fetch messages; retrying").All()
	if len(all) != 2 {
		t.Fatalf("lines = %d, want the first and one summary: %+v", len(all), all)
	}
	if _, ok := field(all[0], "user"); !ok {
		t.Fatalf("the first line keeps its fields: %+v", all[0].Context)
	}
	if n, _ := field(all[1], "repeated"); n != 1449 {
		t.Fatalf("summary %+v: want repeated=1449", all[1].Context)
	}
	if _, ok := field(all[1], "user"); ok {
		t.Fatalf("the summary carries no user: %+v", all[1].Context)
	}
	// Still failing: the window stays hot, one summary per interval.
	for range 10 {
		log.Warn("fetch messages; retrying", Repeated(10*time.Second))
	}
	clk.add(10 * time.Second)
	l.Flush(false)
	all = logs.FilterMessage("fetch messages; retrying").All()
	if len(all) != 3 {
		t.Fatalf("lines = %d, want 3", len(all))
	}
	if n, _ := field(all[2], "repeated"); n != 10 {
		t.Fatalf("second summary %+v: want repeated=10", all[2].Context)
	}
	// Quiet for an interval: the next occurrence is written in full again.
	clk.add(10 * time.Second)
	l.Flush(false)
	log.Warn("fetch messages; retrying", Repeated(10*time.Second), zap.Int("user", 7))
	all = logs.FilterMessage("fetch messages; retrying").All()
	if len(all) != 4 || len(all[3].Context) == 0 {
		t.Fatalf("after a quiet interval: %+v", all)
	}
}

func TestCloseWritesPendingSummaries(t *testing.T) {
	log, l, logs, _ := newTest(t, 1)
	log.Error("boom")
	log.Error("boom")
	l.Close()
	all := logs.FilterMessage("boom").All()
	if len(all) != 2 {
		t.Fatalf("lines = %d, want 2", len(all))
	}
	if n, _ := field(all[1], "dropped"); n != 1 {
		t.Fatalf("summary %+v", all[1].Context)
	}
}

func TestZeroPerSecondWritesAll(t *testing.T) {
	log, _, logs, _ := newTest(t, 0)
	for range 500 {
		log.Info("registered")
	}
	if logs.Len() != 500 {
		t.Fatalf("lines = %d, want 500", logs.Len())
	}
}

// Without a Limiter the mark is skipped: tests' loggers write every line
// and no stray field appears.
func TestRepeatedIsInvisibleElsewhere(t *testing.T) {
	obs, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(obs)
	log.Warn("x", Repeated(time.Second))
	log.Warn("x", Repeated(time.Second))
	if logs.Len() != 2 {
		t.Fatalf("lines = %d", logs.Len())
	}
}

func counterValue(t *testing.T, l *Limiter, level string) float64 {
	var m dto.Metric
	if err := l.dropped.WithLabelValues(level).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
