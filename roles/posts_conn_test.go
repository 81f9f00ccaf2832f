package roles

import (
	"strings"
	"testing"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/posts"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

var _ posts.Conn = (*session)(nil)

// TestSessionClientIsItsAddressKey: the posts service's per-address budget
// counts what every other per-address limit counts: IPv4 as is, IPv6 by
// its /64.
func TestSessionClientIsItsAddressKey(t *testing.T) {
	srv := &Server{cfg: Config{IPv6Prefix: 64}}
	for remote, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
	} {
		if got := (&session{srv: srv, remote: remote}).Client(); got != want {
			t.Errorf("Client() for %s = %q, want %q", remote, got, want)
		}
	}
}

// TestPostsMetricsRegistered: every refusal and guard counter of the posts
// service is exported under its documented name (docs/operations.md).
func TestPostsMetricsRegistered(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ps, err := posts.New(posts.Config{}, brokertest.Open(t, b.Options), zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		registerPostsMetrics(reg, ps)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mf := range mfs {
			names = append(names, mf.GetName())
		}
		got := strings.Join(names, " ")
		for _, want := range []string{"occase_posts_reads_rate_limited_total", "occase_posts_subscribes_rate_limited_total",
			"occase_posts_scans_capped_total", "occase_posts_refused_full_total", "occase_posts_refused_address_total",
			"occase_posts_evicted_total", "occase_posts_deleted_sent_total"} {
			if !strings.Contains(got, want) {
				t.Errorf("metrics lack %s: %s", want, got)
			}
		}
	})
}
