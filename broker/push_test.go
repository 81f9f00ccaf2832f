package broker_test

import (
	"context"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// TestPushScripts runs the push scripts on every deployment, the cluster
// included: a script that mixed slots would fail there with CROSSSLOT.
func TestPushScripts(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, be brokertest.Backend) {
		testPushScripts(t, brokertest.Open(t, be.Options))
	})
	t.Run("sentinel", func(t *testing.T) {
		s := brokertest.StartSentinel(t, 1)
		testPushScripts(t, brokertest.Open(t, broker.Options{Sentinels: []string{s.Addr}, MasterName: s.Name,
			Prefix: brokertest.Prefix()}))
	})
}

func testPushScripts(t *testing.T, c *broker.Client) {
	ctx := context.Background()
	const day = int64(86400000)

	// The device limit: new devices past it are refused, a known one
	// is replaced.
	for i, id := range []string{"w:1", "w:2"} {
		ok, err := c.AddPushDevice(ctx, "7", id, `{"k":"w"}`, 2, day)
		if err != nil || !ok {
			t.Fatalf("device %d: %v %v", i, ok, err)
		}
	}
	if ok, err := c.AddPushDevice(ctx, "7", "w:3", `{}`, 2, day); err != nil || ok {
		t.Fatalf("third device: ok %v, err %v; want refused", ok, err)
	}
	if ok, err := c.AddPushDevice(ctx, "7", "w:2", `{"k":"w","e":"x"}`, 2, day); err != nil || !ok {
		t.Fatalf("replacing a device: ok %v, err %v", ok, err)
	}
	if err := c.RemovePushDevicesWithPrefix(ctx, "7", "w:"); err != nil {
		t.Fatal(err)
	}
	if d, err := c.PushDevices(ctx, "7"); err != nil || len(d) != 0 {
		t.Fatalf("after removing the kind: %v %v", d, err)
	}

	// A message is counted by the store script (the recipient has a
	// device) and entered by EnterPush, as chat does (OnStored).
	to, err := c.CreateUser(ctx, "d", 1000)
	if err != nil {
		t.Fatal(err)
	}
	opt := broker.StoreOptions{Cap: 100, TTLms: day, From: "1", Push: true}
	store := func() int64 {
		t.Helper()
		st, err := c.Store(ctx, to, []byte(`"from":"1","msg":"x"`), 1000, opt, false)
		if err != nil {
			t.Fatal(err)
		}
		return st.Push
	}
	// No device: nothing is counted.
	if n := store(); n != 0 {
		t.Fatalf("counted without a device: %d", n)
	}
	if _, err := c.AddPushDevice(ctx, to, "f:1", `{"k":"f","t":"x"}`, 10, day); err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 3; i++ {
		n := store()
		if n != i {
			t.Fatalf("message %d counted %d", i, n)
		}
		if err := c.EnterPush(ctx, to, "1", n, 999+i, `{"nick":"n`+string(rune('0'+i))+`"}`); err != nil {
			t.Fatalf("enter %d: %v", i, err)
		}
	}
	ps, waiting, err := c.ClaimPushes(ctx, 999, 5000, 10)
	if err != nil || len(ps) != 0 || waiting != 1 {
		t.Fatalf("claim before due: %v, waiting %d, %v", ps, waiting, err)
	}
	// Due at the first message's time, showing the latest.
	ps, _, err = c.ClaimPushes(ctx, 1000, 5000, 10)
	if err != nil || len(ps) != 1 || ps[0].To != to || ps[0].From != "1" || ps[0].Data != `{"nick":"n3"}` {
		t.Fatalf("claim when due: %+v %v", ps, err)
	}
	if n, devs, err := c.LoadPush(ctx, to, "1"); err != nil || n != 3 || len(devs) != 1 {
		t.Fatalf("load: %d %v %v", n, devs, err)
	}
	// Leased: no other claim gets it until the lease ends.
	if ps2, _, _ := c.ClaimPushes(ctx, 4999, 9000, 10); len(ps2) != 0 {
		t.Fatalf("claimed twice while leased: %+v", ps2)
	}
	ps2, _, err := c.ClaimPushes(ctx, 5000, 9000, 10)
	if err != nil || len(ps2) != 1 {
		t.Fatalf("not taken again after the lease: %+v %v", ps2, err)
	}
	if err := c.DonePush(ctx, ps2[0]); err != nil {
		t.Fatal(err)
	}
	if ps3, waiting, _ := c.ClaimPushes(ctx, 99999, 199999, 10); len(ps3) != 0 || waiting != 0 {
		t.Fatalf("after done: %+v, waiting %d", ps3, waiting)
	}

	// Cancelling a due notification when its messages are written live
	// is the fetch and remove scripts' part: TestPushInChatScripts.

	// The VAPID pair: the first stored wins.
	a, err := c.VAPIDKeys(ctx, "a.b")
	if err != nil || a != "a.b" {
		t.Fatalf("vapid: %q %v", a, err)
	}
	if b, _ := c.VAPIDKeys(ctx, "c.d"); b != "a.b" {
		t.Fatalf("vapid replaced: %q", b)
	}
}

// TestPushShardsSpread checks that recipients spread over the shards.
func TestPushShardsSpread(t *testing.T) {
	seen := map[int]bool{}
	for i := 1; i <= 1000; i++ {
		seen[broker.PushShard(itoa(i))] = true
	}
	if len(seen) != broker.PushShards {
		t.Fatalf("1000 users fill %d of %d shards", len(seen), broker.PushShards)
	}
}

func itoa(i int) string {
	b := []byte{}
	for i > 0 {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
	}
	return string(b)
}

// TestPushInChatScripts: the store script counts a message for push only
// when asked and the recipient has a device, and says so; the fetch and
// remove scripts clear the written senders' counts and their due entries
// are cancelled.
func TestPushInChatScripts(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, be.Options)
		const day = int64(86400000)
		users := make([]string, 2)
		for i := range users {
			id, err := c.CreateUser(ctx, "d", 1000)
			if err != nil {
				t.Fatal(err)
			}
			users[i] = id
		}
		opt := broker.StoreOptions{Cap: 100, TTLms: day, From: "5", Push: true}
		store := func(to string, o broker.StoreOptions) broker.Stored {
			t.Helper()
			st, err := c.Store(ctx, to, []byte(`"from":"`+o.From+`","msg":"x"`), 2000, o, false)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		if st := store(users[0], opt); st.Push != 0 {
			t.Fatalf("counted for a user without a device: %+v", st)
		}
		for _, u := range users {
			if _, err := c.AddPushDevice(ctx, u, "f:1", `{}`, 10, day); err != nil {
				t.Fatal(err)
			}
		}
		off := opt
		off.Push = false
		if st := store(users[0], off); st.Push != 0 {
			t.Fatalf("counted without Push: %+v", st)
		}
		for i, u := range users {
			for k := int64(1); k <= 2; k++ {
				if st := store(u, opt); st.Push != k {
					t.Fatalf("user %d message %d: %+v, want count %d", i, k, st, k)
				}
			}
			if err := c.EnterPush(ctx, u, "5", 1, 9000, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, waiting, _ := c.ClaimPushes(ctx, 0, 0, 0); waiting != 2 {
			t.Fatalf("%d due, want 2", waiting)
		}
		// users[0]: written through a fetch (all four elements).
		f, err := c.Fetch(ctx, users[0], 0, "", 10)
		if err != nil || len(f.Msgs) != 4 {
			t.Fatalf("fetch: %+v %v", f, err)
		}
		if _, err := c.Fetch(ctx, users[0], 4, f.Msgs[3], 0); err != nil {
			t.Fatal(err)
		}
		// users[1]: written through the remover.
		msgs, _ := c.FetchMessages(ctx, users[1], 0, "", 10)
		if removed, err := c.RemoveHeads(ctx, []broker.Head{{User: users[1], Count: len(msgs), Last: msgs[len(msgs)-1]}}); err != nil || !removed[0] {
			t.Fatalf("remove: %v %v", removed, err)
		}
		for i, u := range users {
			if n, _, err := c.LoadPush(ctx, u, "5"); err != nil || n != 0 {
				t.Fatalf("user %d: count %d after the write (%v), want 0", i, n, err)
			}
		}
		if _, waiting, _ := c.ClaimPushes(ctx, 0, 0, 0); waiting != 0 {
			t.Fatalf("%d due after the writes, want 0", waiting)
		}
	})
}
