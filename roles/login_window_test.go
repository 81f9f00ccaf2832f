package roles

import (
	"context"
	"sync"
	"testing"

	"github.com/occase/occase/presence"
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
	// A node's answer names the kick (r-<gen>): only the login's own
	// counts, not an answer to an older or a newer kick.
	ss.Released(-5)
	ss.Released(-7)
	ss.Released(-6)
	if len(releases) != 3 {
		t.Fatalf("%d releases counted, want 3 (only the answer to kick 6 of the answers to 5, 6, 7)", len(releases))
	}
	for _, c := range []struct {
		r, g int64
		want bool
	}{{-6, 6, true}, {-5, 6, false}, {-7, 6, false}, {0, 6, true}, {5, 6, true}, {6, 6, false}} {
		if got := releaseCounts(c.r, c.g); got != c.want {
			t.Errorf("releaseCounts(%d, %d) = %v, want %v", c.r, c.g, got, c.want)
		}
	}
	o.drain(context.Background())
	o.stop()
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("%d presence frames written, want only the one after the password passed", len(sent))
	}
}

// What a session tells the hub about a kick (presence.Answer): a login not
// checked yet owes an answer (the node's release waits for its detach or
// its generation), a failed one and a newer session owe none, and a
// session of the kick's own generation is the login that sent it.
func TestKickAnswers(t *testing.T) {
	ss := &session{leave: make(chan struct{})}
	if a := ss.Kick(5); a != presence.Owes {
		t.Fatalf("pending login: %v, want Owes", a)
	}
	ss.gen.Store(5)
	if a := ss.Kick(5); a != presence.Own {
		t.Fatalf("own kick: %v, want Own", a)
	}
	if a := ss.Kick(4); a != presence.Clear {
		t.Fatalf("older kick: %v, want Clear", a)
	}
	failed := &session{leave: make(chan struct{})}
	failed.loginFailed.Store(true)
	if a := failed.Kick(9); a != presence.Clear {
		t.Fatalf("failed login: %v, want Clear", a)
	}
}
