package broker

import (
	"testing"
	"time"
)

// TestBackoffDoubles: the delays double from First up to Max, Reset starts
// over, and a closed stop ends a wait at once.
func TestBackoffDoubles(t *testing.T) {
	b := Backoff{First: time.Millisecond, Max: 4 * time.Millisecond}
	var got []time.Duration
	for range 4 {
		if !b.Wait(nil) {
			t.Fatal("wait ended without stop")
		}
		got = append(got, b.next)
	}
	want := []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("next delays %v, want %v", got, want)
		}
	}
	b.Reset()
	if b.Wait(nil); b.next != 2*time.Millisecond {
		t.Fatalf("after Reset the next delay is %v, want 2ms", b.next)
	}
	stop := make(chan struct{})
	close(stop)
	long := Backoff{First: time.Hour}
	if long.Wait(stop) {
		t.Fatal("Wait ignored a closed stop")
	}
}
