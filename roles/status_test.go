package roles

import "testing"

// The lifecycle only moves forward, and leaving is entered once.
func TestStatusMoves(t *testing.T) {
	all := []status{statusConnecting, statusAnonymous, statusActive, statusLeaving, statusClosed}
	allowed := map[[2]status]bool{
		{statusConnecting, statusAnonymous}: true,
		{statusAnonymous, statusActive}:     true,
		{statusConnecting, statusLeaving}:   true,
		{statusAnonymous, statusLeaving}:    true,
		{statusActive, statusLeaving}:       true,
		{statusLeaving, statusClosed}:       true,
	}
	for _, from := range all {
		for _, to := range all {
			if got, want := from.next(to), allowed[[2]status{from, to}]; got != want {
				t.Errorf("%s -> %s allowed = %v, want %v", from, to, got, want)
			}
		}
	}
	ss := &session{leave: make(chan struct{})}
	for _, step := range []struct {
		to   status
		want bool
	}{
		{statusActive, false}, {statusAnonymous, true}, {statusActive, true}, {statusAnonymous, false},
		{statusLeaving, true}, {statusLeaving, false}, {statusActive, false}, {statusClosed, true},
	} {
		if got := ss.setStatus(step.to); got != step.want {
			t.Fatalf("setStatus(%s) from %s = %v, want %v", step.to, ss.status(), got, step.want)
		}
	}
	select {
	case <-ss.leave:
	default:
		t.Fatal("leaving did not close ss.leave")
	}
}
