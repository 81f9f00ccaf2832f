package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// A lease is held by one token at a time, renewed and released only by
// it, and frees itself when its holder stops renewing.
func TestLease(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		const name = broker.LeaseImageGC
		if ok, err := c.TakeLease(ctx, name, "a", time.Minute); !ok || err != nil {
			t.Fatalf("take: %v %v", ok, err)
		}
		if ok, err := c.TakeLease(ctx, name, "b", time.Minute); ok || err != nil {
			t.Fatalf("second take: %v %v, want refused", ok, err)
		}
		if ok, err := c.RenewLease(ctx, name, "b", time.Minute); ok || err != nil {
			t.Fatalf("renew by another: %v %v, want refused", ok, err)
		}
		if err := c.ReleaseLease(ctx, name, "b"); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.RenewLease(ctx, name, "a", 50*time.Millisecond); !ok || err != nil {
			t.Fatalf("renew by holder: %v %v", ok, err)
		}
		if b.Name == "embedded" {
			// The embedded server expires nothing by the clock; a node on it
			// sweeps without a lease (it is the only one).
			return
		}
		// Not renewed again: it expires, and another takes it.
		brokertest.Poll(t, 10*time.Second, "the lease to expire", func() bool {
			ok, err := c.TakeLease(ctx, name, "b", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		})
		if ok, _ := c.RenewLease(ctx, name, "a", time.Minute); ok {
			t.Fatal("the expired holder renewed another's lease")
		}
		if err := c.ReleaseLease(ctx, name, "a"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.TakeLease(ctx, name, "c", time.Minute); ok {
			t.Fatal("the expired holder released another's lease")
		}
		if err := c.ReleaseLease(ctx, name, "b"); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.TakeLease(ctx, name, "c", time.Minute); !ok || err != nil {
			t.Fatalf("take after release: %v %v", ok, err)
		}
	})
}
