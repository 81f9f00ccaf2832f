package broker_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Many sessions subscribing and unsubscribing at once: each Subscribe
// returns with its channel live (a publish right after reaches it), each
// last Unsubscribe removes it, and a channel subscribed, unsubscribed and
// subscribed again by racing sessions ends subscribed exactly when a
// reference is left. On a cluster the channels are sharded over the
// masters and slots.
func TestBatchedSubscriptions(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		const n = 150
		ch := func(i int) string { return c.UserChannel("b" + strconv.Itoa(i)) }
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Subscribe(ctx, ch(i)); err != nil {
					t.Error(err)
					return
				}
				if k, err := c.Publish(ctx, ch(i), "x"); k != 1 || err != nil {
					t.Errorf("publish right after subscribe %d reached %d (%v), want 1", i, k, err)
				}
			}()
		}
		wg.Wait()
		// Churn on a few channels: each goroutine takes and drops a
		// reference many times; the even ones keep one at the end.
		const hot = 4
		for g := 0; g < 4*hot; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 20; k++ {
					if err := c.Subscribe(ctx, ch(n+g%hot)); err != nil {
						t.Error(err)
						return
					}
					c.Unsubscribe(ctx, ch(n+g%hot))
				}
				if g%hot%2 == 0 {
					if err := c.Subscribe(ctx, ch(n+g%hot)); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Unsubscribe(ctx, ch(i))
			}()
		}
		wg.Wait()
		// An unsubscribe is answered once Redis has it; the notifications
		// of a cluster may lag a little behind on other masters.
		for i := 0; i < n+hot; i++ {
			want := int64(0)
			if i >= n && (i-n)%2 == 0 {
				want = 1
			}
			brokertest.Poll(t, 5*time.Second, "channel "+strconv.Itoa(i), func() bool {
				k, err := c.Publish(ctx, ch(i), "y")
				return err == nil && k == want
			})
		}
	})
}

// The subscribes of sessions that ask at the same time share SUBSCRIBE
// commands, and their unsubscribes share UNSUBSCRIBE commands (each
// followed by one PING of rueidis').
func TestSubscribesShareCommands(t *testing.T) {
	r := brokertest.StartRedis(t)
	c := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: 5 * time.Second})
	ctx := context.Background()
	r.CLI(t, "CONFIG", "RESETSTAT")
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Subscribe(ctx, c.UserChannel("s"+strconv.Itoa(i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Unsubscribe(ctx, c.UserChannel("s"+strconv.Itoa(i)))
		}()
	}
	wg.Wait()
	stats := r.CLI(t, "INFO", "commandstats")
	for _, cmd := range []string{"subscribe", "unsubscribe", "ping"} {
		if k := calls(stats, cmd); k < 1 || k >= n {
			t.Errorf("%d %s calls for %d sessions, want at least 1 and fewer than one each\n%s", k, cmd, n, stats)
		}
	}
}

func calls(stats, cmd string) int {
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			k, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return k
		}
	}
	return 0
}

// A Subscribe whose caller gave up before Redis answered fails and takes
// no reference; the SUBSCRIBE it queued must not leave the channel
// subscribed with nothing wanting it (a stale subscription that only a
// reconnect would drop).
func TestAbandonedSubscribeLeavesNoSubscription(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		ch := c.UserChannel("abandoned")
		other := c.UserChannel("other")
		if err := c.Subscribe(ctx, other); err != nil { // the subscriber connection is up
			t.Fatal(err)
		}
		gone, cancel := context.WithCancel(ctx)
		cancel()
		if err := c.Subscribe(gone, ch); err == nil {
			t.Skip("the subscribe was answered before its caller gave up")
		}
		// Operations of the subscriber connection go in order: once a
		// later one is answered, the abandoned one was sent.
		c.Unsubscribe(ctx, other)
		if err := c.Subscribe(ctx, other); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Publish(ctx, ch, "x"); err != nil || n != 0 {
			t.Fatalf("publish on the abandoned channel reached %d subscribers (%v), want 0", n, err)
		}
	})
}
