// Package presence owns who is connected to this node and the live signals
// between connected users. Each logged-in user has one pub/sub channel,
// subscribed by the node that holds the user and only by it. The channel
// carries four kinds of signal, by their first byte:
//
//	p<frame>  a typing (or other) presence frame to forward to the user
//	n         chat messages are waiting in the user's queue
//	m<prev> <frame>  a chat message just stored in the user's queue (the
//	          store script publishes it; see broker.ParseCarried)
//	k<gen>    a login of generation gen happened: older sessions must go
//	r<gen>    the session of generation gen has let go (0: a node that held
//	          only a stale subscription)
//
// Presence frames are never stored: when the user is offline they vanish.
package presence

import (
	"context"
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
	// Kick says a login of generation gen happened elsewhere; a peer of an
	// older generation must hand back what it holds and close.
	Kick(gen int64)
	// Released says the session of generation gen (0: none, only a stale
	// subscription) let go of the user.
	Released(gen int64)
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

// Hub routes signals to the peers connected to this node.
type Hub struct {
	b   *broker.Client
	log *zap.Logger

	mu sync.RWMutex
	// Usually one peer per user. During a displacement on this node an
	// older and a newer session coexist, attached in any order; signals go
	// to all of them and each decides by its generation.
	peers map[string][]Peer
}

// New returns a hub and starts routing the user channels of b to it.
func New(b *broker.Client, log *zap.Logger) *Hub {
	h := &Hub{b: b, log: log, peers: map[string][]Peer{}}
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
	h.mu.Unlock()
	h.b.Unsubscribe(ctx, h.b.UserChannel(user))
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

// Kick announces a login of generation gen of user to every node. It
// returns how many other nodes hold the user's channel (each will answer
// with a release) and the user's generation in Redis at that moment: when it
// is above gen, a newer login exists that this one's subscription may have
// been too late to hear.
func (h *Hub) Kick(ctx context.Context, user string, gen int64) (others, current int64, err error) {
	n, cur, err := h.b.AnnounceLogin(ctx, user, "k"+strconv.FormatInt(gen, 10))
	if err != nil {
		return 0, 0, err
	}
	// This node is subscribed too (Attach came first) and counts once.
	return max(n-1, 0), cur, nil
}

// Release tells newer logins of user that the session of generation gen has
// handed back everything it held.
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
	case 'k', 'r':
		gen, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			h.log.Warn("ignoring a malformed user-channel message", zap.String("channel", channel))
			return
		}
		switch {
		case kind == 'r':
			for _, p := range ps {
				p.Released(gen)
			}
		case len(ps) > 0:
			for _, p := range ps {
				p.Kick(gen)
			}
		default:
			// Subscribed without a live peer (it is leaving): nothing is
			// held here, so answer at once instead of making the new login
			// wait for its timeout.
			go h.Release(context.Background(), user, 0)
		}
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
