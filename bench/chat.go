package bench

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// The chat scenario: users in pairs, the two of a pair on different nodes
// when there are several URLs. Each sends chat messages to its partner
// (paced by Rate; at most Window unanswered messages, receipts included), with a "writing"
// presence now and then; each answers every chat message it gets with a
// delivery receipt (app_ack_received) and every ReadEvery-th with a read
// receipt (app_ack_read), as apps do. Every message of one sender to its
// partner, receipts included, carries the next number of that pair's
// sequence ("seq") and the send time ("ts", ns since the bench started),
// fields the server forwards untouched.

// chatCounters are what the drain loop and the progress line watch.
type chatCounters struct {
	outstanding atomic.Int64  // requests written, reply not read yet
	accepted    atomic.Uint64 // ok replies
	unique      atomic.Uint64 // distinct messages read by their recipients
	receipts    atomic.Int64  // receipts queued, not written yet
	chats       atomic.Uint64 // chat messages delivered (first time)
	acks        atomic.Uint64 // receipts delivered (first time)
	presence    atomic.Uint64
	redelivered atomic.Uint64 // --reconnect: dropped by msg_id, as an app drops them
	missing     atomic.Int64  // accepted and not delivered yet (see arrived)
}

// arrived tracks, per stream, which messages were accepted and which were
// delivered, both readers writing under one lock, so that the drain waits
// exactly for the accepted messages still missing. Counting totals alone
// (delivered >= accepted) ends it early when a message whose reply was
// lost with its connection arrives in place of an accepted one.
type arrived struct {
	mu         sync.Mutex
	acked, got bitset
}

// ack records that the server accepted seq.
func (a *arrived) ack(seq uint64, missing *atomic.Int64) {
	a.mu.Lock()
	if !a.got.has(seq) && !a.acked.add(seq) {
		missing.Add(1)
	}
	a.mu.Unlock()
}

// deliver records the first delivery of seq.
func (a *arrived) deliver(seq uint64, missing *atomic.Int64) {
	a.mu.Lock()
	if !a.got.add(seq) && a.acked.has(seq) {
		missing.Add(-1)
	}
	a.mu.Unlock()
}

type pending struct {
	id  uint64
	seq uint64
	at  time.Duration
}

type chatUser struct {
	r    *run
	cc   *chatCounters
	idx  int
	acct account
	ws   *websocket.Conn // guarded by mu once the load starts (--reconnect swaps it)
	peer *chatUser

	out   outStream // to peer: writer (sent) and reader (acked, failed)
	in    inStream  // from peer: reader only
	track arrived   // of out: u's reader (acks) and the peer's (deliveries)

	// writer only
	reqID     uint64
	chatsSent int
	frame     []byte

	// reader only
	lastMsgID int64
	chatsIn   int

	mu       sync.Mutex
	pending  []pending // replies awaited, in request order
	receipts []string  // receipt types to send
	notify   chan struct{}
	window   chan struct{}
	dead     bool          // the reader ended: nothing more is sent
	down     chan struct{} // --reconnect: closed once logged in again; nil while up
}

func runChat(ctx context.Context, r *run) (*Report, error) {
	cfg := r.cfg
	n := cfg.Users &^ 1
	users := make([]*chatUser, n)
	cc := &chatCounters{}
	phase := &atomic.Value{}
	phase.Store("setup")
	pctx, pstop := context.WithCancel(ctx)
	defer pstop()
	go r.progress(pctx, phase)

	// Register everyone; the registering connection stays logged in, as an
	// app's first session does.
	setupStart := r.now()
	parallel(ctx, n, cfg.Concurrency, func(i int) {
		ws, acct, err := registerFrom(ctx, cfg.URLs[i%len(cfg.URLs)], r.localAddr(i))
		if err != nil {
			r.fail("register_" + reasonOf(err))
			return
		}
		r.conns.Add(1)
		u := &chatUser{r: r, cc: cc, idx: i, acct: acct, ws: ws, notify: make(chan struct{}, 1),
			window: make(chan struct{}, cfg.Window)}
		for range cfg.Window {
			u.window <- struct{}{}
		}
		users[i] = u
	})
	setupTook := r.now() - setupStart
	var active []*chatUser
	var idle []*websocket.Conn
	for k := 0; k+1 < n; k += 2 {
		a, b := users[k], users[k+1]
		switch {
		case a != nil && b != nil:
			a.peer, b.peer = b, a
			active = append(active, a, b)
		case a != nil:
			idle = append(idle, a.ws)
		case b != nil:
			idle = append(idle, b.ws)
		}
	}
	closeAll(idle)
	if r.afterSetup != nil {
		r.afterSetup()
	}

	// The load window starts now.
	loadStart := r.now()
	r.measureFrom = loadStart + cfg.Warmup
	r.measureTo = loadStart + cfg.Duration
	sendCtx, stopSending := context.WithDeadline(ctx, r.start.Add(r.measureTo))
	defer stopSending()
	writeCtx, stopWriters := context.WithCancel(ctx)
	readCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	var closing atomic.Bool

	pad := padding(cfg.Size - 150)
	var writers, readers, senders sync.WaitGroup
	for _, u := range active {
		readers.Add(1)
		go func() {
			defer readers.Done()
			u.read(readCtx, &closing)
		}()
		writers.Add(1)
		senders.Add(1)
		go func() {
			defer writers.Done()
			u.write(writeCtx, sendCtx, &senders, pad)
		}()
	}
	window := r.sendPhase(phase, &senders)

	// Drain: wait until every request is answered, every receipt written,
	// and every accepted message read, or the drain budget is spent.
	phase.Store("drain")
	drainStart := r.now()
	tick := time.NewTicker(5 * time.Millisecond)
	for cc.outstanding.Load() > 0 || cc.receipts.Load() > 0 || cc.missing.Load() > 0 {
		if r.now()-drainStart > cfg.Drain || ctx.Err() != nil {
			r.fail("drain_timeout")
			break
		}
		<-tick.C
	}
	tick.Stop()
	drainTook := r.now() - drainStart

	closing.Store(true)
	stopWriters()
	writers.Wait()
	conns := make([]*websocket.Conn, len(active))
	for i, u := range active {
		// Under the lock: a reconnect that installs a connection after
		// closing was set closes it itself.
		u.mu.Lock()
		conns[i] = u.ws
		u.mu.Unlock()
	}
	closeAll(conns)
	stopReaders()
	readers.Wait()
	pstop()

	var t Tally
	for _, u := range active {
		t.add(&u.out, &u.peer.in, true)
	}
	t.Redelivered = cc.redelivered.Load()
	rep := r.report()
	rep.Connections = len(active)
	rep.Setup = rateOf(len(active)+len(idle), setupTook)
	rep.Window = seconds(window)
	rep.Drain = seconds(drainTook)
	rep.Messages = &t
	rep.DeliveredPerSec = float64(r.inWindow.Load()) / window.Seconds()
	rep.WindowCPU = r.windowCPU(window)
	rep.ByType = map[string]uint64{"chat": cc.chats.Load(), "receipts": cc.acks.Load(), "presence": cc.presence.Load()}
	if cfg.Reconnect {
		rep.Reconnects = r.reconnectCounts()
		rep.Notes = append(rep.Notes, "--reconnect: lost counts acknowledged messages never received after the drain, across reconnects; redelivered counts messages dropped by msg_id")
	}
	return rep, nil
}

func padding(n int) string {
	if n < 1 {
		n = 1
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// write sends chat messages until sendCtx ends or Count is reached, and
// receipts until ctx ends. It is the connection's only writer, so the
// pending queue is in wire order.
func (u *chatUser) write(ctx, sendCtx context.Context, senders *sync.WaitGroup, pad string) {
	cfg := u.r.cfg
	sending := true
	stopSending := func() {
		if sending {
			sending = false
			senders.Done()
		}
	}
	defer stopSending()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	// Spread the first sends over one interval so users do not tick in
	// step.
	next := u.r.now() + interval*time.Duration(u.idx%64)/64
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if !u.flushReceipts(ctx) {
			return
		}
		if sending && (sendCtx.Err() != nil || (cfg.Count > 0 && u.chatsSent >= cfg.Count)) {
			stopSending()
		}
		if !sending {
			select {
			case <-ctx.Done():
				return
			case <-u.notify:
			}
			continue
		}
		if interval > 0 {
			if wait := next - u.r.now(); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-sendCtx.Done():
					timer.Stop()
					continue
				case <-u.notify:
					timer.Stop()
					continue
				case <-timer.C:
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-sendCtx.Done():
			continue
		case <-u.notify:
			continue
		case <-u.window:
		}
		if cfg.TypingEvery > 0 && u.chatsSent%cfg.TypingEvery == 0 {
			f := append(u.frame[:0], `{"cmd":"presence","type":"writing","to":`...)
			f = wire.AppendString(f, u.peer.acct.id)
			f = append(f, '}')
			if !u.send(ctx, f, pending{}) {
				return
			}
		}
		u.chatsSent++
		if !u.sendMessage(ctx, "chat", pad) {
			return
		}
		next += interval
	}
}

// flushReceipts writes the queued receipts; false when the connection is
// gone.
func (u *chatUser) flushReceipts(ctx context.Context) bool {
	for {
		u.mu.Lock()
		if len(u.receipts) == 0 {
			u.mu.Unlock()
			return true
		}
		typ := u.receipts[0]
		u.receipts = u.receipts[1:]
		u.mu.Unlock()
		// Receipts count against the window too: unbounded, they would
		// pile up in the socket buffers and the latency measured would be
		// the bench's own queue.
		ok := false
		select {
		case <-ctx.Done():
		case <-u.window:
			ok = u.sendMessage(ctx, typ, "")
		}
		u.cc.receipts.Add(-1)
		if !ok {
			return false
		}
	}
}

// sendMessage writes one message of the pair's stream.
func (u *chatUser) sendMessage(ctx context.Context, typ, body string) bool {
	u.reqID++
	u.out.sent++
	p := pending{id: u.reqID, seq: u.out.sent, at: u.r.now()}
	f := append(u.frame[:0], `{"cmd":"message","type":"`...)
	f = append(f, typ...)
	f = append(f, `","to":`...)
	f = wire.AppendString(f, u.peer.acct.id)
	f = append(f, `,"id":`...)
	f = strconv.AppendUint(f, p.id, 10)
	f = append(f, `,"seq":`...)
	f = strconv.AppendUint(f, p.seq, 10)
	f = append(f, `,"ts":`...)
	f = strconv.AppendInt(f, int64(p.at), 10)
	f = append(f, `,"post_id":1,"is_sender_post":false`...)
	if body != "" {
		f = append(f, `,"msg":"`...)
		f = append(f, body...)
		f = append(f, '"')
	}
	f = append(f, '}')
	return u.send(ctx, f, p)
}

// send writes f; a message (p.id != 0) first joins the pending queue so
// that its reply, which may come at once, finds it. With --reconnect it
// waits while the reader logs in again, and a failed write is left to the
// reader, which sees the same connection end.
func (u *chatUser) send(ctx context.Context, f []byte, p pending) bool {
	u.frame = f
	u.mu.Lock()
	for u.down != nil && !u.dead {
		ch := u.down
		u.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
		u.mu.Lock()
	}
	if u.dead {
		u.mu.Unlock()
		return false
	}
	if p.id != 0 {
		u.cc.outstanding.Add(1)
		u.pending = append(u.pending, p)
	}
	ws := u.ws
	u.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, dialTimeout)
	err := ws.Write(wctx, websocket.MessageText, f)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		if u.r.cfg.Reconnect {
			return true
		}
		u.r.fail("write_" + reasonOf(err))
		return false
	}
	return true
}

func (u *chatUser) poke() {
	select {
	case u.notify <- struct{}{}:
	default:
	}
}

// read handles everything the server sends to u until the connection ends
// (or, with --reconnect, until the run closes it).
func (u *chatUser) read(ctx context.Context, closing *atomic.Bool) {
	defer u.die()
	for {
		u.mu.Lock()
		ws := u.ws
		u.mu.Unlock()
		err := u.readConn(ctx, ws)
		if closing.Load() {
			return
		}
		if !u.r.cfg.Reconnect {
			u.r.fail("connection_" + reasonOf(err))
			return
		}
		u.r.reconnect(reasonOf(err))
		u.connLost()
		if !u.relogin(ctx, closing) {
			return
		}
	}
}

func (u *chatUser) readConn(ctx context.Context, ws *websocket.Conn) error {
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		req, err := wire.ParseRequest(b)
		if err != nil {
			u.r.fail("unreadable_frame")
			continue
		}
		switch req.Cmd {
		case "message":
			typ, _ := wire.String(req.Get("type"))
			if typ == "server_ack" {
				u.reply(req)
			} else {
				u.message(req, typ)
			}
		case "presence":
			u.cc.presence.Add(1)
		default:
			u.r.fail("unexpected_" + req.Cmd)
		}
	}
}

// connLost gives up on the replies the lost connection owed: those
// messages stay unconfirmed unless they are delivered later. Their window
// slots come back, and the writer waits until relogin is done.
func (u *chatUser) connLost() {
	u.r.conns.Add(-1)
	u.mu.Lock()
	n := len(u.pending)
	u.pending = nil
	u.down = make(chan struct{})
	u.mu.Unlock()
	u.cc.outstanding.Add(-int64(n))
	for range n {
		u.window <- struct{}{}
	}
}

// relogin logs in again as u, trying each node in turn with a capped,
// jittered back-off, until it succeeds or the run ends.
func (u *chatUser) relogin(ctx context.Context, closing *atomic.Bool) bool {
	urls := u.r.cfg.URLs
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		url := urls[(u.idx+attempt)%len(urls)]
		c, err := loginFrom(ctx, url, u.acct, u.r.localAddr(u.idx))
		if err == nil {
			u.mu.Lock()
			if closing.Load() {
				u.mu.Unlock()
				c.CloseNow()
				return false
			}
			u.ws = c
			close(u.down)
			u.down = nil
			u.mu.Unlock()
			u.r.conns.Add(1)
			return true
		}
		if ctx.Err() != nil || closing.Load() {
			return false
		}
		u.r.reconnect("login_failed_" + reasonOf(err))
		t := time.NewTimer(backoff/2 + time.Duration(rand.Int64N(int64(backoff))))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// die gives up on u's unanswered requests so the drain does not wait for
// replies that cannot come; the final tally counts those messages as
// unconfirmed (or lost, if the server had accepted them).
func (u *chatUser) die() {
	u.mu.Lock()
	u.dead = true
	if u.down != nil {
		close(u.down)
		u.down = nil
	}
	n := len(u.pending)
	u.pending = nil
	q := len(u.receipts)
	u.receipts = nil
	u.mu.Unlock()
	u.cc.outstanding.Add(-int64(n))
	u.cc.receipts.Add(-int64(q))
	u.poke()
}

func (u *chatUser) reply(req *wire.Request) {
	u.mu.Lock()
	if len(u.pending) == 0 {
		u.mu.Unlock()
		u.r.fail("unexpected_reply")
		return
	}
	p := u.pending[0]
	u.pending = u.pending[1:]
	u.mu.Unlock()
	if id, _ := wire.Uint64(req.Get("ack_id")); id != p.id {
		u.r.fail("reply_out_of_order")
	}
	u.r.settle(req, p, &u.out, &u.cc.accepted)
	if res, _ := wire.String(req.Get("result")); res == "ok" {
		u.track.ack(p.seq, &u.cc.missing)
	}
	u.window <- struct{}{}
	u.cc.outstanding.Add(-1)
}

func (u *chatUser) message(req *wire.Request, typ string) {
	from, _ := wire.String(req.Get("from"))
	seq, ok1 := wire.Uint64(req.Get("seq"))
	ts, ok2 := wire.Int64(req.Get("ts"))
	if from != u.peer.acct.id || !ok1 || !ok2 || seq == 0 {
		u.r.fail("foreign_message")
		return
	}
	if id, ok := wire.Int64(req.Get("msg_id")); !ok {
		u.r.fail("message_without_msg_id")
	} else if id <= u.lastMsgID {
		if u.r.cfg.Reconnect {
			// At-least-once across a reconnect: drop it by msg_id, as an
			// app must (docs/protocol.md), and count it.
			u.cc.redelivered.Add(1)
			return
		}
		u.r.fail("msg_id_not_increasing")
	} else {
		u.lastMsgID = id
	}
	if !u.in.receive(seq) {
		return
	}
	u.peer.track.deliver(seq, &u.cc.missing)
	if typ == "chat" {
		u.cc.chats.Add(1)
		u.chatsIn++
		if u.r.cfg.Receipts {
			u.mu.Lock()
			u.receipts = append(u.receipts, "app_ack_received")
			n := int64(1)
			if u.r.cfg.ReadEvery > 0 && u.chatsIn%u.r.cfg.ReadEvery == 0 {
				u.receipts = append(u.receipts, "app_ack_read")
				n++
			}
			u.mu.Unlock()
			// Counted before the delivery below, so the drain never sees
			// everything delivered while a receipt is still to be sent.
			u.cc.receipts.Add(n)
			u.poke()
		}
	} else {
		u.cc.acks.Add(1)
	}
	u.r.delivery(time.Duration(ts))
	u.cc.unique.Add(1)
}
