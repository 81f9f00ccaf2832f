package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is the result of a run; it is printed as text or as JSON.
type Report struct {
	Scenario    string   `json:"scenario"`
	URLs        []string `json:"urls"`
	Users       int      `json:"users"`
	Connections int      `json:"connections"` // logged in and taking part
	Duration    float64  `json:"duration_s"`
	Warmup      float64  `json:"warmup_s"`
	Window      float64  `json:"window_s,omitempty"` // the measured part of the load phase
	Drain       float64  `json:"drain_s,omitempty"`  // time the in-flight messages took to land

	Dials  *Rate `json:"dial,omitempty"`     // WebSocket handshake only (connect scenario's baseline)
	Setup  *Rate `json:"register,omitempty"` // connect + register
	Logins *Rate `json:"login,omitempty"`    // connect + login (connect scenario)

	DeliveredPerSec float64           `json:"delivered_per_s,omitempty"`
	Messages        *Tally            `json:"messages,omitempty"`
	ByType          map[string]uint64 `json:"delivered_by_type,omitempty"`
	Latency         *Latency          `json:"latency_ms,omitempty"`       // end to end, sender's ts to recipient's read
	AckLatency      *Latency          `json:"reply_latency_ms,omitempty"` // request to its reply
	LoginLatency    *Latency          `json:"login_latency_ms,omitempty"` // dial to login_ack
	// LoginCPU (connect, with --server-pid): each process's CPU over the
	// login storms alone (from before the first login to after the last
	// close settled), and per login.
	LoginCPU []PhaseCPU `json:"login_cpu,omitempty"`
	// LoginRedis (connect, with --redis-addr): Redis commands per login
	// over the same span, by command (INFO commandstats; a script's inner
	// commands count too).
	LoginRedis map[string]float64 `json:"login_redis_calls,omitempty"`

	Errors map[string]uint64 `json:"errors"`
	// Reconnects (chat --reconnect): how each lost connection ended, and
	// the logins that failed before one succeeded.
	Reconnects map[string]uint64 `json:"reconnects,omitempty"`
	// StallMs is the longest time a 100 ms ticker in the bench fired late:
	// how starved of CPU this machine's processes were during the run.
	StallMs float64 `json:"max_stall_ms"`
	// BenchCPU is the CPU time the bench itself used during the run: on
	// a shared machine it is CPU the servers did not get.
	BenchCPU float64 `json:"bench_cpu_s"`
	// WindowCPU is the CPU time of the bench and of the --cpu-pid
	// processes over the measured window only (no setup, no drain).
	WindowCPU *WindowCPU     `json:"window_cpu,omitempty"`
	Server    *ServerFigures `json:"server,omitempty"`
	// Abuse is the abuse scenario's baseline, attackers and memory; the
	// figures above are then those of the attacked phase.
	Abuse *AbuseReport `json:"abuse,omitempty"`
	Notes []string     `json:"notes,omitempty"`
}

// WindowCPU is CPU time over the measured window, and per message
// delivered in that window (microseconds).
type WindowCPU struct {
	Seconds              float64            `json:"window_s"`
	Bench                float64            `json:"bench_s"`
	BenchPerDeliveryUs   float64            `json:"bench_us_per_delivery"`
	PIDs                 map[string]float64 `json:"pids_s,omitempty"` // --cpu-pid -> CPU seconds
	Servers              float64            `json:"servers_s"`        // their sum
	ServersPerDeliveryUs float64            `json:"servers_us_per_delivery"`
}

// Rate is a count of operations over a time.
type Rate struct {
	Count  int     `json:"count"`
	Took   float64 `json:"took_s"`
	PerSec float64 `json:"per_s"`
}

// PhaseCPU is the CPU time (user + system, from /proc) one process spent
// in a phase, and per operation of it.
type PhaseCPU struct {
	PID     int     `json:"pid"`
	Seconds float64 `json:"cpu_s"`
	PerOpUs float64 `json:"per_op_us"`
}

// Latency percentiles, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func latencyOf(h *Histogram) *Latency {
	if h.Count() == 0 {
		return nil
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return &Latency{Count: h.Count(), P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)),
		P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max())}
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func rateOf(n int, d time.Duration) *Rate {
	r := &Rate{Count: n, Took: d.Seconds()}
	if d > 0 {
		r.PerSec = float64(n) / d.Seconds()
	}
	return r
}

// report fills what every scenario shares.
func (r *run) report() *Report {
	return &Report{
		Scenario: r.cfg.Scenario, URLs: r.cfg.URLs, Users: r.cfg.Users,
		Duration: r.cfg.Duration.Seconds(), Warmup: r.cfg.Warmup.Seconds(),
		Latency: latencyOf(&r.latency), AckLatency: latencyOf(&r.ackLatency),
		Errors: r.errorCounts(),
	}
}

// WriteJSON writes the report as one indented JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(rep)
}

// WriteText writes the report for a person.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("occase bench: scenario %s, %d users on %s\n", rep.Scenario, rep.Users, strings.Join(rep.URLs, ", "))
	p("  duration %.1fs", rep.Duration)
	if rep.Window > 0 {
		p(" (warm-up %.1fs, measured %.1fs, drain %.2fs)", rep.Warmup, rep.Window, rep.Drain)
	}
	p(", %d connections taking part\n", rep.Connections)
	if s := rep.Dials; s != nil {
		p("  dial          %8d in %6.2fs = %9.0f /s (WebSocket handshake only: the baseline)\n", s.Count, s.Took, s.PerSec)
	}
	if s := rep.Setup; s != nil {
		p("  register      %8d in %6.2fs = %9.0f /s (connect + register)\n", s.Count, s.Took, s.PerSec)
	}
	if s := rep.Logins; s != nil {
		p("  login         %8d in %6.2fs = %9.0f /s (connect + login)\n", s.Count, s.Took, s.PerSec)
	}
	if rep.DeliveredPerSec > 0 {
		p("  throughput    %9.0f delivered messages/s in the measured window\n", rep.DeliveredPerSec)
	}
	if w := rep.WindowCPU; w != nil {
		p("  window CPU    bench %.2fs (%.2f us per delivery); --cpu-pid processes %.2fs (%.2f us per delivery)\n",
			w.Bench, w.BenchPerDeliveryUs, w.Servers, w.ServersPerDeliveryUs)
	}
	if t := rep.Messages; t != nil {
		p("  messages      sent %d, accepted %d, refused %d, delivered %d\n", t.Sent, t.Accepted, t.Refused, t.Delivered)
		p("  exactness     lost %d, duplicated %d, out of order %d, unconfirmed %d\n", t.Lost, t.Duplicates, t.OutOfOrder, t.Unconfirmed)
		if t.Redelivered > 0 {
			p("  redelivered   %d (after a reconnect; dropped by msg_id)\n", t.Redelivered)
		}
	}
	if len(rep.ByType) > 0 {
		p("  by type      ")
		for _, k := range sortedKeys(rep.ByType) {
			p(" %s %d", k, rep.ByType[k])
		}
		p("\n")
	}
	lat := func(name string, l *Latency) {
		if l != nil {
			p("  %-13s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms  (%d samples)\n",
				name, l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
		}
	}
	lat("end to end", rep.Latency)
	lat("reply", rep.AckLatency)
	lat("login", rep.LoginLatency)
	if len(rep.LoginCPU) > 0 {
		p("  login CPU    ")
		sum := 0.0
		for _, c := range rep.LoginCPU {
			p(" pid %d %.2fs (%.1f us/login);", c.PID, c.Seconds, c.PerOpUs)
			sum += c.PerOpUs
		}
		p(" total %.1f us/login\n", sum)
	}
	if len(rep.LoginRedis) > 0 {
		p("  login Redis  ")
		for _, k := range slices.Sorted(maps.Keys(rep.LoginRedis)) {
			p(" %s %.2f", k, rep.LoginRedis[k])
		}
		p(" (commands per login)\n")
	}
	if len(rep.Reconnects) > 0 {
		p("  reconnects   ")
		for _, k := range sortedKeys(rep.Reconnects) {
			p(" %s %d", k, rep.Reconnects[k])
		}
		p("\n")
	}
	if len(rep.Errors) == 0 {
		p("  errors        none\n")
	} else {
		p("  errors       ")
		for _, k := range sortedKeys(rep.Errors) {
			p(" %s %d", k, rep.Errors[k])
		}
		p("\n")
	}
	p("  scheduling    longest stall of the bench's 100 ms ticker: %.1f ms; the bench used %.2f CPU-seconds\n", rep.StallMs, rep.BenchCPU)
	if s := rep.Server; s != nil {
		for _, n := range s.Samples {
			p("  server        %s: %s\n", n.Source, n.describe())
		}
		if s.PerConnection > 0 {
			p("  memory        %.0f bytes (%.2f KiB) per connection, from %s\n", s.PerConnection, s.PerConnection/1024, s.PerConnectionFrom)
		}
	}
	if rep.Abuse != nil {
		rep.Abuse.writeText(p)
	}
	for _, n := range rep.Notes {
		p("  note          %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
