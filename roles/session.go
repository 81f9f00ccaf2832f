package roles

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/presence"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// session is one WebSocket connection. Its reader goroutine handles
// requests one at a time, so replies leave in request order and nothing a
// request causes can overtake its reply; everything unsolicited goes
// through the same outbox.
type session struct {
	srv    *Server
	conn   *websocket.Conn
	raw    *corkConn // the socket under conn
	remote string
	out    *outbox

	// ctx is what the session's requests run under: not cancellable,
	// because every context derived from a cancellable one (a Redis
	// call's timeout) leaves a map behind in its parent, hundreds of bytes
	// per idle connection. Requests are bounded by their own timeouts,
	// and shutdown waits for the one in flight.
	ctx context.Context
	// The node's write watchdog closes the socket when a write has been
	// going on for longer than the write timeout (a peer that stopped
	// reading): per batch, two atomic stores instead of a timer or a
	// context.
	writeStart atomic.Int64 // UnixNano of the write in progress; 0 when none

	// st is the session's status (status.go): changed only by setStatus.
	st    atomic.Int32
	leave chan struct{} // closed when the status becomes leaving
	// dispatchMu is held by the reader while it runs a request; shutdown
	// takes it once after the session is leaving, so a request already
	// running finishes before anything is handed back (a subscribe in
	// flight cannot re-enter the posts index after Leave), and none
	// starts after.
	dispatchMu sync.Mutex

	// Written by the reader during register/login, before the session is
	// attached to the hub or becomes active; other goroutines read user
	// only after that, and shutdown only after the dispatch barrier.
	user     string
	attached bool         // the hub routes this user's signals here
	gen      atomic.Int64 // generation of this login (set before it completes)
	// peerClosed: the reader met the peer's close frame, which the
	// library answered and then closed the connection.
	peerClosed atomic.Bool
	mboxMu     sync.Mutex
	mbox       *chat.Mailbox
	chatLim    *rate.Limiter // the per-user limiters are made at their first use (allowLazy)
	presLim    *rate.Limiter
	fileLim    *rate.Limiter
	pushLim    *rate.Limiter // made on the first push_subscribe or push_unsubscribe
	blockLim   *rate.Limiter // block, unblock and blocks (blocks.go)
	reportLim  *rate.Limiter // report (reports.go)
	noticeLim  *rate.Limiter // notices and notices_seen (notices.go)
	// wantNotices: the session asked for notices once, so notices are
	// pushed to it as they come (notices.go).
	wantNotices atomic.Bool
	// blocked holds the ids this user blocks, for dropping their
	// presence signals (blocks.go); nil while it blocks nobody.
	blocked atomic.Pointer[blockSet]
	delLim  *rate.Limiter // made on the first delete_account

	// deleting: this session runs a delete_account (it closes after its
	// ack, not on the deletion's announcement); accountGone: the user's
	// account was deleted (by this session or announced on the user's
	// channel), so nothing is handed back to it (deleteaccount.go).
	deleting    atomic.Bool
	accountGone atomic.Bool
	// banned: the user's ban was announced on its channel while this
	// session's login had no generation yet (bans.go); the login meets it
	// once it has one.
	banned atomic.Bool

	// Read limits (readlimit.go); the byte budget is on raw. frameLim is
	// made at the first frame and dropped, while full, when the reader
	// parks (releaseLimiters).
	frameLim *rate.Limiter
	abuse    *rate.Limiter
	strikes  atomic.Int64 // not yet weighed by the reader

	// deliverMu orders local deliveries against shutdown: a sender on this
	// node stores without a pub/sub notify while holding it for reading
	// and the recipient is not leaving, and shutdown takes it for writing
	// before it lets go of the user.
	deliverMu sync.RWMutex

	// Parking (park.go): parkSt is readerRunning or readerParked;
	// pollTok names the session to the poller (0: never parked);
	// frameTaken, the reader's own, says the frame budget was already
	// charged for the frame a parked reader was waiting for.
	parkSt     atomic.Int32
	pollTok    uint64
	frameTaken bool

	// releases counts older sessions letting go, while a login waits
	// for them: made by login before the session can hear of one, and
	// dropped after, so an idle session holds none.
	releases atomic.Pointer[chan int64]
	// A login's session is attached before its script checks the
	// password (accounts.go): kickedBy is the newest generation that
	// kicked it before it learnt its own; loginFailed says the check
	// failed (a kick then finds nothing to wait for: the hub counts its
	// detach as its answer).
	kickedBy     atomic.Int64
	failedUser   string // the user of a login that failed attached (set once, before loginFailed)
	loginFailed  atomic.Bool
	lastActivity atomic.Int64
	// timer runs tick: the login timeout, then pings. loginBy and pingAt
	// are its deadlines (UnixNano, real time).
	timer   *time.Timer
	loginBy atomic.Int64
	pingAt  atomic.Int64
}

func (s *Server) newSession(conn *websocket.Conn, raw *corkConn, remote string) *session {
	ss := &session{srv: s, conn: conn, raw: raw, remote: remote, ctx: context.Background(),
		leave: make(chan struct{})}
	cfg := s.cfg
	raw.budget = newByteBudget(cfg.ReadRateBytes, cfg.ReadBurstBytes, func(d time.Duration) { ss.throttled("bytes", d) })
	ss.out = newOutbox(ss.writeFrames, func() {
		s.m.overflows.Inc()
		go ss.shutdown(wire.CloseSlowConsumer, "send queue full")
	},
		s.cfg.SendQueue, s.cfg.SendQueueBytes, s.cfg.WriteBatch, s.cfg.WriteDelay)
	// The timer exists (stopped) before anything can fire, so shutdown
	// may always stop it.
	ss.timer = time.AfterFunc(time.Hour, ss.tick)
	ss.timer.Stop()
	raw.owner = ss
	raw.mu.Lock()
	raw.framing = true
	raw.mu.Unlock()
	ss.touch()
	return ss
}

// logger returns the node's logger with this connection's address and,
// while logged in, its user. It is built when something is logged, not held
// by every idle connection (a zap child logger costs kilobytes).
func (ss *session) logger() *zap.Logger {
	if ss.status() == statusActive {
		return ss.srv.log.With(zap.String("remote", ss.remote), zap.String("user", ss.user))
	}
	return ss.srv.log.With(zap.String("remote", ss.remote))
}

// leftLogger is logger for shutdown, after the dispatch barrier: the
// user is named whether or not the session got as far as active.
func (ss *session) leftLogger() *zap.Logger {
	if ss.user != "" {
		return ss.srv.log.With(zap.String("remote", ss.remote), zap.String("user", ss.user))
	}
	return ss.srv.log.With(zap.String("remote", ss.remote))
}

func (ss *session) touch() { ss.lastActivity.Store(ss.srv.cfg.Clock().UnixNano()) }

// writeFrames runs on the outbox's single writer goroutine only. The
// library frames each message into the corked connection's buffer; uncork
// sends the batch in one write. It succeeds or fails as a whole: a failed
// batch is reported unwritten even if some of it reached the peer, so chat
// stays in Redis and is delivered again under the same msg_id.
func (ss *session) writeFrames(frames [][]byte) error {
	ss.writeStart.Store(time.Now().UnixNano())
	defer ss.writeStart.Store(0)
	// Corked, the library's writes only append to memory, so they get no
	// context of their own (a cancellable one costs an AfterFunc per
	// frame). The one thing that could block them, the library's lock held
	// by a ping or pong stuck on the network, ends when the watchdog closes
	// the socket.
	ss.raw.cork()
	var err error
	pings := 0
	for _, b := range frames {
		if isPing(b) {
			ss.raw.queuePing()
			pings++
			continue
		}
		if err = ss.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
			break
		}
	}
	if ferr := ss.raw.uncork(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	ss.srv.m.framesOut.Add(float64(len(frames) - pings))
	ss.srv.m.sockWrites.Inc()
	return nil
}

// abortWrite ends a write that has taken too long (a peer that stopped
// reading) by closing the socket: the write fails, and so does the read
// loop, which ends the session.
func (ss *session) abortWrite() { ss.raw.Close() }

// What the feature packages see of a connection: posts.Conn (User,
// Client, Send, SendLive, SendPersistent), chat's writer (SendTracked) and
// presence.Peer (Signal, Notify, Carry, Kick, Released).
func (ss *session) User() string { return ss.user }

func (ss *session) Send(frame []byte) bool {
	return ss.out.push(item{data: frame, kind: transient})
}

// SendLive is for live posts: the frame may wait up to --write-delay for
// others to share its write (chat, presence and replies never wait).
func (ss *session) SendLive(frame []byte) bool {
	return ss.out.push(item{data: frame, kind: transient, deferrable: true})
}

func (ss *session) SendPersistent(frame []byte) bool {
	if ss.out.push(item{data: frame, kind: persistent}) {
		return true
	}
	// Never queued: the connection is ending. Keep it for the next login.
	// Persistent frames answer what only a logged-in session can ask, so
	// its user is set (and was seen by whoever calls this).
	if ss.user != "" && !ss.accountGone.Load() {
		if err := ss.srv.chat.Requeue(context.Background(), ss.user, [][]byte{frame}); err != nil {
			ss.logger().Error("lost a reply that could not be delivered nor stored", zap.Error(err))
		}
	}
	return false
}

// SendTracked is the mailbox's path: its frames are chat deliveries.
func (ss *session) SendTracked(frame []byte, done func(error)) bool {
	return ss.out.push(item{data: frame, kind: transient, done: func(err error) {
		if err == nil {
			ss.srv.m.chatDeliv.Inc()
		}
		done(err)
	}})
}

// presence.Peer: called from the subscriber's reader, never blocking.

// Signal forwards a presence frame, unless the session's login has not
// passed its password check yet (it is attached before that: accounts.go).
func (ss *session) Signal(frame []byte) {
	if ss.gen.Load() != 0 && !ss.blocks(frame) {
		ss.Send(frame)
	}
}

// Pending (presence.Pending): a login attached before its password was
// checked; the hub does not take it for the user's session.
func (ss *session) Pending() bool { return ss.gen.Load() == 0 }

func (ss *session) Notify() {
	if m := ss.mailbox(); m != nil {
		m.Poke()
	}
}

// Carry is presence.Carrier: a chat message stored for this user, carried
// with its store.
func (ss *session) Carry(prev, id int64, frame string) {
	if m := ss.mailbox(); m != nil {
		m.Carry(prev, id, frame)
	}
}

func (ss *session) Kick(gen int64) presence.Answer {
	if g := ss.gen.Load(); g != 0 {
		return ss.kickAt(g, gen)
	}
	if ss.loginFailed.Load() {
		// Detached or about to: it holds nothing.
		return presence.Clear
	}
	// A login in flight: attached before its script, it learns its
	// generation only from the reply, and a newer login's kick may come
	// first. The kick is kept for the login to weigh once it knows
	// (loginKicked); the generation is read again after, so that a login
	// that stored it meanwhile without seeing the kick is still told.
	for {
		k := ss.kickedBy.Load()
		if gen <= k || ss.kickedBy.CompareAndSwap(k, gen) {
			break
		}
	}
	if g := ss.gen.Load(); g != 0 {
		return ss.kickAt(g, gen)
	}
	// The hub waits for it: it detaches (a failed login, a login
	// replaced) or claims its generation (hub.Claim).
	return presence.Owes
}

// kickAt weighs a kick of generation gen against the session's own g.
func (ss *session) kickAt(g, gen int64) presence.Answer {
	switch {
	case gen > g:
		go ss.shutdown(wire.CloseReplaced, "replaced")
		return presence.Owes
	case gen == g:
		return presence.Own
	}
	return presence.Clear
}

// Released passes a node's release to the login waiting for them, if it
// is one this login counts (releaseCounts). While the login's own
// generation is not known yet, every release is passed on and weighed
// once it is (awaitReleases).
func (ss *session) Released(gen int64) {
	if g := ss.gen.Load(); g == 0 || releaseCounts(gen, g) {
		if ch := ss.releases.Load(); ch != nil {
			select {
			case *ch <- gen:
			default:
			}
		}
	}
}

// releaseCounts tells whether a login of generation g counts the release
// r (presence.Peer.Released): a node's answer to its own kick (r == -g),
// or the release of an older session by a node of an older version (0 <=
// r < g). A node's answer to an older kick is not for it: a node whose
// older session owed two kicks (one login after another while it was
// handing back) answers each once, and counting both would let the newer
// login start before another node has handed back.
func releaseCounts(r, g int64) bool {
	if r < 0 {
		return r == -g
	}
	return r < g
}

func (ss *session) mailbox() *chat.Mailbox {
	ss.mboxMu.Lock()
	defer ss.mboxMu.Unlock()
	return ss.mbox
}
