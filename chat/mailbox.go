package chat

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
	log  *zap.Logger

	written atomic.Int64 // highest message id written to the connection
	acked   int64        // highest id removed from Redis (pump only)

	mu      sync.Mutex
	running bool
	again   bool
	closed  bool
	idle    *sync.Cond
}

// Mailbox returns the mailbox of user for w. Call Poke to start delivery.
func (s *Service) Mailbox(user string, w Writer) *Mailbox {
	m := &Mailbox{s: s, user: user, w: w, log: s.log.With(zap.String("user", user))}
	m.idle = sync.NewCond(&m.mu)
	return m
}

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
	m.closed = true
	for m.running {
		m.idle.Wait()
	}
	m.mu.Unlock()
	if w := m.written.Load(); w > m.acked {
		if _, err := m.s.b.FetchMessages(ctx, m.user, w, 0); err != nil {
			// They stay in Redis and come again at the next login; the app
			// drops them by msg_id.
			m.log.Warn("could not remove delivered messages; they will be delivered again", zap.Int64("upto", w), zap.Error(err))
		}
	}
}

var errGone = errors.New("connection gone")

func (m *Mailbox) pump() {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("chat pump panicked", zap.Any("panic", r), zap.Stack("stack"))
		}
		m.mu.Lock()
		m.running = false
		m.idle.Broadcast()
		m.mu.Unlock()
	}()
	backoff := 50 * time.Millisecond
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		m.again = false
		m.mu.Unlock()

		upto := m.written.Load()
		msgs, err := m.s.b.FetchMessages(context.Background(), m.user, upto, m.s.cfg.Batch)
		if err != nil {
			// Redis is away. The messages wait there; retry a few times,
			// then the re-subscription after the reconnect pokes again.
			m.log.Warn("fetch messages", zap.Error(err))
			if backoff > 2*time.Second {
				return
			}
			time.Sleep(backoff)
			backoff *= 2
			continue
		}
		backoff = 50 * time.Millisecond
		m.acked = upto
		if len(msgs) == 0 {
			m.mu.Lock()
			if !m.again || m.closed {
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
			continue
		}
		if err := m.deliver(msgs); err != nil {
			return
		}
	}
}

// deliver writes msgs in order and returns once the last one is written.
// A message that is not something our scripts store is skipped rather than
// allowed to stall the queue: the fetch script removes it once the written
// mark passes its id (or at once, when it has no id).
func (m *Mailbox) deliver(msgs []string) error {
	ids := make([]int64, len(msgs))
	lastValid := -1
	for i, s := range msgs {
		id, ok := messageID(s)
		if !ok || !json.Valid([]byte(s)) {
			m.log.Error("skipping an undeliverable message read from Redis", zap.Int("bytes", len(s)))
			ids[i] = -id - 1 // negative: skip
			continue
		}
		ids[i] = id
		lastValid = i
	}
	if lastValid < 0 {
		// Nothing to write, nothing pending: step over the skipped ones.
		for _, id := range ids {
			m.advance(-id - 1)
		}
		return nil
	}
	last := make(chan error, 1)
	for i, s := range msgs[:lastValid+1] {
		id := ids[i]
		if id < 0 {
			continue
		}
		isLast := i == lastValid
		if !m.w.SendTracked([]byte(s), func(err error) {
			if err == nil {
				m.advance(id)
			}
			if isLast {
				last <- err
			}
		}) {
			return errGone
		}
	}
	return <-last
}

// advance raises the written mark; frames are written in order, so ids only
// grow, but a skipped one must not lower it.
func (m *Mailbox) advance(id int64) {
	for {
		cur := m.written.Load()
		if id <= cur || m.written.CompareAndSwap(cur, id) {
			return
		}
	}
}

// messageID reads the id that every stored message starts with.
func messageID(s string) (int64, bool) {
	const p = `{"msg_id":`
	if len(s) < len(p)+2 || s[:len(p)] != p {
		return 0, false
	}
	end := len(p)
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == len(p) || end >= len(s) || s[end] != ',' {
		return 0, false
	}
	id, err := strconv.ParseInt(s[len(p):end], 10, 64)
	return id, err == nil
}
