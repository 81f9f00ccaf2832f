// Package presence owns who is connected to this node and the live signals
// between connected users. Each logged-in user has one pub/sub channel,
// subscribed by the node that holds the user and only by it. The channel
// carries these signals, by their first byte:
//
//	p<frame>  a typing (or other) presence frame to forward to the user
//	n         chat messages are waiting in the user's queue
//	m<prev> <frame>  a chat message just stored in the user's queue (the
//	          store script publishes it; see broker.ParseCarried)
//	k<gen>    a login of generation gen happened: older sessions must go
//	r-<gen>   a node has let go of what the kick of generation gen asked
//	          for: one per node and kick, once every local peer it reached
//	          has handed back (nodes of an older version send r<gen>, one
//	          per session, with that session's generation, or r0)
//	x         the user's account was deleted: every session must close
//	          (broker.DeleteAccount publishes it; see Ender)
//
// Presence frames are never stored: when the user is offline they vanish.
package presence

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Peer is a logged-in connection as presence sees it. Its methods are called
// from the subscriber's reader and must not block.
type Peer interface {
	// Signal forwards a presence frame (transient: may be dropped).
	Signal(frame []byte)
	// Notify says chat messages are waiting in Redis.
	Notify()
	// Kick says a login of generation gen happened; a peer of an older
	// generation must hand back what it holds and close. It answers
	// whether the hub must wait for it (Owes: it detaches once it has
	// handed back) and is called with the hub's lock held.
	Kick(gen int64) Answer
	// Released says a node let go of the user: gen < 0, its one answer
	// to the kick of generation -gen; gen >= 0, from a node of an older
	// version, the session of generation gen (0: none, only a stale
	// subscription). A login counts only the answers to its own kick
	// (a node answers every kick, also an older one that a peer still
	// owed) and the older releases.
	Released(gen int64)
}

// Answer is what a peer says to a kick.
type Answer int8

const (
	// Owes: an older session, or a login whose password is not checked
	// yet. The node's release waits for it to detach (or, for a login,
	// to learn a generation that is not older than the kick's: Claim).
	Owes Answer = iota
	// Clear: nothing to hand back (a newer generation, a failed login).
	Clear
	// Own: the kick is this peer's own login's (its node does not answer
	// it: the login waits for its local peers through Claim).
	Own
)

// maxGathers bounds the kicks a node gathers answers for per user; past
// it the oldest is answered at once (its login may start early, never
// lose anything).
const maxGathers = 16

// gather collects the answer of one node to one kick: the local peers the
// kick reached that must hand back first. The node releases once, when
// the last of them detached (or learnt it owes nothing).
type gather struct {
	gen     int64
	members []Peer
	// owner is the login that sent the kick, on its own node: done is
	// closed instead of a release published.
	owner Peer
	done  chan struct{}
	// heard: the kick came through the channel. An owned gather that
	// finished before it did is kept until then (or the owner's detach),
	// so that the late kick is not answered again.
	heard bool
}

// Carrier is a Peer that takes a chat message as it was stored (see
// chat.Mailbox.Carry). A peer that is not one is told to fetch instead.
type Carrier interface {
	Carry(prev, id int64, frame string)
}

// Pending is a Peer that may be attached before it is anyone's: a login
// whose password is not checked yet (roles: it is attached first so that
// the login's kick can reach it). Local passes over it while Pending says
// so: it drops presence frames and holds chat messages unwritten, so
// handing it what is for the user would keep that from the user's session.
type Pending interface {
	Pending() bool
}

// Ender is a Peer that can be told its user's account is gone (the 'x'
// signal): it closes without handing anything back to the user. A peer
// that is not one is left to find out at its next request.
type Ender interface {
	AccountDeleted()
}

// Banner is a Peer that can be told its user was banned (the 'b' signal,
// broker.BanUser): it closes, keeping what it holds for the user (the
// account stays). A peer that is not one is left to find out at its next
// login.
type Banner interface {
	Banned()
}

// Noticer is a Peer that can be handed a notice for its user (the 'o'
// signal, broker.AddNotice): a JSON object it pushes to its client if
// the client asked for notices. A peer that is not one leaves the notice
// in Redis for the client to ask for.
type Noticer interface {
	Notice(notice []byte)
}

// Hub routes signals to the peers connected to this node.
type Hub struct {
	b   *broker.Client
	log *zap.Logger

	mu sync.RWMutex
	// Usually one peer per user. During a displacement on this node an
	// older and a newer session coexist, attached in any order; signals go
	// to all of them and each decides by its generation.
	peers map[string][]Peer
	// Kicks being answered, per user: at most maxGathers each, every
	// member a peer in peers (Detach removes it), so they live no longer
	// than the peers they wait for.
	gathers map[string][]*gather
	// answer publishes this node's one release for the kick of user's
	// generation gen (tests count them here). Called with mu held: it
	// must not block.
	answer func(user string, gen int64)
}

// New returns a hub and starts routing the user channels of b to it.
func New(b *broker.Client, log *zap.Logger) *Hub {
	h := &Hub{b: b, log: log, peers: map[string][]Peer{}, gathers: map[string][]*gather{}}
	h.answer = func(user string, gen int64) { go h.Release(context.Background(), user, -gen) }
	b.Handle("c:{", h.route)
	b.OnResubscribed(h.pokeAll)
	return h
}

// Attach adds p as a local peer of user and subscribes the user's channel;
// it returns the user's other local peers. It returns once the
// subscription is live, so no signal sent after it is missed.
func (h *Hub) Attach(ctx context.Context, user string, p Peer) (others []Peer, err error) {
	if err := h.b.Subscribe(ctx, h.b.UserChannel(user)); err != nil {
		return nil, err
	}
	h.mu.Lock()
	others = append(others, h.peers[user]...)
	h.peers[user] = append(h.peers[user], p)
	h.mu.Unlock()
	return others, nil
}

// Detach removes p and drops its reference to the user's channel.
func (h *Hub) Detach(ctx context.Context, user string, p Peer) {
	h.mu.Lock()
	ps := h.peers[user]
	for i, q := range ps {
		if q == p {
			ps = append(ps[:i:i], ps[i+1:]...)
			break
		}
	}
	if len(ps) == 0 {
		delete(h.peers, user)
	} else {
		h.peers[user] = ps
	}
	// A peer that leaves, for whatever reason, has handed back what it
	// held (roles: shutdown detaches last) or never held anything.
	h.settle(user, p, -1)
	h.mu.Unlock()
	h.b.Unsubscribe(ctx, h.b.UserChannel(user))
}

// Claim tells the hub that p, a login of user attached before it knew its
// generation, has generation gen: it no longer owes an answer to kicks up
// to gen, and gen's kick is its own. It returns how many local peers owe
// an answer to that kick and a channel closed once they all detached
// (this node publishes no release for its own login's kick).
func (h *Hub) Claim(user string, p Peer, gen int64) (n int, done <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var g *gather
	for _, x := range h.gathers[user] {
		if x.gen == gen {
			g = x
			break
		}
	}
	if g == nil {
		g = &gather{gen: gen}
		for _, q := range h.peers[user] {
			if q != p && q.Kick(gen) == Owes {
				g.members = append(g.members, q)
			}
		}
		h.add(user, g)
	}
	g.owner, g.done = p, make(chan struct{})
	n = len(g.members)
	for _, q := range g.members {
		if q == p {
			n--
		}
	}
	h.settle(user, p, gen)
	return n, g.done
}

// add keeps g among user's gathers; past maxGathers the oldest is
// answered at once. Called with mu held.
func (h *Hub) add(user string, g *gather) {
	gs := h.gathers[user]
	if len(gs) >= maxGathers {
		h.finish(user, gs[0], true)
		gs = gs[1:]
	}
	h.gathers[user] = append(gs, g)
}

// settle takes p out of the gathers of user it no longer owes an answer
// to: those of kicks up to gen (all of them when gen < 0: it detached),
// and drops the gathers p owns when it detached. A gather left without
// members is answered. Called with mu held.
func (h *Hub) settle(user string, p Peer, gen int64) {
	gs := h.gathers[user]
	kept := gs[:0]
	for _, g := range gs {
		if gen < 0 || g.gen <= gen {
			for i, q := range g.members {
				if q == p {
					g.members = append(g.members[:i:i], g.members[i+1:]...)
					break
				}
			}
		}
		switch {
		case gen < 0 && g.owner == p:
			h.finish(user, g, true)
		case len(g.members) == 0:
			if !h.finish(user, g, false) {
				kept = append(kept, g)
			}
		default:
			kept = append(kept, g)
		}
	}
	clear(gs[len(kept):])
	if len(kept) == 0 {
		delete(h.gathers, user)
	} else {
		h.gathers[user] = kept
	}
}

// finish answers g: its owner is told, or the release is published. It
// reports whether g can go (an owned gather whose kick did not come
// through the channel yet stays, unless drop). Called with mu held.
func (h *Hub) finish(user string, g *gather, drop bool) bool {
	if g.owner == nil {
		if g.done == nil {
			g.done = make(chan struct{})
			close(g.done)
			h.answer(user, g.gen)
		}
		return true
	}
	select {
	case <-g.done:
	default:
		close(g.done)
	}
	return drop || g.heard
}

// kicked answers a kick of user's generation gen that came through the
// channel: once per kick, when every local peer it reached has handed
// back; at once when none must.
func (h *Hub) kicked(user string, gen int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range h.gathers[user] {
		if g.gen == gen {
			// Claimed by its login first, or a repeat: the kick still
			// reaches every peer, and is answered once.
			for _, p := range h.peers[user] {
				p.Kick(gen)
			}
			g.heard = true
			if len(g.members) == 0 {
				h.settle(user, nil, gen) // drops it, answered already
			}
			return
		}
	}
	g := &gather{gen: gen, heard: true}
	own := false
	for _, p := range h.peers[user] {
		switch p.Kick(gen) {
		case Owes:
			g.members = append(g.members, p)
		case Own:
			own = true
		}
	}
	switch {
	case own:
		// The login knows its generation: its Claim gathers.
	case len(g.members) == 0:
		// No live peer (the subscription is leaving), or none older:
		// nothing is held here, so answer at once instead of making the
		// new login wait for its timeout.
		h.answer(user, gen)
	default:
		h.add(user, g)
	}
}

// Local returns the most recently attached peer of user on this node that
// is not Pending, or nil.
func (h *Hub) Local(user string) Peer {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ps := h.peers[user]
	for i := len(ps) - 1; i >= 0; i-- {
		if p, ok := ps[i].(Pending); ok && p.Pending() {
			continue
		}
		return ps[i]
	}
	return nil
}

func (h *Hub) locals(user string) []Peer {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]Peer(nil), h.peers[user]...)
}

// Signal forwards a presence frame to user to: directly when it is here,
// else through its channel. It is dropped when to is offline.
func (h *Hub) Signal(ctx context.Context, to string, frame []byte) error {
	if p := h.Local(to); p != nil {
		p.Signal(frame)
		return nil
	}
	_, err := h.b.Publish(ctx, h.b.UserChannel(to), "p"+string(frame))
	return err
}

// Release tells newer logins of user that this node has handed back what
// the kick of generation -gen asked for (gen < 0; see Peer.Released).
func (h *Hub) Release(ctx context.Context, user string, gen int64) {
	if _, err := h.b.Publish(ctx, h.b.UserChannel(user), "r"+strconv.FormatInt(gen, 10)); err != nil {
		h.log.Warn("could not announce a release; the newer login waits for its timeout", zap.String("user", user), zap.Error(err))
	}
}

// route handles one message on a user channel. It runs on the subscriber's
// reader: everything it calls is non-blocking.
func (h *Hub) route(channel, payload string) {
	user, ok := channelUser(channel)
	if !ok || payload == "" {
		h.log.Warn("ignoring a malformed user-channel message", zap.String("channel", channel))
		return
	}
	ps := h.locals(user)
	kind, rest := payload[0], payload[1:]
	switch kind {
	case 'p':
		// Our own nodes publish only JSON objects; anything else is not
		// ours to forward.
		if len(rest) < 2 || rest[0] != '{' || !wire.ValidString(rest) {
			h.log.Warn("ignoring a presence signal that is not a JSON object", zap.String("channel", channel))
			return
		}
		for _, p := range ps {
			p.Signal([]byte(rest))
		}
	case 'n':
		// A bare 'n' says messages are waiting; with a payload it carries
		// the message itself (broker's store script).
		if rest == "" {
			for _, p := range ps {
				p.Notify()
			}
			return
		}
		prev, id, frame, ok := broker.ParseCarried(rest)
		if !ok {
			// Not what the store script publishes: whatever it is, the
			// queue says what is there.
			h.log.Warn("ignoring a malformed carried message; fetching the queue", zap.String("channel", channel))
		}
		for _, p := range ps {
			if c, isC := p.(Carrier); isC && ok {
				c.Carry(prev, id, frame)
			} else {
				p.Notify()
			}
		}
	case 'x':
		for _, p := range ps {
			if e, ok := p.(Ender); ok {
				e.AccountDeleted()
			}
		}
	case 'b':
		for _, p := range ps {
			if e, ok := p.(Banner); ok {
				e.Banned()
			}
		}
	case 'o':
		// The session splices the object into its frame after its first
		// byte ({"cmd":"notice",...): anything but a whole object with
		// its id first would make that frame malformed.
		if !strings.HasPrefix(rest, `{"id":`) || !wire.ValidString(rest) || !json.Valid([]byte(rest)) {
			h.log.Warn("ignoring a notice that is not a JSON object", zap.String("channel", channel))
			return
		}
		for _, p := range ps {
			if e, ok := p.(Noticer); ok {
				e.Notice([]byte(rest))
			}
		}
	case 'k', 'r':
		gen, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			h.log.Warn("ignoring a malformed user-channel message", zap.String("channel", channel))
			return
		}
		if kind == 'k' && gen <= 0 {
			h.log.Warn("ignoring a kick without a generation", zap.String("channel", channel))
			return
		}
		if kind == 'r' {
			for _, p := range ps {
				p.Released(gen)
			}
			return
		}
		h.kicked(user, gen)
	default:
		h.log.Warn("ignoring an unknown user-channel message", zap.String("channel", channel), zap.Uint8("kind", kind))
	}
}

// pokeAll runs after a reconnect: messages stored while the subscriber was
// down produced notifications nobody heard.
func (h *Hub) pokeAll() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, ps := range h.peers {
		for _, p := range ps {
			p.Notify()
		}
	}
}

// channelUser extracts the user id from "<prefix>c:{<id>}".
func channelUser(channel string) (string, bool) {
	i := strings.LastIndex(channel, "c:{")
	if i < 0 || !strings.HasSuffix(channel, "}") {
		return "", false
	}
	return channel[i+3 : len(channel)-1], true
}
