package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ServerFigures are the server's memory and connection figures before and
// after the load, from its /metrics endpoint(s) and/or /proc/<pid>/status.
type ServerFigures struct {
	Samples           []Sample `json:"samples"`
	PerConnection     float64  `json:"memory_per_connection_bytes,omitempty"`
	PerConnectionFrom string   `json:"memory_per_connection_from,omitempty"`
}

// Sample is one source read before and after.
type Sample struct {
	Source string             `json:"source"`
	Before map[string]float64 `json:"before,omitempty"`
	After  map[string]float64 `json:"after,omitempty"`
	Error  string             `json:"error,omitempty"`
	pid    bool
}

func (s Sample) describe() string {
	if s.Error != "" {
		return "unavailable (" + s.Error + ")"
	}
	keys := make([]string, 0, len(s.After))
	for k := range s.After {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if b, ok := s.Before[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %s -> %s", k, human(b, k), human(s.After[k], k)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s", k, human(s.After[k], k)))
		}
	}
	return strings.Join(parts, ", ")
}

func human(v float64, key string) string {
	if strings.HasSuffix(key, "_bytes") {
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// The Prometheus series the report uses, under shorter names. A server
// without some of them simply yields fewer figures.
var metricNames = map[string]string{
	"process_resident_memory_bytes": "rss_bytes",
	"go_memstats_heap_inuse_bytes":  "heap_inuse_bytes",
	"go_memstats_stack_inuse_bytes": "stack_inuse_bytes",
	"go_memstats_sys_bytes":         "go_sys_bytes",
	"go_goroutines":                 "goroutines",
	// occase's own gauges (roles/metrics.go).
	`occase_connections{state="all"}`:       "connections",
	`occase_connections{state="logged_in"}`: "connections_logged_in",
	"occase_send_queue_frames":              "send_queue_frames",
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// readMetrics reads a Prometheus text exposition and keeps the series
// above, plus every unlabelled series whose name mentions connections.
func readMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := f[0]
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		if short, ok := metricNames[name]; ok {
			out[short] = v
		} else if !strings.Contains(name, "{") && strings.Contains(name, "connection") {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no known series (is this a Prometheus /metrics endpoint?)")
	}
	return out, nil
}

// readRSS reads a process's resident set from /proc.
func readRSS(pid int) (map[string]float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return nil, err
			}
			return map[string]float64{"rss_bytes": kb * 1024}, nil
		}
	}
	return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// sampleServers reads every configured source; failures are kept in the
// sample and do not stop the run.
func sampleServers(ctx context.Context, cfg Config, into []Sample, after bool) []Sample {
	if into == nil {
		for _, u := range cfg.Metrics {
			into = append(into, Sample{Source: u})
		}
		for _, p := range cfg.ServerPIDs {
			into = append(into, Sample{Source: fmt.Sprintf("pid %d", p), pid: true})
		}
	}
	for i := range into {
		s := &into[i]
		var m map[string]float64
		var err error
		if s.pid {
			var pid int
			fmt.Sscanf(s.Source, "pid %d", &pid)
			m, err = readRSS(pid)
		} else {
			m, err = readMetrics(ctx, s.Source)
		}
		switch {
		case err != nil:
			s.Error = err.Error()
		case after:
			s.After = m
		default:
			s.Before = m
		}
	}
	return into
}

// serverFigures turns before/after samples into memory per connection: the
// growth of the resident set (from /proc when given, else from /metrics),
// else of the Go heap plus stacks, over the connections added.
func serverFigures(samples []Sample, added int) *ServerFigures {
	if len(samples) == 0 {
		return nil
	}
	sf := &ServerFigures{Samples: samples}
	if added <= 0 {
		return sf
	}
	sum := func(keep func(Sample) bool, keys ...string) (float64, bool) {
		var d float64
		found := false
		for _, s := range samples {
			if s.Error != "" || !keep(s) {
				continue
			}
			for _, k := range keys {
				a, okA := s.After[k]
				b, okB := s.Before[k]
				if okA && okB {
					d += a - b
					found = true
				}
			}
		}
		return d, found
	}
	if d, ok := sum(func(s Sample) bool { return s.pid }, "rss_bytes"); ok {
		sf.PerConnection, sf.PerConnectionFrom = d/float64(added), "VmRSS growth"
	} else if d, ok := sum(func(s Sample) bool { return !s.pid }, "rss_bytes"); ok {
		sf.PerConnection, sf.PerConnectionFrom = d/float64(added), "process_resident_memory_bytes growth"
	} else if d, ok := sum(func(s Sample) bool { return !s.pid }, "heap_inuse_bytes", "stack_inuse_bytes"); ok {
		sf.PerConnection, sf.PerConnectionFrom = d/float64(added), "Go heap+stack in use growth"
	}
	return sf
}
