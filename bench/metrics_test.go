package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const exposition = `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 1042
go_memstats_heap_inuse_bytes 2.5e+07
go_memstats_stack_inuse_bytes 8.388608e+06
process_resident_memory_bytes 6.7e+07
occase_connections{state="all"} 1001
occase_connections{state="logged_in"} 1000
occase_connection_closes_total{code="1000"} 7
legacy_connections 3
occase_frames_total{dir="in"} 12
`

func TestParseMetricsKeepsKnownSeries(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"goroutines": 1042, "heap_inuse_bytes": 25e6, "stack_inuse_bytes": 8388608,
		"rss_bytes": 67e6, "connections": 1001, "connections_logged_in": 1000, "legacy_connections": 3}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, err := parseMetrics(strings.NewReader("<html>not metrics</html>\n")); err == nil {
		t.Fatal("a page without series was accepted")
	}
}

func TestServerFiguresDegradeAndPrefer(t *testing.T) {
	var body string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	defer ts.Close()
	cfg := Config{Metrics: []string{ts.URL + "/metrics", ts.URL + "/missing"}}
	body = "go_memstats_heap_inuse_bytes 1000\ngo_memstats_stack_inuse_bytes 0\n"
	s := sampleServers(context.Background(), cfg, nil, false)
	body = "go_memstats_heap_inuse_bytes 5000\ngo_memstats_stack_inuse_bytes 1000\n"
	s = sampleServers(context.Background(), cfg, s, true)
	sf := serverFigures(s, 10)
	// No resident-set figure anywhere: the Go heap and stacks are used,
	// and the endpoint that is missing is reported, not fatal.
	if sf.PerConnection != 500 || sf.PerConnectionFrom != "Go heap+stack in use growth" {
		t.Fatalf("per connection %v from %q", sf.PerConnection, sf.PerConnectionFrom)
	}
	if sf.Samples[1].Error == "" || sf.Samples[0].Error != "" {
		t.Fatalf("samples %+v", sf.Samples)
	}
}
