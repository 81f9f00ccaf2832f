// Package chat owns 1:1 messages between users: validating and storing a
// message in the recipient's queue (atomically with its publication to the
// node holding the recipient), and the per-connection mailbox that moves
// messages to the socket, as they come with their store or from the queue. A message leaves Redis only after
// it has been written to the recipient's connection; whatever was fetched
// but not written simply stays at the front of the queue.
package chat

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Config bounds chat.
type Config struct {
	QueueCap int64 // offline messages kept per user; a full queue refuses more (queue_full)
	// QueueSenderShare is how many of them one sender may hold (refused
	// beyond with queue_full too); 0: a quarter of QueueCap.
	QueueSenderShare int64
	QueueTTL         time.Duration // a queue expires this long after the user's last login
	MaxMessage       int           // largest message frame in bytes
	Batch            int           // messages fetched from Redis per round trip
	// RemoveDelay is how long the node gathers the written heads of its
	// users' queues before it removes them in one call (0: no wait; they
	// still gather while a call is in flight).
	RemoveDelay time.Duration
	// RemoveAfter is how long a user's written messages wait in Redis for
	// more before they are removed, when nothing else is waiting for the
	// user (0: removed at once). See Mailbox.removeDue.
	RemoveAfter time.Duration
	Clock       func() time.Time
	// StoreBatch is the most messages stored in one Redis call by the
	// node's storer (storer.go): 0 means maxStoreBatch, 1 stores each
	// message in a call of its own.
	StoreBatch int

	// OnStored, when set, turns push notifications on: the store script
	// then also counts each message (but receipts, types app_ack_*) for
	// its sender when the recipient has a push device, in the same call,
	// and OnStored is called only for a message so counted, with the frame
	// as stored ('{"msg_id":<id>,"from":...}') and the sender's count of
	// messages now waiting for a notification (1: the first since the
	// last live write): push makes a notification due there
	// (push.Service.Due). A recipient without a device costs no call. The
	// written side needs no hook: the scripts that remove written messages
	// clear their senders' counts in the same call (broker/chat.go,
	// pushWrittenLua).
	OnStored func(ctx context.Context, to, from string, frame []byte, count int64)
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{QueueCap: 1000, QueueTTL: 30 * 24 * time.Hour, MaxMessage: 16 << 10, Batch: 64,
		RemoveDelay: time.Millisecond, RemoveAfter: 50 * time.Millisecond, Clock: time.Now}
}

// Service stores and delivers chat messages.
type Service struct {
	b   *broker.Client
	cfg Config
	log *zap.Logger

	refusedFull, refusedShare  atomic.Int64
	fetches, removals, carried atomic.Int64
	removeCalls, inboxDropped  atomic.Int64
	repliesDropped             atomic.Int64
	storeCalls                 atomic.Int64

	// The node's storer (storer.go).
	stMu      sync.Mutex
	stPending []*storeCall
	stRunning bool

	// The node's remover (remover.go).
	rmMu      sync.Mutex
	rmPending []*removal
	rmRunning bool

	// The lazy remover (remover.go): mailboxes whose written heads wait.
	lzMu      sync.Mutex
	lzPending []*Mailbox
	lzRunning bool
}

// Stats are the service's counters since it started.
type Stats struct {
	RefusedQueueFull   int64 // messages refused: the recipient's queue was full
	RefusedSenderShare int64 // messages refused: the sender held its share of the queue
	Fetches            int64 // fetch script calls that read a queue (with any removal they carried), counted once answered
	Removals           int64 // written heads removed on their own (not by a fetch)
	RemoveCalls        int64 // script calls that removed them, many heads each
	InboxDropped       int64 // carried messages a mailbox could not hold (fetched instead)
	Carried            int64 // messages taken as carried with their store, not fetched
	RepliesDropped     int64 // requeued replies not stored: the queue held its cap and margin
	StoreCalls         int64 // script calls that stored chat messages, many messages each under load
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{RefusedQueueFull: s.refusedFull.Load(), RefusedSenderShare: s.refusedShare.Load(),
		Fetches: s.fetches.Load(), Removals: s.removals.Load(), Carried: s.carried.Load(),
		RemoveCalls: s.removeCalls.Load(), InboxDropped: s.inboxDropped.Load(), RepliesDropped: s.repliesDropped.Load(),
		StoreCalls: s.storeCalls.Load()}
}

// New returns a chat service on b.
func New(cfg Config, b *broker.Client, log *zap.Logger) *Service {
	d := DefaultConfig()
	if cfg.QueueCap <= 0 {
		cfg.QueueCap = d.QueueCap
	}
	if cfg.QueueSenderShare <= 0 {
		cfg.QueueSenderShare = max(cfg.QueueCap/4, 1)
	}
	if cfg.QueueTTL <= 0 {
		cfg.QueueTTL = d.QueueTTL
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = d.MaxMessage
	}
	if cfg.Batch <= 0 {
		cfg.Batch = d.Batch
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Service{b: b, cfg: cfg, log: log}
}

// QueueTTL is how long a queue lives after a login.
func (s *Service) QueueTTL() time.Duration { return s.cfg.QueueTTL }

// SenderShare is the most messages one sender may have in a queue.
func (s *Service) SenderShare() int64 { return s.cfg.QueueSenderShare }

func (s *Service) opts() broker.StoreOptions {
	return broker.StoreOptions{Cap: s.cfg.QueueCap, SenderShare: s.cfg.QueueSenderShare, TTLms: s.cfg.QueueTTL.Milliseconds()}
}

// ValidUserID tells whether id has the shape of a user id (a decimal u64).
func ValidUserID(id string) bool {
	if id == "" || len(id) > 20 || (id[0] == '0' && len(id) > 1) {
		return false
	}
	_, err := strconv.ParseUint(id, 10, 64)
	return err == nil
}

// Message is a validated "message" request ready to store.
type Message struct {
	To      string
	From    string
	members []byte // the stored frame's members: "from" first, then the request's own
	receipt bool   // type app_ack_*: never notified
	req     *wire.Request
	stored  broker.Stored // set by Store
}

// Carried returns what a mailbox on this node needs to deliver m without
// fetching it (Mailbox.Carry): the id of the message stored for the
// recipient before m, m's id, and the frame exactly as stored. Call it
// after Store succeeded.
func (m *Message) Carried() (prev, id int64, frame string) {
	return m.stored.Prev, m.stored.ID, broker.StoredFrame(m.stored.ID, m.members)
}

// MaxCID is the longest "cid" a message may carry (docs/protocol.md "Safe
// chat resends").
const MaxCID = 64

// ValidCID reports whether raw, a JSON value as the client wrote it, is a
// client message id: a string of 1 to MaxCID letters, digits, '-', '_',
// '.' or ':', written without escapes. The server forwards it byte for
// byte, so this alphabet is what every receiver may rely on: it is safe in
// a key, a file name, a URL or HTML without quoting.
func ValidCID(raw []byte) bool {
	n := len(raw) - 2
	if n < 1 || n > MaxCID || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	for _, c := range raw[1 : len(raw)-1] {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// Prepare validates a "message" request from user from. A missing or
// non-string "to" is malformed (the connection closes); the rest are fail
// replies.
func (s *Service) Prepare(from string, req *wire.Request) (*Message, error) {
	to, err := req.Str("to")
	if err != nil {
		return nil, err
	}
	if len(req.Frame) > s.cfg.MaxMessage {
		return nil, wire.Errorf(wire.TooLarge, "a message may have at most %d bytes", s.cfg.MaxMessage)
	}
	t, _ := wire.String(req.Get("type"))
	if t == "server_ack" {
		return nil, wire.Errorf(wire.BadRequest, "type server_ack is reserved for the server")
	}
	if raw := req.Get("cid"); raw != nil && !ValidCID(raw) {
		return nil, wire.Errorf(wire.BadRequest, `field "cid" must be a string of 1 to %d letters, digits, "-", "_", "." or ":"`, MaxCID)
	}
	if !ValidUserID(to) {
		return nil, wire.Errorf(wire.NotFound, "no user %q", to)
	}
	m := make([]byte, 0, len(req.Frame)+24)
	m = append(m, `"from":`...)
	m = wire.AppendString(m, from)
	m = append(m, ',')
	m = req.AppendMembers(m, "from", "msg_id")
	return &Message{To: to, From: from, members: m, receipt: strings.HasPrefix(t, "app_ack"), req: req}, nil
}

// Store puts m in its recipient's queue and returns the server_ack frame.
// notify asks Redis to publish the stored frame on the recipient's channel;
// the caller skips it when the recipient is connected to this node and
// hands it m.Carried() directly.
// A full queue, or one holding the sender's share, refuses m (queue_full):
// what it holds was acknowledged and is never dropped to make room.
func (s *Service) Store(ctx context.Context, m *Message, notify bool) ([]byte, error) {
	opt := s.opts()
	opt.From = m.From
	opt.Push = s.cfg.OnStored != nil && !m.receipt
	st, err := s.store(ctx, broker.StoreReq{To: m.To, Members: m.members, Now: s.cfg.Clock().UnixMilli(), Opt: opt, Notify: notify})
	m.stored = st
	id := st.ID
	switch {
	case errors.Is(err, broker.ErrNoUser):
		return nil, wire.Errorf(wire.NotFound, "no user %q", m.To)
	case errors.Is(err, broker.ErrQueueFull):
		s.refusedFull.Add(1)
		return nil, wire.Errorf(wire.QueueFull, "user %s has %d undelivered messages, the most a queue holds; try again once they have been delivered", m.To, s.cfg.QueueCap)
	case errors.Is(err, broker.ErrSenderShare):
		s.refusedShare.Add(1)
		return nil, wire.Errorf(wire.QueueFull, "this sender's share of user %s's queue is full (%d undelivered messages from you); try again once they have been delivered", m.To, s.cfg.QueueSenderShare)
	case errors.Is(err, broker.ErrBlocked):
		return nil, wire.Errorf(wire.Blocked, "user %s does not receive your messages", m.To)
	case errors.Is(err, broker.ErrInactive):
		return nil, wire.Errorf(wire.RecipientInactive, "user %s has not logged in for longer than %s, so messages to them are not kept", m.To, s.cfg.QueueTTL)
	case errors.Is(err, broker.ErrUnavailable):
		return nil, &wire.Error{Reason: wire.Unavailable}
	case err != nil:
		return nil, err
	}
	if st.Push > 0 && s.cfg.OnStored != nil {
		f := make([]byte, 0, len(m.members)+32)
		f = append(f, `{"msg_id":`...)
		f = strconv.AppendInt(f, id, 10)
		f = append(f, ',')
		f = append(f, m.members...)
		s.cfg.OnStored(ctx, m.To, m.From, append(f, '}'), st.Push)
	}
	return ServerAck(m.req, m.To, id, ""), nil
}

// ServerAck builds the reply to a "message" request: ok with the stored
// message's id, or fail with reason when reason is not "". ack_id echoes
// the request's id, from is the recipient, post_id is echoed and
// is_sender_post negated, as PROTOCOL.md section 3 says; a valid cid is
// echoed too, so a client that resent a message on a new connection (where
// its ids may start again) can match the reply to it.
func ServerAck(req *wire.Request, to string, msgID int64, reason string) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"cmd":"message","type":"server_ack","result":`...)
	if reason == "" {
		b = append(b, `"ok","msg_id":`...)
		b = strconv.AppendInt(b, msgID, 10)
	} else {
		b = append(b, `"fail","reason":`...)
		b = wire.AppendString(b, reason)
	}
	if raw := req.Get("id"); raw != nil {
		b = append(b, `,"ack_id":`...)
		b = append(b, raw...)
	}
	if to != "" {
		b = append(b, `,"from":`...)
		b = wire.AppendString(b, to)
	}
	if raw := req.Get("cid"); raw != nil && ValidCID(raw) {
		b = append(b, `,"cid":`...)
		b = append(b, raw...)
	}
	if raw := req.Get("post_id"); raw != nil {
		b = append(b, `,"post_id":`...)
		b = append(b, raw...)
	}
	if v, ok := wire.Bool(req.Get("is_sender_post")); ok {
		b = append(b, `,"is_sender_post":`...)
		b = strconv.AppendBool(b, !v)
	}
	return append(b, '}')
}

// FailAck is the fail reply to a "message" request with e's reason and
// detail (ServerAck's fail reply, plus the detail).
func FailAck(req *wire.Request, to string, e *wire.Error) []byte {
	b := ServerAck(req, to, 0, e.Reason)
	if e.Detail == "" {
		return b
	}
	b = append(b[:len(b)-1], `,"detail":`...)
	b = wire.AppendString(b, e.Detail)
	return append(b, '}')
}

// Requeue stores frames (replies that could not be written before the
// user's connection ended) at the end of the user's queue, to be delivered
// after the next login. They answer requests that were carried out, so
// the cap that refuses chat messages does not refuse them; but they come
// from the user's own requests, and a client that keeps reconnecting
// without reading could grow its own queue without end. So replies may
// take the queue past its cap by requeueMargin at most; the replies that
// do not fit are dropped (counted in Stats.RepliesDropped), never a chat
// message. The newest are the ones dropped: taking older replies out of
// the middle of the list would break the fetch's head accounting.
func (s *Service) Requeue(ctx context.Context, user string, frames [][]byte) error {
	opt := s.opts()
	opt.Requeue = true
	n, err := s.b.QueueLen(ctx, user)
	if err != nil {
		return err
	}
	// Only this user's own session requeues past the cap (one login at
	// a time), so reading the length first is exact enough.
	room := s.cfg.QueueCap + s.requeueMargin() - n
	for i, f := range frames {
		if len(f) < 2 || f[0] != '{' {
			continue
		}
		if room <= 0 {
			dropped := len(frames) - i
			s.repliesDropped.Add(int64(dropped))
			s.log.Warn("dropped replies that did not fit the user's queue", zap.String("user", user), zap.Int("dropped", dropped))
			return nil
		}
		room--
		members := f[1 : len(f)-1]
		if _, err := s.b.StoreMessage(ctx, user, members, s.cfg.Clock().UnixMilli(), opt, false); err != nil {
			return err
		}
	}
	return nil
}

// requeueMargin is how far requeued replies may take a queue past
// QueueCap: a tenth of it, at least one.
func (s *Service) requeueMargin() int64 { return max(s.cfg.QueueCap/10, 1) }
