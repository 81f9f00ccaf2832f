package roles

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/logs"
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
	mboxMu   sync.Mutex
	mbox     *chat.Mailbox
	chatLim  *rate.Limiter
	presLim  *rate.Limiter
	fileLim  *rate.Limiter
	pushLim  *rate.Limiter // made on the first push_subscribe or push_unsubscribe

	// Read limits (readlimit.go); the byte budget is on raw.
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
	releases     atomic.Pointer[chan int64]
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
	ss.frameLim = newLimiter(cfg.ReadRateFrames, cfg.ReadBurstFrames)
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

// User, Send, SendPersistent and SendTracked are what the feature packages
// see of a connection.
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
	if ss.user != "" {
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

func (ss *session) Signal(frame []byte) { ss.Send(frame) }

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

func (ss *session) Kick(gen int64) {
	if g := ss.gen.Load(); g != 0 && gen > g {
		go ss.shutdown(wire.CloseReplaced, "replaced")
	}
}

// Released counts a release by any older session (or a node with only a
// stale subscription) toward the ones this login waits for.
func (ss *session) Released(gen int64) {
	if gen < ss.gen.Load() {
		if ch := ss.releases.Load(); ch != nil {
			select {
			case *ch <- gen:
			default:
			}
		}
	}
}

func (ss *session) mailbox() *chat.Mailbox {
	ss.mboxMu.Lock()
	defer ss.mboxMu.Unlock()
	return ss.mbox
}

// serve starts the session's reader; it returns when the connection ends
// or its reader parks (park.go).
func (ss *session) serve() {
	if !ss.setStatus(statusAnonymous) {
		return // shut down before it started (the node is closing)
	}
	cfg := ss.srv.cfg
	ss.conn.SetReadLimit(cfg.MaxFrame)
	now := time.Now()
	ss.loginBy.Store(now.Add(cfg.LoginTimeout).UnixNano())
	ss.pingAt.Store(now.Add(cfg.IdleTimeout / 3).UnixNano())
	ss.timer.Reset(min(cfg.LoginTimeout, cfg.IdleTimeout/3))
	// The session's own count of the node's handlers: a parked session
	// has no goroutine, so the reader that ends the session releases it.
	ss.srv.handlers.Add(1)
	ss.run()
}

// run reads frames until the connection ends or the reader parks; the
// poller runs it again when a parked connection has something to read.
// Only one run is ever in progress for a session.
func (ss *session) run() {
	code, reason, parked := ss.readLoop()
	if parked {
		return
	}
	ss.shutdown(code, reason)
	ss.srv.readPoll.forget(ss)
	ss.srv.handlers.Done()
}

func (ss *session) readLoop() (code websocket.StatusCode, reason string, parked bool) {
	for {
		paused := false
		if !ss.frameTaken {
			paused = ss.waitFrame()
			ss.frameTaken = true
		}
		// No cancellable context: the library would hang a callback on it
		// for every read (and its parent keeps the map that held it); a
		// read ends when the socket closes, and shutdown closes it.
		typ, frame, err := ss.conn.Read(context.Background())
		// A frame that waited for either budget is one strike.
		if ss.raw.budget.tookPause() || paused {
			ss.strike()
		}
		if err != nil && errors.Is(err, errParked) {
			if ss.park() {
				return 0, "", true
			}
			continue
		}
		ss.frameTaken = false
		if err != nil {
			var ce websocket.CloseError
			switch {
			case errors.As(err, &ce):
				return websocket.StatusNormalClosure, "", false
			case errors.Is(err, context.Canceled):
				return websocket.StatusNormalClosure, "", false
			case errors.Is(err, websocket.ErrMessageTooBig):
				return wire.CloseTooBig, "frame too large", false
			}
			return websocket.StatusAbnormalClosure, "", false
		}
		ss.touch()
		if ss.status() >= statusLeaving {
			// Replaced, overflowed or limited: the reader goes on only to
			// meet the peer's close frame.
			ss.srv.m.ignored.Inc()
			continue
		}
		if ss.overLimit() {
			code, reason = ss.rateExceeded()
			return code, reason, false
		}
		if typ != websocket.MessageText {
			ss.reject(wire.Malformedf("binary frames are not accepted; send JSON text"))
			return wire.CloseUnsupported, "text frames only", false
		}
		req, err := wire.ParseRequest(frame)
		if err != nil {
			ss.srv.m.request("", time.Now(), wire.BadRequest)
		}
		if errors.Is(err, wire.ErrNotJSON) {
			ss.reject(wire.Malformedf("the frame is not valid UTF-8 JSON"))
			return wire.CloseInvalidPayload, "invalid JSON", false
		}
		if err != nil {
			ss.reject(wire.AsError(err))
			return wire.ClosePolicy, "bad request", false
		}
		start := time.Now()
		code, reason, stop := ss.handle(req, start)
		if stop {
			return code, reason, false
		}
	}
}

// rateExceeded ends a connection that kept exceeding its limits.
func (ss *session) rateExceeded() (websocket.StatusCode, string) {
	ss.reject(wire.Errorf(wire.RateLimited, "this connection kept exceeding its limits; reconnect later"))
	return wire.CloseRateExceeded, "rate exceeded"
}

// reject sends the generic error frame that precedes a policy close.
func (ss *session) reject(e *wire.Error) {
	ss.Send(errorFrame("error", e))
}

// closeError asks the reader to end the session with a close code; only
// dispatch returns it (shutdown itself must not run inside dispatch).
type closeError struct {
	code   websocket.StatusCode
	reason string
	metric string // the request's reason in occase_request_errors_total
}

func (e *closeError) Error() string { return e.reason }

// dispatchLive runs req unless the session is leaving; shutdown waits for
// a request that is running (dispatchMu), so none is acted on after it
// began handing back what the session holds.
func (ss *session) dispatchLive(req *wire.Request) (err error, ran bool) {
	ss.dispatchMu.Lock()
	defer ss.dispatchMu.Unlock()
	if ss.status() >= statusLeaving {
		return nil, false
	}
	return ss.dispatch(req), true
}

// handle runs one request. A panic is recovered: the connection closes
// with 1011 and every other connection is unaffected.
func (ss *session) handle(req *wire.Request, start time.Time) (code websocket.StatusCode, reason string, stop bool) {
	defer func() {
		if r := recover(); r != nil {
			ss.logger().Error("request handler panicked", zap.String("cmd", req.Cmd), zap.Any("panic", r), zap.Stack("stack"))
			ss.reject(&wire.Error{Reason: wire.Internal})
			code, reason, stop = wire.CloseInternal, "internal error", true
		}
	}()
	err, ran := ss.dispatchLive(req)
	if !ran {
		ss.srv.m.ignored.Inc()
		return 0, "", false
	}
	var ce *closeError
	if errors.As(err, &ce) {
		ss.srv.m.request(req.Cmd, start, cmp.Or(ce.metric, "closed"))
		return ce.code, ce.reason, true
	}
	if err == nil {
		ss.srv.m.request(req.Cmd, start, "")
		return 0, "", false
	}
	we := wire.AsError(err)
	ss.srv.m.request(req.Cmd, start, we.Reason)
	switch we.Reason {
	case wire.Internal:
		ss.logger().Error("request failed", zap.String("cmd", req.Cmd), zap.Error(err))
	case wire.Unavailable:
		ss.logger().Warn("request failed: redis unavailable", logs.Repeated(logs.RepeatEvery), zap.String("cmd", req.Cmd), zap.Error(err))
	case wire.RateLimited:
		ss.srv.m.rateRefused(req.Cmd)
		ss.strike()
	}
	if we.Malformed {
		ss.reject(we)
		return wire.ClosePolicy, "bad request", true
	}
	switch req.Cmd {
	case "message":
		to, _ := wire.String(req.Get("to"))
		ss.Send(chat.FailAck(req, to, we))
	case "presence":
		// presence has no reply
	default:
		ss.Send(errorFrame(req.Cmd+"_ack", we))
	}
	if we.Reason == wire.BadCredentials {
		return wire.CloseBadCredentials, "bad credentials", true
	}
	return 0, "", false
}

func (ss *session) dispatch(req *wire.Request) error {
	if ss.status() != statusActive {
		switch req.Cmd {
		case "register":
			return ss.register(req)
		case "login":
			return ss.login(req)
		case "message", "presence", "subscribe", "publish", "delete", "filenames", "update", "set_status", "renew", "push_subscribe", "push_unsubscribe":
			return wire.Errorf(wire.NotLoggedIn, "send register or login first")
		}
		return wire.Malformedf("unknown command %q", req.Cmd)
	}
	switch req.Cmd {
	case "message":
		return ss.message(req)
	case "presence":
		return ss.presence(req)
	case "register", "login":
		return wire.Errorf(wire.BadRequest, "this connection is already logged in")
	case "filenames":
		return ss.filenames(req)
	case "subscribe", "publish", "delete", "update", "set_status", "renew":
		return ss.posts(req)
	case "push_subscribe", "push_unsubscribe":
		if ss.srv.push == nil {
			return wire.Errorf(wire.Unavailable, "push notifications are not configured on this node")
		}
		// Devices change rarely; each change is a Redis script.
		if !allow(ss.pushLimiter()) {
			return wire.Errorf(wire.RateLimited, "too many device changes; slow down")
		}
		ack, err := ss.srv.push.Handle(ss.ctx, ss.user, req)
		if err != nil {
			return err
		}
		ss.Send(ack)
		return nil
	}
	return wire.Malformedf("unknown command %q", req.Cmd)
}

func (ss *session) message(req *wire.Request) error {
	// The rate comes before the frame is rewritten: a refused message
	// costs a lookup, not a copy of its members. A missing "to" is still
	// malformed first.
	if _, err := req.Str("to"); err != nil {
		return err
	}
	if !allow(ss.chatLim) {
		return wire.Errorf(wire.RateLimited, "too many messages; slow down")
	}
	m, err := ss.srv.chat.Prepare(ss.user, req)
	if err != nil {
		return err
	}
	// A recipient on this node is handed the stored message directly
	// instead of through Redis pub/sub; holding its deliverMu keeps it from
	// leaving between the store and the hand-over (after it leaves, its new
	// login fetches the queue).
	var local *session
	if p, ok := ss.srv.hub.Local(m.To).(*session); ok {
		p.deliverMu.RLock()
		if p.status() < statusLeaving {
			local = p
		} else {
			p.deliverMu.RUnlock()
		}
	}
	ack, err := ss.srv.chat.Store(ss.ctx, m, local == nil)
	if err == nil {
		ss.srv.m.chatStored.Inc()
	}
	if local != nil {
		if err == nil {
			local.Carry(m.Carried())
		}
		local.deliverMu.RUnlock()
	}
	if err != nil {
		return err
	}
	ss.Send(ack)
	return nil
}

func (ss *session) presence(req *wire.Request) error {
	to, err := req.Str("to")
	if err != nil {
		return err
	}
	if !allow(ss.presLim) {
		// Never answered (handle sends no presence reply), but counted
		// as refused and a strike there.
		return &wire.Error{Reason: wire.RateLimited}
	}
	if !chat.ValidUserID(to) || len(req.Frame) > ss.srv.cfg.Chat.MaxMessage {
		return nil // never answered; dropped
	}
	f := make([]byte, 0, len(req.Frame)+24)
	f = append(f, `{"from":`...)
	f = wire.AppendString(f, ss.user)
	f = append(f, ',')
	f = req.AppendMembers(f, "from")
	f = append(f, '}')
	if err := ss.srv.hub.Signal(ss.ctx, to, f); err != nil {
		if ss.srv.log.Core().Enabled(zap.DebugLevel) {
			ss.logger().Debug("presence not forwarded", zap.Error(err))
		}
	}
	return nil
}

func (ss *session) filenames(*wire.Request) error {
	if ss.srv.names == nil {
		return wire.Errorf(wire.Unavailable, "image uploads are not configured on this node")
	}
	if !allow(ss.fileLim) {
		return wire.Errorf(wire.RateLimited, "too many filename requests; slow down")
	}
	names, err := ss.srv.names.Names(9)
	if err != nil {
		return err
	}
	b := []byte(`{"cmd":"filenames_ack","result":"ok","names":[`)
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendString(b, n)
	}
	b = append(b, "]}"...)
	ss.SendPersistent(b)
	return nil
}

func (ss *session) posts(req *wire.Request) error {
	if ss.srv.posts == nil {
		return wire.Errorf(wire.Unavailable, "posts are not available on this node")
	}
	switch req.Cmd {
	case "subscribe":
		return ss.srv.posts.Subscribe(ss.ctx, ss, req)
	case "publish":
		return ss.srv.posts.Publish(ss.ctx, ss, req)
	case "update":
		return ss.srv.posts.Update(ss.ctx, ss, req)
	case "set_status":
		return ss.srv.posts.SetStatus(ss.ctx, ss, req)
	case "renew":
		return ss.srv.posts.Renew(ss.ctx, ss, req)
	default:
		return ss.srv.posts.Delete(ss.ctx, ss, req)
	}
}

func allow(l *rate.Limiter) bool { return l == nil || l.Allow() }

func newLimiter(r float64, burst int) *rate.Limiter {
	if r <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(r), burst)
}

// errorFrame is a fail reply: {"cmd":cmd,"result":"fail","reason":...}.
func errorFrame(cmd string, e *wire.Error) []byte {
	b := []byte(`{"cmd":`)
	b = wire.AppendString(b, cmd)
	b = append(b, `,"result":"fail","reason":`...)
	b = wire.AppendString(b, e.Reason)
	if e.Detail != "" {
		b = append(b, `,"detail":`...)
		b = wire.AppendString(b, e.Detail)
	}
	return append(b, '}')
}

// tick is the session's one timer (one per connection, not two): it ends
// a session not logged in by its login deadline, and every third of the
// idle timeout it pings. A ping closes a connection that has sent nothing
// (no frame, no pong) for the idle timeout, and sends the others a ping
// frame. The ping goes through the outbox like any frame and nothing
// waits for its pong: the library's Ping would hold a goroutine per
// connection until the pong and leave a map behind in the connection; the
// pong, like every byte the peer sends, counts as activity when the
// reader sees it (corkConn.owner).
func (ss *session) tick() {
	cfg := ss.srv.cfg
	st := ss.status()
	if st >= statusLeaving {
		return
	}
	now := time.Now().UnixNano()
	if st < statusActive && now >= ss.loginBy.Load() {
		ss.shutdown(wire.CloseLoginTimeout, "login timeout")
		return
	}
	if now >= ss.pingAt.Load() {
		idle := time.Duration(cfg.Clock().UnixNano() - ss.lastActivity.Load())
		if idle >= cfg.IdleTimeout {
			ss.shutdown(wire.CloseIdle, "idle timeout")
			return
		}
		ss.out.push(item{data: pingFrame, kind: transient})
		ss.pingAt.Store(now + int64(cfg.IdleTimeout/3))
	}
	next := ss.pingAt.Load()
	if ss.status() < statusActive {
		next = min(next, ss.loginBy.Load())
	} else if ss.status() >= statusLeaving {
		return
	}
	ss.timer.Reset(time.Duration(next - now))
}

// isPing tells the outbox's ping item from frames (by identity: no frame
// the node sends is pingFrame itself).
func isPing(b []byte) bool { return len(b) == len(pingFrame) && &b[0] == &pingFrame[0] }

// shutdown ends the session once: it stops acting on frames, waits for
// the request in flight, hands back what it holds (written chat messages
// are removed from Redis, unwritten replies requeued), lets go of the
// user, tells newer logins so, and closes the socket with code. It must
// not be called from inside dispatch (that returns a closeError instead).
func (ss *session) shutdown(code websocket.StatusCode, reason string) {
	if !ss.setStatus(statusLeaving) {
		return
	}
	if code == wire.CloseRateExceeded {
		ss.srv.coolOff.add(ss.coolOffKey(), ss.srv.cfg.Clock())
	}
	// A parked reader reads on, to meet the peer's close frame.
	ss.wake()
	ss.timer.Stop()
	ss.srv.untrack(ss)
	// A request read before the session began leaving finishes first; no
	// other starts (dispatchLive checks the status under the same lock).
	// After this, the reader's fields (user, attached) are settled.
	ss.dispatchMu.Lock()
	ss.dispatchMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.DrainTimeout)
	defer cancel()

	// A local sender that saw this session not leaving has finished its
	// store and poke; later ones see it leaving and notify through Redis.
	ss.deliverMu.Lock()
	ss.deliverMu.Unlock()

	// Let queued frames (an error reply, a last ack) go out before the
	// close frame, unless the peer is gone, idle or not reading.
	switch code {
	case websocket.StatusAbnormalClosure, wire.CloseSlowConsumer, wire.CloseIdle:
	default:
		fctx, fcancel := context.WithTimeout(ctx, min(ss.srv.cfg.WriteTimeout, 2*time.Second))
		ss.out.drain(fctx)
		fcancel()
	}
	pending := ss.out.stop()
	if m := ss.mailbox(); m != nil {
		m.Close(ctx)
	}
	if ss.user != "" {
		if ss.srv.posts != nil {
			ss.srv.posts.Leave(ss)
		}
		if len(pending) > 0 {
			ss.srv.m.requeued.Add(float64(len(pending)))
			if err := ss.srv.chat.Requeue(ctx, ss.user, pending); err != nil {
				ss.leftLogger().Error("lost undelivered replies", zap.Int("count", len(pending)), zap.Error(err))
			}
		}
	}
	// Also for a session kicked in the middle of its own login: it is
	// attached, holds nothing yet, and must still let go and say so.
	if ss.attached {
		ss.srv.hub.Detach(ctx, ss.user, ss)
		if code == wire.CloseReplaced {
			ss.srv.hub.Release(ctx, ss.user, ss.gen.Load())
		}
	}
	ss.timer.Stop()
	ss.srv.m.closed(int(code))
	ss.setStatus(statusClosed)
	go func() {
		// Close waits for the peer's close frame; never hold anyone up.
		ss.conn.Close(code, reason)
	}()
	// The child logger costs an allocation of a kilobyte or so: built
	// only when the line is written.
	if ss.user != "" && ss.srv.log.Core().Enabled(zap.DebugLevel) {
		ss.leftLogger().Debug("session closed", zap.Int("code", int(code)), zap.String("reason", reason))
	}
}

// pushLimiter bounds device changes: a burst of pushBurst, then one every
// pushEvery. Only the reader calls it, so it needs no lock.
func (ss *session) pushLimiter() *rate.Limiter {
	if ss.pushLim == nil {
		ss.pushLim = rate.NewLimiter(rate.Every(pushEvery), pushBurst)
	}
	return ss.pushLim
}

const (
	pushEvery = 2 * time.Second
	pushBurst = 10
)
