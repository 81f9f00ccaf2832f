package chat

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/occase/occase/logs"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Writer is what a mailbox needs from a connection.
type Writer interface {
	// SendTracked queues frame and calls done once it has been written
	// (nil) or can never be (an error). It returns false, without calling
	// done, when the connection cannot take it.
	SendTracked(frame []byte, done func(error)) bool
}

// Mailbox moves one logged-in user's queued messages to its connection. Its
// pump goroutine runs only while there is work: an idle user costs no
// goroutine.
type Mailbox struct {
	s    *Service
	user string
	w    Writer

	stop    chan struct{} // closed by Close: ends a pump waiting to retry
	mu      sync.Mutex
	running bool
	again   bool
	closed  bool
	idle    *sync.Cond
	// The head of the queue that is done with (written, or skipped as
	// undeliverable) and not yet removed from Redis: how many elements, and
	// the text of the last one.
	doneCount int
	doneLast  string
}

// Mailbox returns the mailbox of user for w. Call Poke to start delivery.
func (s *Service) Mailbox(user string, w Writer) *Mailbox {
	m := &Mailbox{s: s, user: user, w: w, stop: make(chan struct{})}
	m.idle = sync.NewCond(&m.mu)
	return m
}

// logger is built when something is logged: a zap child logger holds a
// 1 KiB encoder buffer, too much for every idle connection to keep.
func (m *Mailbox) logger() *zap.Logger { return m.s.log.With(zap.String("user", m.user)) }

// Poke tells the mailbox that messages may be waiting. It never blocks.
func (m *Mailbox) Poke() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if m.running {
		m.again = true
		return
	}
	m.running = true
	go m.pump()
}

// Close stops delivery and removes from Redis what was written. The
// connection must already be refusing new frames, so a pump waiting on a
// write ends promptly.
func (m *Mailbox) Close(ctx context.Context) {
	m.mu.Lock()
	if !m.closed {
		close(m.stop)
	}
	m.closed = true
	for m.running {
		m.idle.Wait()
	}
	count, last := m.doneCount, m.doneLast
	m.mu.Unlock()
	if count == 0 {
		return
	}
	if _, err := m.s.b.FetchMessages(ctx, m.user, count, last, 0); err != nil {
		// They stay in Redis and come again at the next login; the app
		// drops them by msg_id.
		m.logger().Warn("could not remove delivered messages; they will be delivered again", zap.Int("count", count), zap.Error(err))
	}
}

var errGone = errors.New("connection gone")

func (m *Mailbox) pump() {
	stopped := false
	stop := func() {
		m.mu.Lock()
		m.running, stopped = false, true
		m.idle.Broadcast()
		m.mu.Unlock()
	}
	defer func() {
		if r := recover(); r != nil {
			m.logger().Error("chat pump panicked", zap.Any("panic", r), zap.Stack("stack"))
		}
		if !stopped {
			stop()
		}
	}()
	backoff := 50 * time.Millisecond
	for {
		m.mu.Lock()
		if m.closed {
			m.running, stopped = false, true
			m.idle.Broadcast()
			m.mu.Unlock()
			return
		}
		m.again = false
		count, last := m.doneCount, m.doneLast
		m.mu.Unlock()

		msgs, err := m.s.b.FetchMessages(context.Background(), m.user, count, last, m.s.cfg.Batch)
		if err != nil {
			// Redis is away or still loading. The messages wait there, and
			// the store that notified may have set the user's flag, so no
			// further notification comes: keep trying while the user is
			// connected.
			m.logger().Warn("fetch messages; retrying", logs.Repeated(logs.RepeatEvery), zap.Error(err), zap.Duration("in", backoff))
			select {
			case <-time.After(backoff):
			case <-m.stop:
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		m.mu.Lock()
		m.doneCount -= count // removed from Redis
		if m.doneCount == 0 {
			m.doneLast = ""
		}
		if len(msgs) == 0 && (!m.again || m.closed) {
			// Deciding to stop and saying so happen under one lock: a Poke
			// either sees the pump running and sets again before this, or
			// sees it stopped and starts a new one.
			m.running, stopped = false, true
			m.idle.Broadcast()
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		if len(msgs) == 0 {
			continue
		}
		if err := m.deliver(msgs); err != nil {
			return
		}
	}
}

// deliver writes msgs in order and returns once the last one is written.
// An element that is not what our scripts store is
// skipped rather than allowed to stall the queue; it counts as done once
// everything before it is written.
func (m *Mailbox) deliver(msgs []string) error {
	// done[i] is true once element i and everything before it is done.
	lastValid := -1
	for i, s := range msgs {
		if deliverable(s) {
			lastValid = i
		} else {
			m.logger().Error("skipping an undeliverable element read from Redis", zap.Int("bytes", len(s)))
		}
	}
	// Skipped elements before the first valid one are done at once.
	first := 0
	for first < len(msgs) && !deliverable(msgs[first]) {
		first++
	}
	m.markDone(first, msgs)
	if lastValid < 0 {
		return nil
	}
	last := make(chan error, 1)
	for i := first; i <= lastValid; i++ {
		if !deliverable(msgs[i]) {
			continue
		}
		// When i is written, it and the skipped ones right after it are done.
		upto := i + 1
		for upto < len(msgs) && !deliverable(msgs[upto]) {
			upto++
		}
		isLast := i == lastValid
		if !m.w.SendTracked([]byte(msgs[i]), func(err error) {
			if err == nil {
				m.markDone(upto, msgs)
			}
			if isLast {
				last <- err
			}
		}) {
			return errGone
		}
	}
	err := <-last
	if err == nil && m.s.cfg.OnWritten != nil {
		m.s.cfg.OnWritten(context.Background(), m.user, msgs[first:lastValid+1])
	}
	return err
}

// markDone records that the first n elements of the batch msgs are done.
func (m *Mailbox) markDone(n int, msgs []string) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// doneCount counts from the queue's head at this batch's fetch, which
	// the pump reset to 0 before delivering.
	if n > m.doneCount {
		m.doneCount, m.doneLast = n, msgs[n-1]
	}
}

// deliverable tells whether s is what the store script writes: a JSON
// object that starts with its msg_id, in valid UTF-8 (it goes out as a
// text frame).
func deliverable(s string) bool {
	return strings.HasPrefix(s, `{"msg_id":`) && wire.ValidString(s)
}
