package chat_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

// gatedWriter records frames; completions wait until open is closed, and
// every write from failAt on fails.
type gatedWriter struct {
	mu     sync.Mutex
	frames []string
	failAt int
	open   chan struct{}
	wrote  chan struct{}
	queue  chan func()
}

func newGatedWriter(failAt int, open chan struct{}) *gatedWriter {
	w := &gatedWriter{failAt: failAt, open: open, wrote: make(chan struct{}, 256), queue: make(chan func(), 256)}
	go func() {
		<-w.open
		for f := range w.queue {
			f()
		}
	}()
	return w
}

func (w *gatedWriter) SendTracked(frame []byte, done func(error)) bool {
	w.mu.Lock()
	var err error
	if w.failAt > 0 && len(w.frames) >= w.failAt {
		err = fmt.Errorf("connection broke")
	} else {
		w.frames = append(w.frames, string(frame))
	}
	w.mu.Unlock()
	w.queue <- func() {
		done(err)
		w.wrote <- struct{}{}
	}
	return true
}

func (w *gatedWriter) written() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.frames...)
}

// carryRig is a user with a mailbox that hears its channel the way a
// node does: carried messages go to Carry, anything else pokes.
type carryRig struct {
	bc      *broker.Client
	s       *chat.Service
	id      string
	mb      *chat.Mailbox
	carries atomic.Int64
}

func newCarryRig(t *testing.T, b brokertest.Backend, w chat.Writer, batch int, held ...bool) *carryRig {
	return newCarryRigConfig(t, b, w, chat.Config{Batch: batch}, held...)
}

func newCarryRigConfig(t *testing.T, b brokertest.Backend, w chat.Writer, cfg chat.Config, held ...bool) *carryRig {
	ctx := context.Background()
	r := &carryRig{bc: brokertest.Open(t, b.Options)}
	r.s = chat.New(cfg, r.bc, zaptest.NewLogger(t))
	r.id, _ = r.bc.CreateUser(ctx, "d", time.Now().UnixMilli())
	r.mb = r.s.Mailbox(r.id, w)
	if len(held) > 0 && held[0] {
		r.mb = r.s.MailboxHeld(r.id, w)
	}
	r.bc.Handle("c:", func(ch, p string) {
		if p[0] == 'n' && len(p) > 1 {
			if prev, id, frame, ok := broker.ParseCarried(p[1:]); ok {
				r.mb.Carry(prev, id, frame)
				r.carries.Add(1)
				return
			}
		}
		r.mb.Poke()
	})
	if err := r.bc.Subscribe(ctx, r.bc.UserChannel(r.id)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.mb.Close(context.Background()) })
	return r
}

func (r *carryRig) send(t *testing.T, from string, n int, notify bool) {
	t.Helper()
	req, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q,"n":%d}`, r.id, n)))
	m, err := r.s.Prepare(from, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Store(context.Background(), m, notify); err != nil {
		t.Fatal(err)
	}
}

// waitEmpty waits until the user's queue and the sender's count are gone.
func (r *carryRig) waitEmpty(t *testing.T, from string) {
	t.Helper()
	brokertest.Poll(t, 5*time.Second, "the written messages removed", func() bool {
		n, _ := r.bc.QueueLen(context.Background(), r.id)
		k, _ := r.bc.QueuedFrom(context.Background(), r.id, from)
		return n == 0 && k == 0
	})
}

func waitWrites(t *testing.T, wrote chan struct{}, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-wrote:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d writes", i, n)
		}
	}
}

func checkOrder(t *testing.T, frames []string, from, to int) {
	t.Helper()
	if len(frames) != to-from {
		t.Fatalf("%d frames written, want %d: %v", len(frames), to-from, frames)
	}
	for i, f := range frames {
		if want := fmt.Sprintf(`"n":%d}`, from+i); !strings.HasSuffix(f, want) {
			t.Fatalf("frame %d = %s, want n %d", i, f, from+i)
		}
	}
}

// Messages carried by their store's publication are written without a
// fetch, and the written batch leaves Redis in one removal call, giving
// the sender's places back.
func TestMailboxCarriedBatch(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		open := make(chan struct{})
		w := newGatedWriter(0, open)
		r := newCarryRig(t, b, w, 64)
		r.mb.Poke() // the login's fetch: the queue is empty
		brokertest.Poll(t, 5*time.Second, "the first fetch", func() bool { return r.s.Stats().Fetches == 1 })
		// The first write is held, so the other nine gather meanwhile.
		const n = 10
		for i := 0; i < n; i++ {
			r.send(t, "7", i, true)
		}
		brokertest.Poll(t, 5*time.Second, "every message carried", func() bool { return r.carries.Load() == n })
		close(open)
		waitWrites(t, w.wrote, n)
		r.waitEmpty(t, "7")
		checkOrder(t, w.written(), 0, n)
		st := r.s.Stats()
		if st.Fetches != 1 || st.Carried != n || st.Removals != 1 {
			t.Fatalf("stats %+v: want 1 fetch (the login's), %d carried, and one removal for the batch", st, n)
		}
	})
}

// A message whose publication never arrived (stored without notify, as a
// requeue or a publication lost with a subscriber connection would leave
// it) shows up as a gap in the next carried message's chain: the mailbox
// fetches, and writes both in order. A bare Poke (what a re-subscription
// sends) fetches too.
func TestMailboxFetchesAcrossAGap(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		open := make(chan struct{})
		close(open)
		w := newGatedWriter(0, open)
		r := newCarryRig(t, b, w, 64)
		r.mb.Poke()
		r.send(t, "7", 0, true)
		waitWrites(t, w.wrote, 1)
		r.send(t, "7", 1, false) // lost
		r.send(t, "7", 2, true)
		waitWrites(t, w.wrote, 2)
		r.waitEmpty(t, "7")
		checkOrder(t, w.written(), 0, 3)
		if st := r.s.Stats(); st.Fetches < 2 {
			t.Fatalf("stats %+v: want a fetch for the gap", st)
		}
		// Lost with nothing after it: the re-subscription's poke finds it.
		r.send(t, "7", 3, false)
		r.mb.Poke()
		waitWrites(t, w.wrote, 1)
		r.waitEmpty(t, "7")
		checkOrder(t, w.written(), 0, 4)
	})
}

// A connection that ends after a carried message reached the mailbox but
// before it was written leaves it in Redis, counted against its sender,
// for the next login.
func TestMailboxCarriedButNotWrittenStays(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		open := make(chan struct{})
		close(open)
		w := newGatedWriter(1, open) // the first write succeeds, then the connection breaks
		r := newCarryRig(t, b, w, 64)
		r.mb.Poke()
		brokertest.Poll(t, 5*time.Second, "the first fetch", func() bool { return r.s.Stats().Fetches == 1 })
		r.send(t, "7", 0, true)
		waitWrites(t, w.wrote, 1)
		r.send(t, "7", 1, true)
		waitWrites(t, w.wrote, 1) // the failed write
		r.mb.Close(ctx)
		left, err := r.bc.FetchMessages(ctx, r.id, 0, "", 10)
		if err != nil || len(left) != 1 || !strings.HasSuffix(left[0], `"n":1}`) {
			t.Fatalf("queue %v (%v), want only the unwritten message", left, err)
		}
		if k, _ := r.bc.QueuedFrom(ctx, r.id, "7"); k != 1 {
			t.Fatalf("sender 7 holds %d places, want 1", k)
		}
		if st := r.s.Stats(); st.Carried != 2 {
			t.Fatalf("stats %+v: want both taken as carried", st)
		}
		// The next login's mailbox writes it.
		w2 := newGatedWriter(0, open)
		mb := r.s.Mailbox(r.id, w2)
		mb.Poke()
		waitWrites(t, w2.wrote, 1)
		mb.Close(ctx)
		checkOrder(t, w2.written(), 1, 2)
		if n, _ := r.bc.QueueLen(ctx, r.id); n != 0 {
			t.Fatalf("queue holds %d after the next login", n)
		}
	})
}

// The written heads of several users' queues leave Redis together: the
// node's remover gathers them into one call.
func TestRemovalsOfManyUsersShareACall(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		s := chat.New(chat.Config{RemoveDelay: 200 * time.Millisecond}, bc, zaptest.NewLogger(t))
		open := make(chan struct{})
		close(open)
		const users = 5
		var ws []*gatedWriter
		var ids []string
		for u := 0; u < users; u++ {
			id, _ := bc.CreateUser(ctx, "d", time.Now().UnixMilli())
			ids = append(ids, id)
			w := newGatedWriter(0, open)
			ws = append(ws, w)
			mb := s.Mailbox(id, w)
			defer mb.Close(ctx)
			req, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q,"n":0}`, id)))
			m, err := s.Prepare("7", req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Store(ctx, m, false); err != nil {
				t.Fatal(err)
			}
			mb.Poke()
		}
		for u := 0; u < users; u++ {
			waitWrites(t, ws[u].wrote, 1)
		}
		brokertest.Poll(t, 10*time.Second, "every written message removed", func() bool {
			for _, id := range ids {
				if n, _ := bc.QueueLen(ctx, id); n != 0 {
					return false
				}
			}
			return true
		})
		if st := s.Stats(); st.Removals != users || st.RemoveCalls >= users {
			t.Fatalf("stats %+v: want %d removals in fewer calls", st, users)
		}
	})
}

// A login makes its mailbox held before the script that reads the queue's
// head: messages carried to it meanwhile are not written before it
// starts; started with that read, it writes the queue and then what was
// stored after the read, each once and in order, without a fetch of its
// own.
func TestMailboxHeldStartsFromTheLoginsFetch(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		open := make(chan struct{})
		w := newGatedWriter(0, open)
		r := newCarryRig(t, b, w, 64, true)
		for i := 0; i < 3; i++ {
			r.send(t, "7", i, true)
		}
		brokertest.Poll(t, 5*time.Second, "three carried", func() bool { return r.carries.Load() == 3 })
		seed, err := r.bc.Fetch(context.Background(), r.id, 0, "", r.s.FetchBatch())
		if err != nil || len(seed.Msgs) != 3 {
			t.Fatalf("seed %+v %v", seed, err)
		}
		for i := 3; i < 5; i++ {
			r.send(t, "7", i, true)
		}
		brokertest.Poll(t, 5*time.Second, "five carried", func() bool { return r.carries.Load() == 5 })
		if got := w.written(); len(got) != 0 {
			t.Fatalf("a held mailbox wrote %v", got)
		}
		r.mb.StartFetched(seed)
		close(open)
		waitWrites(t, w.wrote, 5)
		r.waitEmpty(t, "7")
		checkOrder(t, w.written(), 0, 5)
		if st := r.s.Stats(); st.Fetches != 0 {
			t.Fatalf("stats %+v: the login's read should be the only one", st)
		}
	})
}

// A Poke while held (a subscriber reconnect) asks for a fetch made after
// it: the read the login made before is not used.
func TestMailboxHeldPokedFetchesAgain(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		open := make(chan struct{})
		close(open)
		w := newGatedWriter(0, open)
		r := newCarryRig(t, b, w, 64, true)
		stale, err := r.bc.Fetch(context.Background(), r.id, 0, "", r.s.FetchBatch())
		if err != nil {
			t.Fatal(err)
		}
		r.send(t, "7", 0, false) // no publication: only a fetch finds it
		r.mb.Poke()
		r.mb.StartFetched(stale)
		waitWrites(t, w.wrote, 1)
		checkOrder(t, w.written(), 0, 1)
		if st := r.s.Stats(); st.Fetches != 1 {
			t.Fatalf("stats %+v: want the fetch the Poke asked for", st)
		}
	})
}

// With RemoveAfter, a written head waits for more before it is removed:
// messages that come one at a time are each written at once, and leave
// Redis together, in one removal, once the user has been quiet that long.
func TestWrittenHeadWaitsForMore(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		open := make(chan struct{})
		close(open)
		w := newGatedWriter(0, open)
		r := newCarryRigConfig(t, b, w, chat.Config{RemoveAfter: time.Second})
		r.mb.Poke()
		for i := 0; i < 3; i++ {
			r.send(t, "7", i, true)
			waitWrites(t, w.wrote, 1) // written without waiting for a removal
		}
		r.waitEmpty(t, "7")
		checkOrder(t, w.written(), 0, 3)
		if st := r.s.Stats(); st.Removals != 1 || st.Fetches != 1 {
			t.Fatalf("stats %+v: want the first fetch, then one removal of the three", st)
		}
	})
}
