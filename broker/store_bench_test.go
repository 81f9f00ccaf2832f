package broker_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// BenchmarkStorePost is one publish's store script on a real Redis, by
// an author with nothing under review: what the under_review check adds
// to every publish (one EXISTS inside the script) shows against the same
// benchmark on a tree without it, run alternately (docs/security.md
// "Publishing while under review"). It reports Redis's own time per
// script call (INFO commandstats), which the machine's noise touches less
// than the round trip.
func BenchmarkStorePost(b *testing.B) {
	r := brokertest.StartRedis(b)
	c := brokertest.Open(b, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()})
	ctx := context.Background()
	members := []byte(`"from":"7","body":"bike","to":[[[0,0,0]],[[0,0,0]]],"features":0,"date":100,"range_values":[]`)
	b.ResetTimer()
	for range b.N {
		if _, err := c.StorePostWithin(ctx, members, "7", 100, "x", broker.PostBounds{Posts: 1 << 30, Bytes: 1 << 40}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	info, err := brokertest.Raw(b, r.Addr).Do(ctx, brokertest.Raw(b, r.Addr).B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if !strings.HasPrefix(l, "cmdstat_evalsha:") {
			continue
		}
		for _, f := range strings.Split(strings.TrimSpace(strings.TrimPrefix(l, "cmdstat_evalsha:")), ",") {
			if v, ok := strings.CutPrefix(f, "usec_per_call="); ok {
				us, _ := strconv.ParseFloat(v, 64)
				b.ReportMetric(us*1000, "redis-ns/script")
			}
		}
	}
}
