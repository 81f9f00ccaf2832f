package bench

import (
	"context"
	"fmt"
	"github.com/occase/occase/wire"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// run is the state that every scenario shares: the clock origin, the
// latency histograms, the live counters the progress line reads, and the
// errors by reason.
type run struct {
	cfg   Config
	start time.Time // the origin of every "ts" the bench puts in a frame

	// afterSetup, when set, runs once the chat's users are registered and
	// before its load starts (the abuse scenario starts its attackers
	// there: the legitimate users are the app's existing ones).
	afterSetup func()

	// The measured window, as offsets from start; set once before any
	// sender starts.
	measureFrom, measureTo time.Duration

	latency    Histogram // end-to-end: the sender's ts to the recipient's read
	ackLatency Histogram // request written to its reply read

	conns     atomic.Int64 // open, logged-in connections
	delivered atomic.Uint64
	inWindow  atomic.Uint64 // deliveries read inside the measured window

	errMu      sync.Mutex
	errors     map[string]uint64
	reconnects map[string]uint64 // --reconnect: why connections ended, and failed logins after

	src *addrPool // source addresses of the users' connections; nil: the kernel's choice

	stall atomic.Int64 // longest lateness of the watchdog tick, ns

	// cpuFrom, cpuTo: the bench's and each Config.CPUPIDs' CPU seconds
	// when the measured window began and ended (sendPhase); nil when the
	// window never began.
	cpuFrom, cpuTo []float64
}

// markWindowCPU reads the bench's own CPU time, then each CPUPIDs'.
func (r *run) markWindowCPU() []float64 {
	m := []float64{ownCPU()}
	for _, p := range r.cfg.CPUPIDs {
		m = append(m, procCPU(p))
	}
	return m
}

// windowCPU is the report's WindowCPU: what each process spent in the
// measured window, and per message delivered in it.
func (r *run) windowCPU(window time.Duration) *WindowCPU {
	if r.cpuFrom == nil || r.cpuTo == nil || window <= 0 {
		return nil
	}
	n := float64(r.inWindow.Load())
	w := &WindowCPU{Seconds: window.Seconds(), PIDs: map[string]float64{}}
	per := func(s float64) float64 {
		if n == 0 {
			return 0
		}
		return s / n * 1e6
	}
	w.Bench = r.cpuTo[0] - r.cpuFrom[0]
	w.BenchPerDeliveryUs = per(w.Bench)
	for i, p := range r.cfg.CPUPIDs {
		a, b := r.cpuFrom[i+1], r.cpuTo[i+1]
		if a < 0 || b < 0 {
			continue
		}
		w.PIDs[strconv.Itoa(p)] = b - a
		w.Servers += b - a
	}
	w.ServersPerDeliveryUs = per(w.Servers)
	return w
}

// watchdog measures how late a 100 ms ticker fires while the run goes on.
// On a machine the bench shares, a late tick means every process here
// (the nodes, Redis, the bench) was starved: the report says so, rather
// than let a starved run pass for the server's figures.
func (r *run) watchdog(ctx context.Context) {
	const every = 100 * time.Millisecond
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// The time of the receive, not the tick's own stamp: a
			// starved process receives late, and missed ticks are
			// dropped.
			now := time.Now()
			if late := now.Sub(last) - every; late > time.Duration(r.stall.Load()) {
				r.stall.Store(int64(late))
			}
			last = now
		}
	}
}

func newRun(cfg Config) *run {
	return &run{cfg: cfg, start: time.Now(), errors: map[string]uint64{}, reconnects: map[string]uint64{}}
}

// localAddr is the source address of user i's connections (nil: any).
func (r *run) localAddr(i int) net.Addr { return r.src.tcp(i) }

func (r *run) reconnect(reason string) {
	r.errMu.Lock()
	r.reconnects[reason]++
	r.errMu.Unlock()
}

func (r *run) reconnectCounts() map[string]uint64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	out := make(map[string]uint64, len(r.reconnects))
	for k, v := range r.reconnects {
		out[k] = v
	}
	return out
}

// now is the offset from start: monotonic, so a clock step during a run
// does not bend latencies.
func (r *run) now() time.Duration { return time.Since(r.start) }

func (r *run) fail(reason string) {
	r.errMu.Lock()
	r.errors[reason]++
	r.errMu.Unlock()
}

func (r *run) errorCounts() map[string]uint64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	out := make(map[string]uint64, len(r.errors))
	for k, v := range r.errors {
		out[k] = v
	}
	return out
}

func (r *run) totalErrors() uint64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	var n uint64
	for _, v := range r.errors {
		n += v
	}
	return n
}

// delivery counts one message read by a recipient that the sender stamped
// at sentAt. Latency is taken for messages sent inside the window, however
// late they arrive; throughput counts what arrives inside it.
func (r *run) delivery(sentAt time.Duration) {
	now := r.now()
	r.delivered.Add(1)
	if now >= r.measureFrom && now < r.measureTo {
		r.inWindow.Add(1)
	}
	if sentAt >= r.measureFrom && sentAt < r.measureTo {
		r.latency.Record(now - sentAt)
	}
}

// progress prints a line every ProgressEvery until ctx ends: a redrawn
// line on a terminal, plain lines otherwise (logs, CI).
func (r *run) progress(ctx context.Context, phase *atomic.Value) {
	w := r.cfg.Progress
	if w == nil {
		return
	}
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	var last uint64
	lastAt := r.now()
	for {
		select {
		case <-ctx.Done():
			if r.cfg.ProgressTerminal {
				fmt.Fprintln(w)
			}
			return
		case <-t.C:
		}
		now := r.now()
		d := r.delivered.Load()
		rate := float64(d-last) / (now - lastAt).Seconds()
		last, lastAt = d, now
		line := fmt.Sprintf("%6.1fs %-8s conns %6d  delivered %9d  %9.0f msg/s  p99 %8s  errors %d",
			now.Seconds(), phase.Load(), r.conns.Load(), d, rate,
			fmtDur(r.latency.Quantile(0.99)), r.totalErrors())
		if r.cfg.ProgressTerminal {
			fmt.Fprint(w, "\r\x1b[K"+line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// parallel runs fn(i) for i in [0, n) with at most c at once, stopping the
// hand-out of new work when ctx ends. It returns how many ran.
func parallel(ctx context.Context, n, c int, fn func(i int)) int {
	var wg sync.WaitGroup
	sem := make(chan struct{}, c)
	started := 0
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return started
		case sem <- struct{}{}:
		}
		started++
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
	return started
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// sendPhase runs the warm-up (phase "warmup", then "measure" once
// cfg.Warmup has passed) until every sender is done, and returns the length
// of the measured window.
func (r *run) sendPhase(phase *atomic.Value, senders *sync.WaitGroup) time.Duration {
	phase.Store("warmup")
	allSent := make(chan struct{})
	go func() { senders.Wait(); close(allSent) }()
	warm := time.NewTimer(r.cfg.Warmup)
	defer warm.Stop()
	for done := false; !done; {
		select {
		case <-warm.C:
			phase.Store("measure")
			r.cpuFrom = r.markWindowCPU()
		case <-allSent:
			done = true
		}
	}
	if r.cpuFrom != nil {
		r.cpuTo = r.markWindowCPU()
	}
	return min(r.now(), r.measureTo) - r.measureFrom
}

// settle records the server's answer to the pending request p of stream
// out: accepted (counted in accepted) or failed with its reason, and the
// reply's latency when the request was sent inside the measured window.
func (r *run) settle(req *wire.Request, p pending, out *outStream, accepted *atomic.Uint64) {
	if res, _ := wire.String(req.Get("result")); res == "ok" {
		out.acked.add(p.seq)
		accepted.Add(1)
	} else {
		reason, _ := wire.String(req.Get("reason"))
		out.failed.add(p.seq)
		r.fail(reason)
	}
	if now := r.now(); p.at >= r.measureFrom && p.at < r.measureTo {
		r.ackLatency.Record(now - p.at)
	}
}
