package posts

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Accounts without a creation time ('made': made before this version,
// or by a node of an older version during a rolling upgrade) count as
// made when the first node of this version met the store, not as old
// for ever: an attacker who registered a brigade on an older node just
// before the upgrade (or on one still running during it) got accounts
// that counted at once as soon as --auto-hide-reports was set. They count
// --auto-hide-min-age after that first meeting.
func TestHideLegacyAccountsAgeFromUpgrade(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, ReportMinAge: 7 * 24 * time.Hour})
		var legacy []string
		for i := 0; i < 3; i++ {
			id := fmt.Sprint(990001 + i)
			if err := n.b.RawHSet(ctx, id, "pwd", "digest"); err != nil {
				t.Fatal(err)
			}
			legacy = append(legacy, id)
		}
		author, err := n.b.CreateUser(ctx, "digest", clk.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		p := n.publish(t, newConn(author), publishFrame("[0,1,2]", "[0,3,7]", 1, "10"))
		bounds := broker.ReportBounds{HideAt: 3}
		report := func(by string) ReportDone {
			t.Helper()
			done, err := n.Report(ctx, newConn(by), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"scam"}`, p)), bounds)
			if err != nil {
				t.Fatal(err)
			}
			return done
		}
		for _, by := range legacy {
			if d := report(by); d.Hidden {
				t.Fatal("three accounts without 'made' hid a post the day the node met the store")
			}
		}
		// A second node started later agrees on when that was.
		clk.Add(6 * 24 * time.Hour)
		late := startNode(t, b.Options, Config{Clock: clk.Now, ReportMinAge: 7 * 24 * time.Hour})
		if d, err := late.Report(ctx, newConn(legacy[0]), req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"spam"}`, p)), bounds); err != nil || d.Hidden {
			t.Fatalf("six days on, from a node started then: %+v %v", d, err)
		}
		clk.Add(24 * time.Hour)
		for i, by := range legacy {
			if d := report(by); d.Hidden != (i == 2) {
				t.Fatalf("seven days on, report %d: %+v", i+1, d)
			}
		}
	})
}
