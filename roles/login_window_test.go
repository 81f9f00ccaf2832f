package roles

import (
	"context"
	"sync"
	"testing"
)

// A login's session is attached to the user's channel before its script
// checks the password (accounts.go). In that window it forwards no
// presence (a wrong password must not overhear the user), keeps the
// newest kick for the login to weigh once it knows its generation, and
// counts every release toward those it may wait for.
func TestLoginWindowBeforeTheGeneration(t *testing.T) {
	var mu sync.Mutex
	var sent [][]byte
	o := newOutbox(func(frames [][]byte) error {
		mu.Lock()
		sent = append(sent, frames...)
		mu.Unlock()
		return nil
	}, func() {}, 100, 1<<20, 64, 0)
	ss := &session{out: o, leave: make(chan struct{})}
	releases := make(chan int64, 8)
	ss.releases.Store(&releases)

	ss.Signal([]byte(`{"cmd":"presence","from":"9"}`))
	ss.Kick(7)
	ss.Kick(5) // an older kick does not lower the newest
	ss.Released(3)
	if k := ss.kickedBy.Load(); k != 7 {
		t.Fatalf("kickedBy = %d, want 7", k)
	}
	if len(releases) != 1 {
		t.Fatalf("%d releases counted before the generation, want 1", len(releases))
	}
	// Once the generation is known: presence flows, older releases count,
	// newer ones do not.
	ss.gen.Store(6)
	ss.Signal([]byte(`{"cmd":"presence","from":"9"}`))
	ss.Released(6)
	ss.Released(2)
	if len(releases) != 2 {
		t.Fatalf("%d releases counted, want 2 (gen 6 is not older than 6)", len(releases))
	}
	o.drain(context.Background())
	o.stop()
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("%d presence frames written, want only the one after the password passed", len(sent))
	}
}
