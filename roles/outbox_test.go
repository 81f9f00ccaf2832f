package roles

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// After a failed write, every frame still queued is handed back by stop:
// persistent ones returned for the offline queue, and every done callback
// called exactly once.
func TestOutboxHandsBackWhatAFailedWriteLeft(t *testing.T) {
	var mu sync.Mutex
	block := make(chan struct{})
	writes := 0
	o := newOutbox(func(b []byte) error {
		mu.Lock()
		writes++
		n := writes
		mu.Unlock()
		if n == 1 {
			<-block // hold the writer while the rest queue up
			return errors.New("peer gone")
		}
		return nil
	}, func() {}, 100, 1<<20)

	var dones sync.WaitGroup
	results := make([]error, 5)
	for i := range 5 {
		kind := transient
		if i%2 == 1 {
			kind = persistent
		}
		dones.Add(1)
		if !o.push(item{data: []byte{byte('a' + i)}, kind: kind, done: func(err error) {
			results[i] = err
			dones.Done()
		}}) {
			t.Fatalf("push %d refused", i)
		}
	}
	close(block)
	kept := o.stop()
	all := make(chan struct{})
	go func() { dones.Wait(); close(all) }()
	select {
	case <-all: // every callback, once
	case <-time.After(5 * time.Second):
		t.Fatal("frames queued behind a failed write were dropped: their done callbacks never ran")
	}
	if len(kept) != 2 || string(kept[0]) != "b" || string(kept[1]) != "d" {
		t.Fatalf("persistent frames handed back: %q, want [b d]", kept)
	}
	for i, err := range results {
		if err == nil {
			t.Fatalf("frame %d reported written", i)
		}
	}
	if o.push(item{data: []byte("late")}) {
		t.Fatal("a stopped outbox took a frame")
	}
}
