package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The abuse scenario (issue 10): legitimate pairs chat at a fixed rate,
// exactly as in the chat scenario, twice in one run: first alone (the
// baseline), then while hostile clients attack the same nodes. The report
// gives both phases' latency and exactness, the ratio of their p99s, what
// each kind of hostile client got from the server, and how much the
// servers' and Redis' memory grew under attack.

// Attack kinds.
const (
	AttackFlood     = "flood"     // one logged-in connection writes small chat frames as fast as it can
	AttackFields    = "fields"    // the same with 16 KB chat frames of about 2,000 fields
	AttackSubscribe = "subscribe" // subscribe again and again over the stored posts
	AttackRegister  = "register"  // register from many loopback addresses
	AttackPublish   = "publish"   // register and publish up to the quota, from many addresses
	AttackUpload    = "upload"    // ask filenames, then POST a body that trickles in
	AttackScan      = "scan"      // GET /api/posts with filters that match nothing, and random paths
)

// attackKinds in report order, with the default number of clients each.
var attackKinds = []struct {
	kind    string
	clients int
}{
	{AttackFlood, 1}, {AttackFields, 1}, {AttackSubscribe, 4}, {AttackRegister, 4},
	{AttackPublish, 4}, {AttackUpload, 16}, {AttackScan, 4},
}

// Loopback /16 blocks (127.<block>.0.0/16) of each kind of client.
const (
	blockBaseline = 1
	blockAttacked = 2
	blockSeed     = 3
	blockAttack0  = 10 // + the kind's index in attackKinds
)

// MaxAttackClients bounds the hostile clients of one kind.
const MaxAttackClients = 1000

// AbuseConfig is the hostile side of the abuse scenario.
type AbuseConfig struct {
	// Attacks maps each enabled kind to its number of clients.
	Attacks map[string]int
	// Rate is each hostile client's requests (uploads, GETs, registrations)
	// per second; 0: as fast as the answers come. Floods always write as
	// fast as they can.
	Rate float64
	// Rates overrides Rate for some kinds ("kind=clients@rate"); a flood
	// is paced only by its own entry here.
	Rates map[string]float64
	// Ramp is how long the attackers run before the legitimate load of the
	// attack phase starts.
	Ramp time.Duration
	// StoredPosts are published before the run (from many accounts, each
	// up to PostsPerAccount) so that subscribe and scans have an index to
	// walk; 0: use whatever the store already holds.
	StoredPosts     int
	PostsPerAccount int
	// SourceAddrs is how many loopback addresses the register and publish
	// storms (and scans) rotate over.
	SourceAddrs int
	// HTTPURL is the http:// base of the node serving /api/posts and, with
	// role all, the image routes; "" derives it from the first --url.
	HTTPURL string
	// ImgURL is the http:// base of the img node; "" is HTTPURL.
	ImgURL string
	// Trickle is the time between the bytes of a slow upload.
	Trickle time.Duration
	// UploadNetworks puts each slow uploader in its own /24
	// (127.<block>.<client>.<1+client/256>) instead of all in one.
	UploadNetworks bool
	// RedisAddr, when set, is asked for INFO memory before and after.
	RedisAddr string
}

// DefaultAttacks is every kind with its default number of clients.
func DefaultAttacks() map[string]int {
	m := map[string]int{}
	for _, k := range attackKinds {
		m[k.kind] = k.clients
	}
	return m
}

// ParseAttacks reads "kind[=clients[@rate]],..." ("all" for every kind
// with its default, "none" for none): the clients of each kind and, where
// given, each client's operations per second.
func ParseAttacks(list []string) (map[string]int, map[string]float64, error) {
	out := map[string]int{}
	rates := map[string]float64{}
	for _, item := range list {
		name, n, hasN := strings.Cut(strings.TrimSpace(item), "=")
		switch name {
		case "":
			continue
		case "all":
			for k, v := range DefaultAttacks() {
				out[k] = v
			}
			continue
		case "none":
			continue
		}
		def, ok := DefaultAttacks()[name]
		if !ok {
			return nil, nil, fmt.Errorf("unknown attack %q (want %s)", name, strings.Join(attackNames(), ", "))
		}
		if hasN {
			n, r, hasR := strings.Cut(n, "@")
			v, err := strconv.Atoi(n)
			if err != nil || v < 0 || v > MaxAttackClients {
				return nil, nil, fmt.Errorf("attack %s: clients must be in 0..%d", name, MaxAttackClients)
			}
			def = v
			if hasR {
				f, err := strconv.ParseFloat(r, 64)
				if err != nil || f < 0 || f > 1e6 {
					return nil, nil, fmt.Errorf("attack %s: rate must be in 0..1e6 per second", name)
				}
				rates[name] = f
			}
		}
		if def > 0 {
			out[name] = def
		} else {
			delete(out, name)
		}
	}
	return out, rates, nil
}

func attackNames() []string {
	var out []string
	for _, k := range attackKinds {
		out = append(out, k.kind)
	}
	return out
}

func (a *AbuseConfig) validate(c *Config) error {
	for k, n := range a.Attacks {
		if _, ok := DefaultAttacks()[k]; !ok || n < 0 || n > MaxAttackClients {
			return fmt.Errorf("attack %s=%d: unknown kind or clients outside 0..%d", k, n, MaxAttackClients)
		}
	}
	for k, r := range a.Rates {
		if _, ok := DefaultAttacks()[k]; !ok || r < 0 {
			return fmt.Errorf("attack %s@%v: unknown kind or negative rate", k, r)
		}
	}
	if a.HTTPURL == "" && len(c.URLs) > 0 {
		u, err := url.Parse(c.URLs[0])
		if err != nil {
			return err
		}
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		a.HTTPURL = scheme + "://" + u.Host
	}
	if a.ImgURL == "" {
		a.ImgURL = a.HTTPURL
	}
	for _, u := range []string{a.HTTPURL, a.ImgURL} {
		if err := checkTarget(u, c.AllowRemote, "http", "https"); err != nil {
			return err
		}
	}
	if a.RedisAddr != "" && !c.AllowRemote {
		host, _, err := net.SplitHostPort(a.RedisAddr)
		if err != nil || !isLoopback(host) {
			return fmt.Errorf("--redis-addr %q is not a loopback host:port; pass --allow-remote", a.RedisAddr)
		}
	}
	switch {
	case a.Rate < 0 || a.Ramp < 0 || a.StoredPosts < 0 || a.StoredPosts > 1_000_000:
		return errors.New("attack rate and ramp must not be negative; --stored-posts at most 1,000,000")
	case a.PostsPerAccount < 1:
		return errors.New("--posts-per-account must be at least 1")
	case a.SourceAddrs < 1 || a.SourceAddrs > maxPoolAddrs:
		return fmt.Errorf("--source-addrs must be in 1..%d", maxPoolAddrs)
	case a.Trickle <= 0 || a.Trickle > time.Minute:
		return errors.New("--trickle must be in (0, 1m]")
	case a.Ramp > MaxDuration:
		return errors.New("--attack-ramp too long")
	}
	return nil
}

// AbuseReport is the abuse scenario's part of the report.
type AbuseReport struct {
	Baseline *PhaseReport `json:"baseline"` // legitimate chat alone
	Attacked *PhaseReport `json:"attacked"` // the same load under attack
	// P99Ratio is the attacked phase's end-to-end p99 over the baseline's.
	P99Ratio float64 `json:"p99_ratio,omitempty"`
	// LegitLost is the legitimate messages lost in both phases together.
	LegitLost   uint64            `json:"legit_lost"`
	SeededPosts int               `json:"seeded_posts"`
	SeedErrors  map[string]uint64 `json:"seed_errors,omitempty"`
	SeedTook    float64           `json:"seed_s,omitempty"`
	AttackTook  float64           `json:"attack_s"`
	Attacks     []*AttackReport   `json:"attacks"`
	Memory      []MemoryGrowth    `json:"memory"`
	// CPU is each --server-pid's CPU use in the two chat phases (the
	// attacked one from the attackers' start).
	CPU []ServerCPU `json:"server_cpu,omitempty"`
}

// PhaseReport is one phase of legitimate chat.
type PhaseReport struct {
	Connections int               `json:"connections"`
	Register    *Rate             `json:"register,omitempty"`
	Messages    *Tally            `json:"messages"`
	Latency     *Latency          `json:"latency_ms,omitempty"`
	AckLatency  *Latency          `json:"reply_latency_ms,omitempty"`
	Errors      map[string]uint64 `json:"errors"`
	// Uploads is a well-behaved app uploading a small image every second
	// during the phase (when the upload attack is on).
	Uploads *AttackReport `json:"legit_uploads,omitempty"`
}

// MemoryGrowth is one memory figure at the start, after the seeding and
// baseline (before the attack) and after the attack.
type MemoryGrowth struct {
	Source       string  `json:"source"`
	Start        float64 `json:"start_bytes"`
	BeforeAttack float64 `json:"before_attack_bytes"`
	AfterAttack  float64 `json:"after_attack_bytes"`
	AttackGrowth float64 `json:"attack_growth_bytes"`
	Error        string  `json:"error,omitempty"`
}

// ServerCPU is a server process's CPU use (cores: CPU seconds per second)
// in each phase, from /proc/<pid>/stat.
type ServerCPU struct {
	PID      int     `json:"pid"`
	Baseline float64 `json:"baseline_cores"`
	Attacked float64 `json:"attacked_cores"`
}

// procCPU is a process's user+system CPU seconds (-1 when unreadable).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// Fields after the command name, which may hold spaces, in ( ).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	k, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (u + k) / 100 // USER_HZ is 100 on Linux
}

type cpuMark struct {
	at  time.Time
	cpu []float64
}

func markCPU(pids []int) cpuMark {
	m := cpuMark{at: time.Now()}
	for _, p := range pids {
		m.cpu = append(m.cpu, procCPU(p))
	}
	return m
}

func serverCPU(pids []int, b0, b1, a0, a1 cpuMark) []ServerCPU {
	var out []ServerCPU
	rate := func(i int, x, y cpuMark) float64 {
		if x.cpu[i] < 0 || y.cpu[i] < 0 || !y.at.After(x.at) {
			return -1
		}
		return (y.cpu[i] - x.cpu[i]) / y.at.Sub(x.at).Seconds()
	}
	for i, p := range pids {
		out = append(out, ServerCPU{PID: p, Baseline: rate(i, b0, b1), Attacked: rate(i, a0, a1)})
	}
	return out
}

// memorySnapshot reads every configured memory figure: each server's
// resident set (from /proc or /metrics) and Redis' used_memory.
func memorySnapshot(ctx context.Context, cfg Config) map[string]float64 {
	out := map[string]float64{}
	for _, s := range sampleServers(ctx, cfg, nil, true) {
		if v, ok := s.After["rss_bytes"]; ok && s.Error == "" {
			out[s.Source+" rss"] = v
		} else {
			out[s.Source+" rss"] = -1
		}
	}
	if cfg.Abuse.RedisAddr != "" {
		v, err := redisUsedMemory(ctx, cfg.Abuse.RedisAddr)
		if err != nil {
			v = -1
		}
		out["redis "+cfg.Abuse.RedisAddr+" used_memory"] = v
	}
	return out
}

func memoryGrowth(start, before, after map[string]float64) []MemoryGrowth {
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []MemoryGrowth
	for _, k := range keys {
		g := MemoryGrowth{Source: k, Start: start[k], BeforeAttack: before[k], AfterAttack: after[k]}
		if g.Start < 0 || g.BeforeAttack < 0 || g.AfterAttack < 0 {
			g.Error = "unavailable at some point"
		} else {
			g.AttackGrowth = g.AfterAttack - g.BeforeAttack
		}
		out = append(out, g)
	}
	return out
}

func phaseOf(rep *Report) *PhaseReport {
	return &PhaseReport{Connections: rep.Connections, Register: rep.Setup, Messages: rep.Messages,
		Latency: rep.Latency, AckLatency: rep.AckLatency, Errors: rep.Errors}
}

// withProbe runs the upload probe while fn runs, when the upload attack
// is on.
func withProbe(ctx context.Context, cfg Config, fn func() (*Report, error)) (*Report, *AttackReport, error) {
	if cfg.Abuse.Attacks[AttackUpload] == 0 {
		rep, err := fn()
		return rep, nil, err
	}
	st := newAttackStats("legit_upload", 1)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	t0 := time.Now()
	go func() {
		defer close(done)
		uploadProbe(pctx, cfg, st)
	}()
	rep, err := fn()
	stop()
	<-done
	return rep, st.report(time.Since(t0)), err
}

// runAbuse seeds the store, runs the legitimate chat alone, then again
// under attack.
func runAbuse(ctx context.Context, r *run) (*Report, error) {
	cfg := r.cfg
	ab := cfg.Abuse
	status := func(s string) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "abuse: %s\n", s)
		}
	}
	memStart := memorySnapshot(ctx, cfg)
	out := &AbuseReport{}

	if ab.StoredPosts > 0 {
		status(fmt.Sprintf("publishing %d posts from %d accounts", ab.StoredPosts, (ab.StoredPosts+ab.PostsPerAccount-1)/ab.PostsPerAccount))
		t0 := time.Now()
		out.SeededPosts = seedPosts(ctx, r, ab.StoredPosts, ab.PostsPerAccount)
		out.SeedTook = time.Since(t0).Seconds()
		if e := r.errorCounts(); len(e) > 0 {
			out.SeedErrors = e
		}
	}

	chatCfg := cfg
	chatCfg.Scenario = Chat
	chatCfg.Progress = cfg.Progress
	status("baseline: legitimate chat without attackers")
	cpuB0 := markCPU(cfg.ServerPIDs)
	rb := newRun(chatCfg)
	rb.src = newAddrPool(blockBaseline, cfg.Users)
	base, baseUp, err := withProbe(ctx, cfg, func() (*Report, error) { return runChat(ctx, rb) })
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	cpuB1 := markCPU(cfg.ServerPIDs)
	memBefore := memorySnapshot(ctx, cfg)

	// The attack phase's users register first (an app's existing users),
	// then the attackers start, and after the ramp the chat load runs.
	actx, stopAttack := context.WithCancel(ctx)
	defer stopAttack()
	var wg sync.WaitGroup
	var stats []*attackStats
	var attackStart time.Time
	var cpuA0 cpuMark
	ra := newRun(chatCfg)
	ra.src = newAddrPool(blockAttacked, cfg.Users)
	ra.afterSetup = func() {
		status("attack phase: attackers start")
		attackStart = time.Now()
		cpuA0 = markCPU(cfg.ServerPIDs)
		for i, k := range attackKinds {
			n := ab.Attacks[k.kind]
			if n <= 0 {
				continue
			}
			s := newAttackStats(k.kind, n)
			stats = append(stats, s)
			a := &attacker{r: r, cfg: cfg, st: s, pool: newAddrPool(byte(blockAttack0+i), ab.SourceAddrs)}
			for c := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a.run(actx, c)
				}()
			}
		}
		ramp := time.NewTimer(ab.Ramp)
		select {
		case <-ramp.C:
		case <-ctx.Done():
			ramp.Stop()
		}
		status("attack phase: legitimate chat under attack")
	}
	att, attUp, err := withProbe(ctx, cfg, func() (*Report, error) { return runChat(ctx, ra) })
	cpuA1 := markCPU(cfg.ServerPIDs)
	stopAttack()
	wg.Wait()
	attackTook := time.Since(attackStart)
	if err != nil {
		return nil, fmt.Errorf("attack phase: %w", err)
	}
	memAfter := memorySnapshot(ctx, cfg)

	out.Baseline, out.Attacked = phaseOf(base), phaseOf(att)
	out.Baseline.Uploads, out.Attacked.Uploads = baseUp, attUp
	out.LegitLost = base.Messages.Lost + att.Messages.Lost
	if base.Latency != nil && att.Latency != nil && base.Latency.P99 > 0 {
		out.P99Ratio = att.Latency.P99 / base.Latency.P99
	}
	out.AttackTook = attackTook.Seconds()
	for _, s := range stats {
		out.Attacks = append(out.Attacks, s.report(attackTook))
	}
	out.Memory = memoryGrowth(memStart, memBefore, memAfter)
	out.CPU = serverCPU(cfg.ServerPIDs, cpuB0, cpuB1, cpuA0, cpuA1)

	// The top-level figures are the attacked phase's, so that tools that
	// read a chat report read this one too.
	rep := r.report()
	rep.Connections = att.Connections
	rep.Setup = att.Setup
	rep.Window = att.Window
	rep.Drain = att.Drain
	rep.Messages = att.Messages
	rep.Latency, rep.AckLatency = att.Latency, att.AckLatency
	rep.DeliveredPerSec = att.DeliveredPerSec
	rep.ByType = att.ByType
	rep.Errors = att.Errors
	rep.Abuse = out
	if len(cfg.Metrics)+len(cfg.ServerPIDs) == 0 {
		rep.Notes = append(rep.Notes, "no --metrics or --server-pid given: server memory not measured")
	}
	if ab.RedisAddr == "" {
		rep.Notes = append(rep.Notes, "no --redis-addr given: Redis memory not measured")
	}
	return rep, nil
}

func (a *AbuseReport) writeText(p func(string, ...any)) {
	p("  under attack: the same legitimate chat without, then with, the attackers\n")
	if a.SeededPosts > 0 {
		p("    stored posts   %d published before the run in %.1fs\n", a.SeededPosts, a.SeedTook)
	}
	if len(a.SeedErrors) > 0 {
		p("    seeding errors")
		for _, k := range sortedKeys(a.SeedErrors) {
			p(" %s %d", k, a.SeedErrors[k])
		}
		p("\n")
	}
	phase := func(name string, ph *PhaseReport) {
		if ph == nil || ph.Messages == nil {
			return
		}
		m := ph.Messages
		p("    %-14s %d connections; sent %d, accepted %d, refused %d, delivered %d; lost %d, duplicated %d, out of order %d, unconfirmed %d\n",
			name, ph.Connections, m.Sent, m.Accepted, m.Refused, m.Delivered, m.Lost, m.Duplicates, m.OutOfOrder, m.Unconfirmed)
		if l := ph.Latency; l != nil {
			p("    %-14s end to end p50 %.3f  p99 %.3f  max %.3f ms\n", "", l.P50, l.P99, l.Max)
		}
		if u := ph.Uploads; u != nil {
			p("    %-14s a legitimate upload a second:", "")
			for _, k := range sortedKeys(u.Results) {
				p(" %s %d", k, u.Results[k])
			}
			if l := u.Latency; l != nil {
				p(" (p50 %.1f  max %.1f ms)", l.P50, l.Max)
			}
			p("\n")
		}
		if len(ph.Errors) > 0 {
			p("    %-14s errors", "")
			for _, k := range sortedKeys(ph.Errors) {
				p(" %s %d", k, ph.Errors[k])
			}
			p("\n")
		}
	}
	phase("baseline", a.Baseline)
	phase("attacked", a.Attacked)
	if a.P99Ratio > 0 {
		p("    p99 ratio      %.2fx the baseline (target: at most 2x); legitimate messages lost: %d (target: 0)\n", a.P99Ratio, a.LegitLost)
	}
	p("    attackers      %.1fs\n", a.AttackTook)
	for _, k := range a.Attacks {
		p("    %-14s %d clients, %d ops (%.0f/s), sent %.1f MB, received %.1f MB\n", k.Kind, k.Clients, k.Ops, k.PerSec, k.BytesMB, k.RecvMB)
		p("    %-14s results", "")
		for _, r := range sortedKeys(k.Results) {
			p(" %s %d", r, k.Results[r])
		}
		p("\n")
		if len(k.Closes) > 0 {
			p("    %-14s closed", "")
			for _, c := range sortedKeys(k.Closes) {
				p(" %s %d", c, k.Closes[c])
			}
			if l := k.TimeToClose; l != nil {
				p(" (after p50 %.0f ms, max %.0f ms)", l.P50, l.Max)
			}
			p("\n")
		} else if l := k.TimeToClose; l != nil {
			p("    %-14s answered after p50 %.0f ms, max %.0f ms\n", "", l.P50, l.Max)
		}
		if l := k.Latency; l != nil {
			p("    %-14s reply p50 %.3f  p99 %.3f ms\n", "", l.P50, l.P99)
		}
	}
	for _, c := range a.CPU {
		p("    server CPU     pid %d: %.2f cores in the baseline, %.2f under attack\n", c.PID, c.Baseline, c.Attacked)
	}
	for _, m := range a.Memory {
		if m.Error != "" {
			p("    memory         %s: %s\n", m.Source, m.Error)
			continue
		}
		p("    memory         %s: %.1f MiB at start, %.1f before the attack, %.1f after (%+.1f MiB under attack)\n",
			m.Source, m.Start/(1<<20), m.BeforeAttack/(1<<20), m.AfterAttack/(1<<20), m.AttackGrowth/(1<<20))
	}
}
