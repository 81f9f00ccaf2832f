package roles

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	o := newOutbox(func([][]byte) error {
		mu.Lock()
		writes++
		n := writes
		mu.Unlock()
		if n == 1 {
			<-block // hold the writer while the rest queue up
			return errors.New("peer gone")
		}
		return nil
	}, func() {}, 100, 1<<20, 64, 0)

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

// Whatever queued while a write was in progress leaves as one batch, in
// order, within the batch limits.
func TestOutboxWritesWhatQueuedAsOneBatch(t *testing.T) {
	const maxBatch = 16
	var mu sync.Mutex
	var batches [][]string
	first := make(chan struct{})
	release := make(chan struct{})
	o := newOutbox(func(frames [][]byte) error {
		mu.Lock()
		var b []string
		for _, f := range frames {
			b = append(b, string(f))
		}
		batches = append(batches, b)
		n := len(batches)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-release
		}
		return nil
	}, func() {}, 1000, 1<<20, maxBatch, 0)

	if !o.push(item{data: []byte("f0")}) {
		t.Fatal("push refused")
	}
	<-first // the writer holds f0; the rest queue behind it
	written := 0
	const total = 1 + maxBatch + 10
	for i := 1; i < total; i++ {
		if !o.push(item{data: []byte(fmt.Sprintf("f%d", i)), done: func(err error) {
			if err != nil {
				t.Errorf("done: %v", err)
			}
			mu.Lock()
			written++
			mu.Unlock()
		}}) {
			t.Fatalf("push %d refused", i)
		}
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.drain(ctx)
	o.stop()

	mu.Lock()
	defer mu.Unlock()
	if written != total-1 {
		t.Fatalf("%d done callbacks, want %d", written, total-1)
	}
	want := []int{1, maxBatch, 10}
	if len(batches) != len(want) {
		t.Fatalf("%d batches, want %d: %v", len(batches), len(want), batches)
	}
	next := 0
	for i, b := range batches {
		if len(b) != want[i] {
			t.Fatalf("batch %d has %d frames, want %d", i, len(b), want[i])
		}
		for _, f := range b {
			if f != fmt.Sprintf("f%d", next) {
				t.Fatalf("batch %d: frame %q, want f%d", i, f, next)
			}
			next++
		}
	}
}

// With a write delay, the live posts that arrive while the first one waits
// share its write; a frame that must not wait (chat, a reply) ends the wait
// at once and takes the waiting ones along; stop does not wait it out.
func TestOutboxWriteDelay(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	wrote := make(chan struct{}, 10)
	newBox := func(delay time.Duration) *outbox {
		return newOutbox(func(frames [][]byte) error {
			var b []string
			for _, f := range frames {
				b = append(b, string(f))
			}
			mu.Lock()
			batches = append(batches, b)
			mu.Unlock()
			wrote <- struct{}{}
			return nil
		}, func() {}, 100, 1<<20, 64, delay)
	}
	reset := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, b := range batches {
			got = append(got, strings.Join(b, ""))
		}
		batches = nil
		return got
	}
	live := func(o *outbox, s string) {
		if !o.push(item{data: []byte(s), deferrable: true}) {
			t.Fatalf("push %s refused", s)
		}
	}

	// Live posts gather for the delay, then leave together. (The grid
	// pinned to now: the first wait is then the whole delay.)
	o := newBox(200 * time.Millisecond)
	o.grid = time.Now()
	o.lastWrite = time.Now() // not a quiet connection: posts wait
	for _, s := range []string{"a", "b", "c"} {
		live(o, s)
	}
	<-wrote
	if got := reset(); len(got) != 1 || got[0] != "abc" {
		t.Fatalf("writes %q, want one write of abc", got)
	}
	o.stop()

	// A chat frame ends the wait: it does not sit behind an hour's delay.
	o = newBox(time.Hour)
	o.lastWrite = time.Now()
	live(o, "p")
	if !o.push(item{data: []byte("m")}) {
		t.Fatal("push refused")
	}
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("a frame that must not wait waited")
	}
	if got := reset(); len(got) != 1 || got[0] != "pm" {
		t.Fatalf("writes %q, want one write of pm", got)
	}
	o.stop()

	// A quiet connection (nothing written within the delay) writes a live
	// post at once: there is no company to wait for.
	o = newBox(time.Hour)
	live(o, "r")
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("a post to a quiet connection waited")
	}
	if got := reset(); len(got) != 1 || got[0] != "r" {
		t.Fatalf("writes %q, want one write of r", got)
	}
	o.stop()

	// stop ends the wait too (and the waiting post is dropped: transient).
	o = newBox(time.Hour)
	o.lastWrite = time.Now()
	live(o, "q")
	done := make(chan struct{})
	go func() { o.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop waited out the write delay")
	}
}

// A waiting writer waits until its outbox's next flush time: never longer
// than the delay, and at different times for different connections, so
// that the connections one post reaches do not all write at once.
func TestOutboxFirstWaitSpread(t *testing.T) {
	const delay = time.Second
	slots := map[time.Duration]bool{}
	for range 100 {
		o := newOutbox(func([][]byte) error { return nil }, func() {}, 10, 1<<10, 8, delay)
		w := o.firstWait()
		if w <= 0 || w > delay {
			t.Fatalf("first wait %v, want in (0, %v]", w, delay)
		}
		off := flushEpoch.Sub(o.grid)
		if off < 0 || off >= delay || off%(delay/flushSlots) != 0 {
			t.Fatalf("flush grid %v before the epoch, want one of %d slots of %v", off, flushSlots, delay)
		}
		slots[off] = true
	}
	if len(slots) != flushSlots {
		t.Fatalf("100 connections use %d of the %d flush slots", len(slots), flushSlots)
	}
}

// A ping on an idle outbox is written at once on the caller's goroutine;
// one asked for while a write is in progress goes first in the next
// batch; a stopped outbox takes none.
func TestOutboxPing(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	hold := make(chan struct{})
	held := make(chan struct{})
	o := newOutbox(func(frames [][]byte) error {
		var b []string
		for _, f := range frames {
			if isPing(f) {
				b = append(b, "PING")
			} else {
				b = append(b, string(f))
			}
		}
		mu.Lock()
		batches = append(batches, b)
		first := len(batches) == 2
		mu.Unlock()
		if first {
			close(held)
			<-hold
		}
		return nil
	}, func() {}, 100, 1<<20, 64, 0)

	if !o.ping() {
		t.Fatal("ping refused")
	}
	mu.Lock()
	if len(batches) != 1 || fmt.Sprint(batches[0]) != "[PING]" {
		t.Fatalf("after ping on an idle outbox: %v, want [[PING]] written before ping returned", batches)
	}
	mu.Unlock()

	o.push(item{data: []byte("a")})
	<-held // the writer is in its write of "a"
	o.push(item{data: []byte("b")})
	o.ping()
	o.ping() // at most one waits
	close(hold)
	o.drain(context.Background())
	mu.Lock()
	got := fmt.Sprint(batches)
	mu.Unlock()
	if want := "[[PING] [a] [PING b]]"; got != want {
		t.Fatalf("batches %s, want %s", got, want)
	}
	o.stop()
	if o.ping() {
		t.Fatal("a stopped outbox took a ping")
	}
}

// The first ping of a connection falls in the second half of the
// interval, so that connections made together do not ping together.
func TestFirstPingIsSpread(t *testing.T) {
	now := time.Now()
	const iv = 20 * time.Second
	seen := map[bool]bool{}
	for range 1000 {
		d := firstPing(now, iv).Sub(now)
		if d < iv/2 || d > iv {
			t.Fatalf("first ping after %v, want within [%v, %v]", d, iv/2, iv)
		}
		seen[d < 3*iv/4] = true
	}
	if len(seen) != 2 {
		t.Fatal("first pings are not spread over the half interval")
	}
}
