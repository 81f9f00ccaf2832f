package roles

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/keyrate"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
	"golang.org/x/crypto/blake2b"
)

const (
	passwordLen      = 16 // 96 bits from [A-Za-z0-9+-]
	passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-"
)

// newPassword draws passwordLen characters from a 64-letter alphabet; 64
// divides 256, so masking a random byte is unbiased.
func newPassword() string {
	b := make([]byte, passwordLen)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	for i := range b {
		b[i] = passwordAlphabet[b[i]&63]
	}
	return string(b)
}

// digest is the keyed digest kept in Redis instead of the password.
func (s *Server) digest(password string) string {
	h, _ := blake2b.New256(s.secret)
	h.Write([]byte(password))
	return hex.EncodeToString(h.Sum(nil))
}

func (ss *session) register(req *wire.Request) error {
	if err := ss.coolingOff(""); err != nil {
		return err
	}
	ss.optInNotices(req)
	undo, err := ss.srv.admitRegistration(ss.ctx, ss.remote, req)
	if err != nil {
		return err
	}
	pwd := newPassword()
	now := ss.srv.cfg.Clock().UnixMilli()
	id, err := ss.srv.broker.CreateUser(ss.ctx, ss.srv.digest(pwd), now)
	if err != nil {
		undo() // no account made: the address and the token keep their budget
		return unavailable(err)
	}
	ss.gen.Store(1)
	ss.user = id
	if _, err := ss.srv.hub.Attach(ss.ctx, id, ss); err != nil {
		return unavailable(err)
	}
	ss.attached = true
	ss.becomeUser()
	b := []byte(`{"cmd":"register_ack","result":"ok","id":`)
	b = wire.AppendString(b, id)
	b = append(b, `,"password":`...)
	b = wire.AppendString(b, pwd)
	b = append(b, `,"epoch":`...)
	b = wire.AppendString(b, ss.srv.Epoch())
	b = append(b, '}')
	ss.pushToken(req)
	ss.Send(b)
	ss.startMailbox()
	if ss.srv.log.Core().Enabled(zap.InfoLevel) {
		ss.logger().Info("registered")
	}
	return nil
}

func (ss *session) login(req *wire.Request) error {
	user, err := req.Str("user")
	if err != nil {
		return err
	}
	ss.optInNotices(req)
	pwd, err := req.Str("password")
	if err != nil {
		return err
	}
	srv := ss.srv
	if !chat.ValidUserID(user) {
		return &wire.Error{Reason: wire.BadCredentials}
	}
	if err := ss.coolingOff(user); err != nil {
		return err
	}
	// The session is attached first (the user's channel subscribed, the
	// session among the hub's peers), so that the kick the script sends
	// can already reach any login after it. Until the password has passed
	// it hears nothing (Signal), delivers nothing (its mailbox is held)
	// and kicks no one; a kick it gets meanwhile waits for its generation
	// (Kick, loginKicked).
	// A failed attempt before this one on the connection (a Redis error
	// answers unavailable and leaves it open) left its own state: a kick
	// it got and its failure are none of this attempt's. A kick of that
	// attempt may still be on its way (a newer login took it among its
	// older sessions before it detached): for the same user it is a kick
	// of this login too (its generation is below this one's, or a newer
	// login exists), but for another user its generation means nothing,
	// so a connection whose attached login failed logs in as that user
	// only.
	if ss.failedUser != "" && user != ss.failedUser {
		return wire.Errorf(wire.BadRequest, "a login on this connection failed: log in as the same user, or reconnect")
	}
	ss.kickedBy.Store(0)
	ss.loginFailed.Store(false)
	ss.accountGone.Store(false)
	ss.banned.Store(false)
	ss.user = user
	releases := make(chan int64, 8)
	ss.releases.Store(&releases)
	defer ss.releases.Store(nil)
	m := ss.holdMailbox()
	_, err = srv.hub.Attach(ss.ctx, user, ss)
	if err != nil {
		ss.user = ""
		return unavailable(err)
	}
	ss.attached = true
	// One script (one round trip) checks the password, makes the new
	// generation, kicks every older session of the user in the whole
	// cluster, and reads the post quota and the first batch of the queue
	// (broker.LoginFetch). The digest is compared in Redis, in a time that
	// does not depend on the digests nor on whether the user exists.
	lr := broker.LoginRequest{Digest: srv.digest(pwd), Now: srv.cfg.Clock().UnixMilli(),
		TTLms: srv.chat.QueueTTL().Milliseconds(), Batch: srv.chat.FetchBatch()}
	qr, quotaInScript := srv.posts.(loginQuotaReader)
	if quotaInScript {
		lr.Quota, lr.QuotaNow = qr.LoginQuota()
	}
	st, ok, err := srv.broker.LoginFetch(ss.ctx, user, lr)
	if srv.afterLoginScript != nil {
		srv.afterLoginScript(ss)
	}
	if err != nil || !ok {
		ss.failLogin()
		if errors.Is(err, broker.ErrBanned) {
			return ss.refuseBanned(user)
		}
		if err != nil {
			return unavailable(err)
		}
		ss.logger().Info("login failed", zap.String("user", user))
		return &wire.Error{Reason: wire.BadCredentials}
	}
	gen := st.Gen
	ss.setBlocks(st.Blocks)
	ss.gen.Store(gen)
	// Older sessions on this node, and attempts not checked yet, are this
	// login's to wait for; the hub gathers them (its kick may have come
	// through the channel first, or come later: either way once).
	local, localDone := srv.hub.Claim(user, ss, gen)
	if ss.kickedBy.Load() > gen {
		// A newer login kicked this one before it knew its generation.
		return &closeError{code: wire.CloseReplaced, reason: "replaced", metric: "replaced"}
	}
	if ss.accountGone.Load() {
		// The account was deleted between this login's script and its
		// generation (AccountDeleted let it pass as a login not checked).
		return &closeError{code: wire.CloseAccountDeleted, reason: wire.CloseReason(wire.CloseAccountDeleted), metric: "account_deleted"}
	}
	if ss.banned.Load() {
		// The user was banned between this login's script and its
		// generation (Banned let it pass as a login not checked): it is
		// refused as a login after the ban is.
		return ss.refuseBanned(user)
	}
	// One login per user in the whole cluster: every older session hands
	// back what it holds and says so before this one starts delivering.
	// The script's kick reached every other node holding the user's
	// channel (this node is subscribed too and counts once); each answers
	// with one release. The older sessions on this node were kicked by
	// Claim (or the kick's route) and are waited for through localDone.
	remote := max(st.Receivers-1, 0)
	others := remote + int64(local)
	ss.awaitReleases(releases, remote, localDone)
	if !ss.becomeUser() {
		return nil // a still newer login displaced this one while it waited
	}
	remaining := st.Remaining
	if srv.posts != nil && !quotaInScript {
		if remaining, err = srv.posts.RemainingPosts(ss.ctx, user); err != nil {
			ss.logger().Warn("could not read the post quota", zap.Error(err))
		}
	}
	b := []byte(`{"cmd":"login_ack","result":"ok","remaining_posts":`)
	b = strconv.AppendInt(b, int64(remaining), 10)
	b = append(b, `,"epoch":`...)
	b = wire.AppendString(b, srv.Epoch())
	if srv.posts != nil {
		// The user's live posts on this node, those under review
		// included: it tells an app that this node answers my_posts
		// (an older node never sends it), and how many to expect.
		b = append(b, `,"my_posts":`...)
		b = strconv.AppendInt(b, int64(srv.posts.MineCount(user)), 10)
	}
	if st.Notices > 0 {
		// Only when some wait: an app that knows nothing of notices
		// ignores an extra member, and one that does asks for them.
		b = append(b, `,"notices":`...)
		b = strconv.AppendInt(b, int64(st.Notices), 10)
	}
	b = append(b, '}')
	ss.pushToken(req)
	ss.Send(b)
	switch {
	case m == nil:
		// The session is leaving: no mailbox was made.
	case others > 0:
		// Older sessions handed back what they held after the read: what
		// they wrote is gone from the queue, what they had not is back
		// in it. Read it afresh.
		m.Start()
	default:
		m.StartFetched(st.Fetched)
	}
	return nil
}

// failLogin undoes the attach of a login whose script failed or refused
// it: the session leaves the user's peers and channel. Its detach answers
// a kick it got meanwhile (the hub's release for that kick waits no longer
// for it).
//
// The session is no one's after it: its user is cleared (a retry on the
// connection, its cooling-off key and its shutdown must not act as that
// user) and its held mailbox closed.
func (ss *session) failLogin() {
	// Set once: later logins on the connection are of this user only.
	if ss.failedUser == "" {
		ss.failedUser = ss.user
	}
	ss.loginFailed.Store(true)
	ss.attached = false
	ss.srv.hub.Detach(ss.ctx, ss.user, ss)
	ss.mboxMu.Lock()
	m := ss.mbox
	ss.mbox = nil
	ss.mboxMu.Unlock()
	if m != nil {
		m.Close(ss.ctx) // held: it wrote nothing, so there is nothing to remove
	}
	ss.user = ""
}

// loginQuotaReader is a posts service whose quota a login reads in its
// own script (posts.Service).
type loginQuotaReader interface {
	LoginQuota() (broker.Quota, int64)
}

// holdMailbox makes the session's mailbox, held (chat.MailboxHeld),
// unless the session began leaving (shutdown then finds none to close);
// nil then.
func (ss *session) holdMailbox() *chat.Mailbox {
	ss.mboxMu.Lock()
	defer ss.mboxMu.Unlock()
	if ss.status() >= statusLeaving {
		return nil
	}
	m := ss.srv.chat.MailboxHeld(ss.user, ss)
	ss.mbox = m
	return m
}

// awaitReleases waits for n other nodes to let go and for the local
// peers to detach (local closed), or for the displace timeout (an older
// node that died cannot answer; what it held is in Redis).
func (ss *session) awaitReleases(releases <-chan int64, n int64, local <-chan struct{}) {
	select {
	case <-local:
		local = nil
	default:
	}
	if n <= 0 && local == nil {
		return
	}
	t := time.NewTimer(ss.srv.cfg.DisplaceTimeout)
	defer t.Stop()
	for n > 0 || local != nil {
		select {
		case r := <-releases:
			if releaseCounts(r, ss.gen.Load()) {
				n--
			}
		case <-local:
			local = nil
		case <-t.C:
			ss.logger().Info("an older session did not let go in time; continuing", zap.String("user", ss.user), zap.Int64("missing", n), zap.Bool("local", local != nil))
			return
		case <-ss.leave:
			return
		}
	}
}

// becomeUser completes a login of ss.user (set, with the generation, before
// the session was attached to the hub). It fails when the session is
// already leaving.
func (ss *session) becomeUser() bool {
	return ss.setStatus(statusActive)
}

// startMailbox starts delivering the user's queue, unless the session
// began leaving meanwhile (its shutdown then finds no mailbox to close, so
// none may be started after it looked).
func (ss *session) startMailbox() {
	ss.mboxMu.Lock()
	if ss.status() >= statusLeaving {
		ss.mboxMu.Unlock()
		return
	}
	m := ss.srv.chat.Mailbox(ss.user, ss)
	ss.mbox = m
	ss.mboxMu.Unlock()
	m.Poke()
}

func unavailable(err error) error {
	return &wrapped{we: &wire.Error{Reason: wire.Unavailable}, err: err}
}

// wrapped carries a client reason and the operator's error together.
type wrapped struct {
	we  *wire.Error
	err error
}

func (w *wrapped) Error() string { return w.err.Error() }
func (w *wrapped) Unwrap() []error {
	return []error{w.we, w.err}
}

// addrLimiter rate-limits by client address, in a table of at most
// maxLimitedAddrs addresses (keyrate: a full table forgets the address used
// least recently, so new addresses never share a bucket an adversary
// drained, and memory stays bounded however many addresses it rotates).
type addrLimiter struct {
	l     *keyrate.Limiter
	clock func() time.Time
}

const maxLimitedAddrs = 100_000

func newAddrLimiter(r float64, burst int, clock func() time.Time) *addrLimiter {
	if r <= 0 {
		return &addrLimiter{}
	}
	return &addrLimiter{l: keyrate.New(r, burst, maxLimitedAddrs), clock: clock}
}

func (a *addrLimiter) allow(addr string) bool {
	if a.l == nil {
		return true
	}
	ok, _ := a.l.Allow(addr, a.clock())
	return ok
}

// pushToken registers the original app's FCM "token" of register and
// login (an empty one removes the user's FCM devices). A bad or refused
// token does not fail the login.
func (ss *session) pushToken(req *wire.Request) {
	raw := req.Get("token")
	if raw == nil {
		return
	}
	tok, ok := wire.String(raw)
	if !ok {
		return
	}
	if err := ss.srv.push.SetFCMToken(ss.ctx, ss.user, tok); err != nil {
		ss.logger().Info("push token not registered", zap.String("reason", wire.AsError(err).Reason))
	}
}
