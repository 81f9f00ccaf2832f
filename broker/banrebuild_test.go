package broker_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

// Bans made the old way (the ban script of before the list: the hash's
// fields ban and bnote, no list entry) are put on the list by
// RebuildBanList, with their time and note, on a real redis-server, the
// embedded server and a Redis Cluster (every master scanned); a ban
// already listed stays as it is; a second rebuild adds nothing.
func TestRebuildBanList(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		raw := brokertest.Raw(t, b.Options.Addrs...)
		// Enough users that a cluster spreads them over its masters.
		const n = 30
		users := make([]string, n)
		for i := range users {
			var err error
			if users[i], err = c.CreateUser(ctx, "d", 1000); err != nil {
				t.Fatal(err)
			}
		}
		// users[0] banned the new way, listed; every third other one the
		// old way (the fields only, as the old ban script set them).
		if _, err := c.BanUser(ctx, users[0], 5000, "listed"); err != nil {
			t.Fatal(err)
		}
		old := map[string]int64{}
		for i := 3; i < n; i += 3 {
			at := int64(1000 + i)
			key := b.Options.Prefix + "u:{" + users[i] + "}"
			if err := raw.Do(ctx, raw.B().Hset().Key(key).FieldValue().FieldValue("ban", strconv.FormatInt(at, 10)).
				FieldValue("bnote", "old "+users[i]).Build()).Error(); err != nil {
				t.Fatal(err)
			}
			old[users[i]] = at
		}
		// A key of the same shape that is no account's hash is passed over.
		if err := raw.Do(ctx, raw.B().Set().Key(b.Options.Prefix+"u:{notahash}").Value("x").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if _, _, total, _ := c.Bans(ctx, 0, 100); total != 1 {
			t.Fatalf("before: %d listed, want 1", total)
		}
		r, err := c.RebuildBanList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Scanned != n || r.Banned != len(old)+1 || r.Added != len(old) || r.Listed != 1 || r.Dropped != 0 {
			t.Fatalf("rebuild: %+v, want scanned %d banned %d added %d listed 1", r, n, len(old)+1, len(old))
		}
		l, _, total, err := c.Bans(ctx, 0, 100)
		if err != nil || total != len(old)+1 || len(l) != total {
			t.Fatalf("after: %d listed (%v), want %d", total, err, len(old)+1)
		}
		if l[0].User != users[0] || l[0].At != 5000 || l[0].Note != "listed" {
			t.Fatalf("the ban listed before: %+v", l[0])
		}
		for i, e := range l[1:] {
			if want := users[n-1-(n-1)%3-3*i]; e.User != want || e.At != old[want] || e.Note != "old "+want || e.Listed != e.At {
				t.Fatalf("entry %d: %+v, want user %s at %d", i+1, e, want, old[want])
			}
		}
		r, err = c.RebuildBanList(ctx)
		if err != nil || r.Added != 0 || r.Listed != len(old)+1 || r.Banned != len(old)+1 {
			t.Fatalf("second rebuild: %+v %v, want nothing added", r, err)
		}
	})
}
