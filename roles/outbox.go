package roles

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// A frame's fate when its connection ends before it is written.
const (
	transient  = iota // dropped (live posts, presence, replies that can be asked again)
	persistent        // stored in the user's offline queue (publish_ack, delete_ack, filenames_ack)
)

type item struct {
	data       []byte
	kind       int
	deferrable bool        // may wait up to the outbox's delay (live posts)
	done       func(error) // called once: nil when written, else the error
}

var errClosed = errors.New("connection closed")

// outbox is a connection's bounded send queue. Its writer goroutine exists
// only while there is something to write, so an idle connection holds none.
// The writer takes everything queued (up to a batch limit) at once and
// hands it to write, which sends the batch in one system call: under load,
// many frames per write(2) instead of one. Only deferrable frames (live
// posts) to an idle connection that wrote within the last delay wait, up
// to delay, for company; anything else is written at once.
// Overflow means a slow reader: the connection is closed (nothing is lost:
// chat stays in Redis until written, posts are in Redis for catch-up, and
// persistent replies are requeued).
type outbox struct {
	write      func(frames [][]byte) error // all or nothing, as far as done is told
	onOverflow func()
	maxItems   int
	maxBytes   int
	maxBatch   int
	delay      time.Duration // how long a deferrable frame may wait for company
	// grid is the origin of this outbox's flush times: a waiting writer
	// writes at the next grid + k*delay (see firstWait). It is one of
	// flushSlots points spread over the delay, so connections that get the
	// same posts do not all write at the same instant.
	grid time.Time

	mu      sync.Mutex
	cond    sync.Cond // on mu
	q       []item
	bytes   int
	running bool
	wake    chan struct{} // while the writer waits out the delay: closed to end the wait
	stopped bool
	failed  []item // persistent items whose write failed

	// lastWrite is when the writer last wrote. A live post that comes
	// more than a delay after it does not wait: on a quiet connection
	// there is no company to wait for.
	lastWrite time.Time
	// pingDue: a ping waits to go first in the next batch. A flag, not a
	// queued item, so that a ping allocates nothing (pings reach every
	// idle connection; their garbage grew the heap between collections).
	pingDue bool
}

// flushEpoch and flushSlots place the outboxes' flush grids (firstWait):
// every outbox flushes at flushEpoch + (k + s/flushSlots)*delay for its own
// slot s, chosen at random. Four slots, not one per connection: a
// connection's writes then come in four groups per delay, each small
// enough to be written (and read) well within the next group's start,
// while each group still shares the scheduler's wake-ups. Measured at
// 200,000 deliveries/s to 1,000 subscribers (docs/benchmarks.md, issue 13
// item 4): p99 53 ms at a 50 ms delay, against 81 to 117 ms with every
// connection waiting the full delay from its first post; 16 slots or a
// continuous spread gave the same latency for more CPU.
var flushEpoch = time.Now()

const flushSlots = 4

// maxBatchBytes bounds a batch (what one write(2) carries) in bytes; the
// frame count is the outbox's maxBatch.
const maxBatchBytes = 64 << 10

func newOutbox(write func(frames [][]byte) error, onOverflow func(), maxItems, maxBytes, maxBatch int, delay time.Duration) *outbox {
	o := &outbox{write: write, onOverflow: onOverflow, maxItems: maxItems, maxBytes: maxBytes, maxBatch: max(maxBatch, 1), delay: delay}
	o.grid = flushEpoch
	if delay > 0 {
		o.grid = o.grid.Add(-time.Duration(rand.IntN(flushSlots)) * delay / time.Duration(flushSlots))
	}
	o.cond.L = &o.mu
	return o
}

// push queues it. It never blocks; false means the frame will never be
// written (it.done is then not called).
func (o *outbox) push(it item) bool {
	o.mu.Lock()
	if o.stopped {
		o.mu.Unlock()
		return false
	}
	if len(o.q) >= o.maxItems || o.bytes+len(it.data) > o.maxBytes {
		o.mu.Unlock()
		o.onOverflow()
		return false
	}
	o.q = append(o.q, it)
	o.bytes += len(it.data)
	switch {
	case !o.running && it.deferrable && o.delay > 0 && time.Since(o.lastWrite) < o.delay:
		o.running = true
		o.wake = make(chan struct{})
		go o.run(o.wake)
	case !o.running:
		o.running = true
		go o.run(nil)
	case o.wake != nil && !it.deferrable:
		o.endWait() // a frame that must not wait
	}
	o.mu.Unlock()
	return true
}

// ping queues a ping (at most one waits) and, when no writer is running,
// writes it on the calling goroutine (the session's timer's, which has
// nothing else to do) instead of starting one. False: stopped.
func (o *outbox) ping() bool {
	o.mu.Lock()
	if o.stopped {
		o.mu.Unlock()
		return false
	}
	o.pingDue = true
	if o.running {
		o.endWait() // a ping must not wait for company
		o.mu.Unlock()
		return true
	}
	o.running = true
	o.mu.Unlock()
	o.run(nil)
	return true
}

// batchBuf is a writer's batch, pooled: the writer runs often (every ping
// of every idle connection) and its slices are garbage once it ends.
type batchBuf struct {
	items  []item
	frames [][]byte
}

var batchBufs = sync.Pool{New: func() any { return new(batchBuf) }}

// endWait ends the writer's wait for company, if it is waiting. o.mu held.
func (o *outbox) endWait() {
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
}

// firstWait is how long a writer started for a deferrable frame waits: up
// to the next of this outbox's flush times, grid + k*delay, so at most the
// delay. A connection that gets a steady flow of posts still writes once
// per delay with everything that came meanwhile (the frame after a write
// starts the next wait, which then lasts nearly the whole delay), but the
// connections that one post reaches write at their own times, spread over
// the delay, instead of all at once a delay after that post: a burst of a
// thousand writes, and a thousand reads on the other side, made the last
// of them wait for all the others, tens of milliseconds past the delay at
// 200,000 deliveries/s (docs/benchmarks.md, issue 13 item 4).
func (o *outbox) firstWait() time.Duration {
	return o.delay - time.Since(o.grid)%o.delay
}

// run is the writer. wake is non-nil when it was started for a deferrable
// frame: it first waits up to the delay (firstWait; or until wake is
// closed) so that the frames arriving meanwhile share the first write
// (--write-delay). Once busy it never waits again: its queue is its batch.
func (o *outbox) run(wake chan struct{}) {
	if wake != nil {
		t := time.NewTimer(o.firstWait())
		select {
		case <-t.C:
		case <-wake:
			t.Stop()
		}
		o.mu.Lock()
		if o.wake == wake {
			o.wake = nil
		}
		o.mu.Unlock()
	}
	bb := batchBufs.Get().(*batchBuf)
	batch, frames := bb.items, bb.frames
	defer func() {
		if cap(batch) <= 64 && cap(frames) <= 64 {
			bb.items, bb.frames = batch[:0], frames[:0]
			batchBufs.Put(bb)
		}
	}()
	for {
		o.mu.Lock()
		if len(batch) > 0 {
			o.lastWrite = time.Now()
		}
		if o.stopped || len(o.q) == 0 && !o.pingDue {
			o.running = false
			if len(o.q) == 0 {
				o.q = nil // an idle connection keeps no buffer
			}
			// Frames left after a failed write stay queued for stop(),
			// which hands back the persistent ones and fails the rest.
			o.cond.Broadcast()
			o.mu.Unlock()
			return
		}
		batch, frames = batch[:0], frames[:0]
		size := 0
		if o.pingDue {
			o.pingDue = false
			frames = append(frames, pingFrame)
		}
		for len(o.q) > 0 && len(batch) < o.maxBatch {
			it := o.q[0]
			if len(frames) > 0 && size+len(it.data) > maxBatchBytes {
				break
			}
			batch = append(batch, it)
			frames = append(frames, it.data)
			size += len(it.data)
			o.q[0] = item{}
			o.q = o.q[1:]
		}
		o.bytes -= size
		o.mu.Unlock()

		err := o.write(frames)
		for _, it := range batch {
			if it.done != nil {
				it.done(err)
			}
		}
		if err != nil {
			o.mu.Lock()
			o.stopped = true
			for _, it := range batch {
				if it.kind == persistent {
					o.failed = append(o.failed, item{data: it.data, kind: persistent}) // done already called
				}
			}
			o.mu.Unlock()
		}
		clear(batch) // let the frames go
		clear(frames)
	}
}

// drain waits until everything queued so far is written, the writer fails,
// or ctx ends.
func (o *outbox) drain(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		o.mu.Lock()
		o.cond.Broadcast()
		o.mu.Unlock()
	})
	defer stop()
	o.mu.Lock()
	o.endWait() // everything queued is wanted now
	for o.running && ctx.Err() == nil {
		o.cond.Wait()
	}
	o.mu.Unlock()
}

// busy tells whether a frame is queued or being written: drain has
// something to wait for.
func (o *outbox) busy() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.running || len(o.q) > 0
}

// stop refuses further frames, waits for the frame being written, and
// returns the persistent frames that were never written. Pending done
// callbacks get errClosed.
func (o *outbox) stop() [][]byte {
	o.mu.Lock()
	o.stopped = true
	o.endWait()
	for o.running {
		o.cond.Wait()
	}
	rest := append(o.failed, o.q...)
	o.q, o.failed, o.bytes = nil, nil, 0
	o.mu.Unlock()
	var keep [][]byte
	for _, it := range rest {
		if it.kind == persistent {
			keep = append(keep, it.data)
		}
		if it.done != nil {
			it.done(errClosed)
		}
	}
	return keep
}
