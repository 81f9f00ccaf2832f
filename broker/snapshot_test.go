package broker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// The embedded server's data survives a Close and an Open on the same
// snapshot file: every type occase stores, with time to live.
func TestEmbeddedSnapshotRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "embedded.json")
	opt := Options{Addrs: []string{Embedded}, SnapshotPath: path, SnapshotEvery: time.Hour}
	ctx := context.Background()
	c, err := Open(ctx, opt, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cmds := [][]string{
		{"SET", "s", "v\x01é"},
		{"PEXPIRE", "s", "600000"},
		{"HSET", "h", "a", "1", "b", "2"},
		{"RPUSH", "l", "x", "y", "z"},
		{"SADD", "set", "m1", "m2"},
		{"ZADD", "z", "1733333333", "p1", "2.5", "p2"},
	}
	for _, cmd := range cmds {
		if err := c.rc.Do(ctx, c.rc.B().Arbitrary(cmd...).Build()).Error(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	epoch, _, err := c.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close() // idempotent
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no snapshot written at Close: %v", err)
	}

	c2, err := Open(ctx, opt, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got, err := c2.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(body(t, got), body(t, want)) {
		t.Fatalf("after a restart:\n got %s\nwant %s", got, want)
	}
	if e, created, _ := c2.Epoch(ctx); e != epoch || created {
		t.Fatalf("epoch %q (created %v) after a restart, want %q kept", e, created, epoch)
	}
}

func body(t *testing.T, b []byte) map[string]snapshotKey {
	t.Helper()
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	m := map[string]snapshotKey{}
	for _, k := range f.Keys {
		if k.Type == "set" {
			slices.Sort(k.Vals)
		}
		m[k.Key] = k
	}
	return m
}
