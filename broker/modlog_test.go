package broker_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// The moderation log keeps its newest MaxModLog entries, newest first:
// 10,050 appends leave 10,000, the first being the last written and the
// last the 51st. On Redis and on the embedded server.
func TestModLogBound(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		const n = broker.MaxModLog + 50
		for i := range n {
			if err := b.AppendModLog(ctx, []byte(`{"i":`+strconv.Itoa(i)+`}`)); err != nil {
				t.Fatal(err)
			}
		}
		first, total, err := b.ModLog(ctx, 0, 2)
		if err != nil || total != broker.MaxModLog {
			t.Fatalf("length %d (%v), want %d", total, err, broker.MaxModLog)
		}
		if first[0] != `{"i":10049}` || first[1] != `{"i":10048}` {
			t.Fatalf("newest first: got %q", first)
		}
		last, _, err := b.ModLog(ctx, broker.MaxModLog-1, 5)
		if err != nil || len(last) != 1 || last[0] != `{"i":50}` {
			t.Fatalf("the oldest kept: got %q %v, want the 51st written", last, err)
		}
		if past, _, err := b.ModLog(ctx, broker.MaxModLog, 5); err != nil || len(past) != 0 {
			t.Fatalf("past the end: %q %v", past, err)
		}
	})
}
