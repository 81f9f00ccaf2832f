package chat

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/occase/occase/broker"
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
//
// Messages come two ways. A fetch reads the queue from Redis. A carried
// message (Carry) comes with its store, through the user's channel or
// straight from a sender on this node, with the id of the message stored
// before it: when that is the last message the mailbox knows of, nothing
// can be missing and the mailbox writes it without asking Redis. Whenever
// it cannot prove that (a gap in the chain of ids, a Poke after a
// subscriber reconnect, a carried message that did not fit), it fetches
// the queue instead. Either way a message leaves Redis only after it was
// written: the written head is removed after each written batch, by the
// node's remover (remover.go: many users' heads in one call), or by the
// next fetch.
type Mailbox struct {
	s    *Service
	user string
	w    Writer

	stop    chan struct{} // closed by Close: ends a pump waiting to retry
	mu      sync.Mutex
	running bool
	again   bool // fetch the queue: something may be there that no carried message shows
	closed  bool
	// held: made by MailboxHeld and not yet started (StartFetched): Poke
	// and Carry record their work but start no pump.
	held bool
	// seed is a fetch made for the mailbox before it started (the login's
	// script): the pump's first fetch uses it instead of asking Redis.
	seed   *broker.Fetched
	idle   *sync.Cond
	inbox  []carried // carried messages not yet looked at by the pump
	inboxB int       // their bytes
	// The head of the queue that is done with (written, or skipped as
	// undeliverable) and not yet removed from Redis: how many elements, and
	// the text of the last one.
	doneCount int
	doneLast  string
	doneAt    time.Time // when the oldest of them was done
	// rmDue: the node's lazy remover (remover.go) found the done head
	// waiting for cfg.RemoveAfter: remove it even if nothing else comes.
	// rmQueued: the mailbox is on that remover's list.
	rmDue, rmQueued bool

	// The pump's own (one pump at a time; the next one starts under mu
	// after the last one stopped): whether every message of the queue up
	// to the one with id lastSeen is known (fetched or carried), so a
	// carried message whose prev is lastSeen is the very next one.
	synced   bool
	lastSeen int64
	// written is the highest msg_id written by this mailbox. Ids grow
	// along a queue, so an element at or below it that a fetch finds
	// again (its removal missed: a foreign element sat in front of it) was
	// written already; it is passed over as done, as the app would drop it.
	written int64
}

func byID(a, b carried) int { return cmp.Compare(a.id, b.id) }

// carried is a message that came with its store.
type carried struct {
	prev, id int64
	frame    string
}

// Mailbox returns the mailbox of user for w. Call Poke to start delivery.
func (s *Service) Mailbox(user string, w Writer) *Mailbox {
	m := &Mailbox{s: s, user: user, w: w, stop: make(chan struct{})}
	m.idle = sync.NewCond(&m.mu)
	return m
}

// MailboxHeld returns a mailbox of user for w that takes carried messages
// and pokes but starts delivering only at StartFetched (or Start): a login
// makes it before the step that reads the queue's head, so what is stored
// after that read reaches it.
func (s *Service) MailboxHeld(user string, w Writer) *Mailbox {
	m := s.Mailbox(user, w)
	m.held = true
	return m
}

// FetchBatch is how many elements the mailbox fetches per round trip: the
// batch a fetch made for StartFetched must ask for.
func (s *Service) FetchBatch() int { return s.cfg.Batch }

// StartFetched starts a held mailbox with f, a fetch of the queue's head
// (nothing removed, FetchBatch elements asked for) made after the mailbox
// was created: its first round uses f instead of fetching, and the carried
// messages that came meanwhile are sorted out against f.Seq. A Poke
// before it (a subscriber reconnect) makes the pump fetch anyway.
func (m *Mailbox) StartFetched(f broker.Fetched) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.seed = &f
	m.held = false
	m.start()
}

// Start starts a held mailbox with a fetch of its own (as Poke).
func (m *Mailbox) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.held = false
	m.again = true
	m.start()
}

// logger is built when something is logged: a zap child logger holds a
// 1 KiB encoder buffer, too much for every idle connection to keep.
func (m *Mailbox) logger() *zap.Logger { return m.s.log.With(zap.String("user", m.user)) }

// Poke tells the mailbox that messages may be waiting in the queue: it
// fetches it. It never blocks.
func (m *Mailbox) Poke() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.again = true
	m.start()
}

// maxRemoveWait bounds how long a written head waits for its removal
// while carried messages keep the pump busy.
const maxRemoveWait = 250 * time.Millisecond

// maxInboxBytes bounds the carried frames one mailbox holds while its
// pump is busy (writing to a slow connection, waiting for Redis).
const maxInboxBytes = 256 << 10

// Carry hands the mailbox a message as it was stored: frame, its id, and
// prev, the id of the message stored for the user just before it. It never
// blocks. What the mailbox cannot take (more than a batch, or
// maxInboxBytes, waiting) is dropped and fetched from the queue instead.
func (m *Mailbox) Carry(prev, id int64, frame string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if len(m.inbox) >= m.s.cfg.Batch || m.inboxB+len(frame) > maxInboxBytes {
		m.s.inboxDropped.Add(int64(len(m.inbox)) + 1)
		m.inbox, m.inboxB = nil, 0
		m.again = true
	} else {
		m.inbox = append(m.inbox, carried{prev, id, frame})
		m.inboxB += len(frame)
	}
	m.start()
}

// start runs the pump unless it runs or the mailbox is held; m.mu is
// held.
func (m *Mailbox) start() {
	if !m.running && !m.held {
		m.running = true
		go m.pump()
	}
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
	m.inbox, m.inboxB = nil, 0
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
	backoff := broker.Backoff{First: 50 * time.Millisecond, Max: 2 * time.Second}
	// wait sleeps after a failed call to Redis (less when closed).
	wait := func(what string, err error) {
		// Redis is away or still loading. The messages wait there, and no
		// further notification may come: keep trying while the user is
		// connected.
		m.logger().Warn(what+"; retrying", logs.Repeated(logs.RepeatEvery), zap.Error(err))
		backoff.Wait(m.stop)
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.running, stopped = false, true
			m.idle.Broadcast()
			m.mu.Unlock()
			return
		}
		fetch := m.again || !m.synced
		// The seed is good for the first fetch only, and not after a
		// Poke: that asks for a fetch made after it.
		seed := m.seed
		m.seed = nil
		if m.again {
			seed = nil
		}
		m.again = false
		// A fetch covers everything stored before it runs, so the carried
		// messages waiting now are dropped; those that come while it runs
		// are kept, and sorted out by their ids after it.
		in := m.inbox
		m.inbox, m.inboxB = nil, 0
		count, last := m.doneCount, m.doneLast
		// A written head waits for a quiet moment or a batch's worth, but
		// not longer than maxRemoveWait: its removal is also what tells
		// push notifications that the messages were written (it clears
		// their counts), so a connection that is always busy must not
		// hold it back past the push delay.
		removeNow := !fetch && m.removeDue(len(in) == 0, count)
		if removeNow {
			m.rmDue = false
		}
		m.mu.Unlock()

		if fetch {
			m.synced = false
			var f broker.Fetched
			if seed != nil && count == 0 {
				// Read before the carried messages taken above may have
				// been stored: they wait for chain, which drops those
				// the seed holds.
				f = *seed
				m.requeueInbox(in)
			} else {
				var err error
				if f, err = m.s.b.Fetch(context.Background(), m.user, count, last, m.s.cfg.Batch); err != nil {
					wait("fetch messages", err)
					continue
				}
				// Counted once it has read the queue: a test (or an
				// operator) that sees the count knows that what is
				// stored from now on comes after the read.
				m.s.fetches.Add(1)
			}
			backoff.Reset()
			m.removed(count)
			// The whole queue was read: the next carried message is the
			// one stored after f.Seq.
			m.synced, m.lastSeen = len(f.Msgs) < m.s.cfg.Batch, f.Seq
			if len(f.Msgs) > 0 && m.deliver(f.Msgs) != nil {
				return
			}
			continue
		}
		if removeNow {
			// Written messages leave Redis after each written batch,
			// when nothing else waits or a batch's worth has gathered,
			// through the node's remover.
			// The carried messages taken above wait for the next round.
			m.requeueInbox(in)
			m.s.removals.Add(1)
			ok, err := m.s.removeHead(m.user, count, last)
			if err != nil {
				wait("remove delivered messages", err)
				continue
			}
			backoff.Reset()
			m.removed(count)
			if !ok {
				// The head is not what we wrote: read the queue afresh
				// (what is still there is delivered again, same msg_id).
				m.synced = false
			}
			continue
		}
		batch := m.chain(in)
		if len(batch) > 0 {
			m.s.carried.Add(int64(len(batch)))
			if m.deliver(batch) != nil {
				return
			}
			continue
		}
		if !m.synced {
			continue // a gap: fetch
		}
		m.mu.Lock()
		if len(m.inbox) == 0 && !m.again && !m.removeDue(true, m.doneCount) || m.closed {
			// Deciding to stop and saying so happen under one lock: a
			// Poke or Carry either sees the pump running and leaves its
			// work for it before this, or sees it stopped and starts a
			// new one. A written head that waits for more (RemoveAfter)
			// is left to the lazy remover, which starts a pump to remove
			// it once it has waited long enough.
			if m.doneCount > 0 && !m.closed && !m.rmQueued {
				m.rmQueued = true
				m.s.removeLater(m)
			}
			m.running, stopped = false, true
			m.idle.Broadcast()
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// removeDue tells whether the done head of count elements is to be
// removed now: once a batch's worth has gathered, once it has waited
// maxRemoveWait, and when nothing else waits (quiet) once it has waited
// cfg.RemoveAfter, or at once when RemoveAfter is 0. m.mu is held.
//
// Waiting lets a user's written messages leave Redis many at a time: each
// removal costs Redis a few commands per user whatever it removes, and
// once a queue is empty the next message pays to start it afresh (its
// expiry, its senders' counts). The wait delays nothing the user sees: a
// message that comes meanwhile is written at once, and only the removal
// waits. What it costs is that written messages stay in Redis a little
// longer (a crash then delivers them again, same msg_id; they count
// against the queue's cap while there).
func (m *Mailbox) removeDue(quiet bool, count int) bool {
	if count == 0 {
		return false
	}
	if count >= m.s.cfg.Batch {
		return true
	}
	after := m.s.cfg.RemoveAfter
	if quiet && (after <= 0 || m.rmDue) {
		return true
	}
	waited := time.Since(m.doneAt)
	return waited >= maxRemoveWait || quiet && waited >= after
}

// requeueInbox puts carried messages taken by the pump back in front of
// those that came since.
func (m *Mailbox) requeueInbox(in []carried) {
	if len(in) == 0 {
		return
	}
	m.mu.Lock()
	for _, c := range in {
		m.inboxB += len(c.frame)
	}
	m.inbox = append(in, m.inbox...)
	m.mu.Unlock()
}

// removed records that the written head of count elements is no longer in
// Redis (removed, or found gone).
func (m *Mailbox) removed(count int) {
	m.mu.Lock()
	m.doneCount -= count
	if m.doneCount == 0 {
		m.doneLast = ""
	} else {
		m.doneAt = time.Now()
	}
	m.mu.Unlock()
}

// chain returns the carried messages that continue what the mailbox knows
// of the queue, in order. Those already known (fetched since) are dropped;
// at the first one that does not continue the chain, the mailbox is no
// longer synced and fetches the queue, which holds the rest.
func (m *Mailbox) chain(in []carried) []string {
	if len(in) == 0 {
		return nil
	}
	// Stores from several senders on this node may hand over out of order.
	if !slices.IsSortedFunc(in, byID) {
		slices.SortFunc(in, byID)
	}
	var batch []string
	for _, c := range in {
		switch {
		case c.id <= m.lastSeen:
			// Fetched already.
		case c.prev == m.lastSeen:
			batch = append(batch, c.frame)
			m.lastSeen = c.id
		default:
			m.synced = false
			return batch
		}
	}
	return batch
}

// deliver writes msgs, the queue's elements right after the done head, in
// order and returns once the last one is written. An element that is not
// what our scripts store is skipped rather than allowed to stall the queue;
// it counts as done once everything before it is written.
func (m *Mailbox) deliver(msgs []string) error {
	m.mu.Lock()
	base := m.doneCount
	m.mu.Unlock()
	lastValid := -1
	ok := make([]bool, len(msgs))
	top := m.written
	for i, s := range msgs {
		id, valid := deliverable(s)
		switch {
		case !valid:
			m.logger().Error("skipping an undeliverable element read from Redis", zap.Int("bytes", len(s)))
		case id <= m.written:
			// Written already (see written).
		default:
			ok[i], lastValid = true, i
			top = max(top, id)
		}
	}
	deliverable := func(i int) bool { return ok[i] }
	// Skipped elements before the first valid one are done at once.
	first := 0
	for first < len(msgs) && !deliverable(first) {
		first++
	}
	m.markDone(base, first, msgs)
	if lastValid < 0 {
		return nil
	}
	last := make(chan error, 1)
	for i := first; i <= lastValid; i++ {
		if !deliverable(i) {
			continue
		}
		// When i is written, it and the skipped ones right after it are done.
		upto := i + 1
		for upto < len(msgs) && !deliverable(upto) {
			upto++
		}
		isLast := i == lastValid
		if !m.w.SendTracked([]byte(msgs[i]), func(err error) {
			if err == nil {
				m.markDone(base, upto, msgs)
			}
			if isLast {
				last <- err
			}
		}) {
			return errGone
		}
	}
	err := <-last
	if err == nil {
		m.written = top
	}
	return err
}

// markDone records that the first n elements of the batch msgs, which
// follows the base elements done before it, are done.
func (m *Mailbox) markDone(base, n int, msgs []string) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if base+n > m.doneCount {
		if m.doneCount == 0 {
			m.doneAt = time.Now()
		}
		m.doneCount, m.doneLast = base+n, msgs[n-1]
	}
}

// deliverable tells whether s is what the store script writes, a JSON
// object that starts with its msg_id, in valid UTF-8 (it goes out as a
// text frame), and returns that id.
func deliverable(s string) (int64, bool) {
	const head = `{"msg_id":`
	if !strings.HasPrefix(s, head) || !wire.ValidString(s) {
		return 0, false
	}
	end := strings.IndexByte(s[len(head):], ',')
	if end <= 0 {
		return 0, false
	}
	id, err := strconv.ParseInt(s[len(head):len(head)+end], 10, 64)
	return id, err == nil
}
