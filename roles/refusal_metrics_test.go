package roles_test

import (
	"testing"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
)

// A presence signal over the connection's limit is never answered, but it
// is a refusal: counted with its reason, not as a request that succeeded.
func TestRefusedPresenceCountedWithReason(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.PresenceRate, c.PresenceBurst = 0.001, 2
			c.AbuseLimit = 0
		})
		a := register(t, n.url)
		u := register(t, n.url)
		for range 5 {
			a.send(`{"cmd":"presence","to":"` + u.id + `","type":"typing"}`)
		}
		// A request that is answered, after the five: they have all been
		// handled once its ack is in.
		a.send(`{"cmd":"subscribe"}`)
		a.expect("subscribe_ack")
		if v := metricValue(t, n, `occase_request_errors_total{cmd="presence",reason="rate_limited"}`); v != 3 {
			t.Fatalf("%v presence refusals counted, want 3", v)
		}
		if v := metricValue(t, n, `occase_rate_refused_total{cmd="presence"}`); v != 3 {
			t.Fatalf("%v presence rate refusals, want 3", v)
		}
	})
}
