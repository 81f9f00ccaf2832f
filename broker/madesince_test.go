package broker_test

import (
	"context"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

// MadeSince records the first caller's time and gives every later caller
// (another node, a restart) the same.
func TestMadeSince(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c1, c2 := brokertest.Open(t, b.Options), brokertest.Open(t, b.Options)
		if v, err := c1.MadeSince(ctx, 1_700_000_000_000); err != nil || v != 1_700_000_000_000 {
			t.Fatalf("first: %d %v", v, err)
		}
		if v, err := c2.MadeSince(ctx, 1_800_000_000_000); err != nil || v != 1_700_000_000_000 {
			t.Fatalf("second node: %d %v, want the first's", v, err)
		}
	})
}
