// Package chat owns 1:1 messages between users: validating and storing a
// message in the recipient's queue (atomically with the notification of the
// node holding the recipient), and the per-connection mailbox that moves
// messages from that queue to the socket. A message leaves Redis only after
// it has been written to the recipient's connection; whatever was fetched
// but not written simply stays at the front of the queue.
package chat

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Config bounds chat.
type Config struct {
	QueueCap   int64         // offline messages kept per user; the oldest are dropped
	QueueTTL   time.Duration // a queue expires this long after the user's last login
	MaxMessage int           // largest message frame in bytes
	Batch      int           // messages fetched from Redis per round trip
	Clock      func() time.Time
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{QueueCap: 1000, QueueTTL: 30 * 24 * time.Hour, MaxMessage: 16 << 10, Batch: 64, Clock: time.Now}
}

// Service stores and delivers chat messages.
type Service struct {
	b   *broker.Client
	cfg Config
	log *zap.Logger
}

// New returns a chat service on b.
func New(cfg Config, b *broker.Client, log *zap.Logger) *Service {
	d := DefaultConfig()
	if cfg.QueueCap <= 0 {
		cfg.QueueCap = d.QueueCap
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

func (s *Service) opts() broker.StoreOptions {
	return broker.StoreOptions{Cap: s.cfg.QueueCap, TTLms: s.cfg.QueueTTL.Milliseconds()}
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
	members []byte // the stored frame's members: "from" first, then the request's own
	req     *wire.Request
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
	if t, ok := wire.String(req.Get("type")); ok && t == "server_ack" {
		return nil, wire.Errorf(wire.BadRequest, "type server_ack is reserved for the server")
	}
	if !ValidUserID(to) {
		return nil, wire.Errorf(wire.NotFound, "no user %q", to)
	}
	m := make([]byte, 0, len(req.Frame)+24)
	m = append(m, `"from":`...)
	m = wire.AppendString(m, from)
	m = append(m, ',')
	m = req.AppendMembers(m, "from", "msg_id")
	return &Message{To: to, members: m, req: req}, nil
}

// Store puts m in its recipient's queue and returns the server_ack frame.
// notify asks Redis to publish on the recipient's channel; the caller skips
// it when the recipient is connected to this node and pokes it directly.
func (s *Service) Store(ctx context.Context, m *Message, notify bool) ([]byte, error) {
	id, err := s.b.StoreMessage(ctx, m.To, m.members, s.cfg.Clock().UnixMilli(), s.opts(), notify)
	switch {
	case errors.Is(err, broker.ErrNoUser):
		return nil, wire.Errorf(wire.NotFound, "no user %q", m.To)
	case errors.Is(err, broker.ErrUnavailable):
		return nil, &wire.Error{Reason: wire.Unavailable}
	case err != nil:
		return nil, err
	}
	return ServerAck(m.req, m.To, id, ""), nil
}

// ServerAck builds the reply to a "message" request: ok with the stored
// message's id, or fail with reason when reason is not "". ack_id echoes
// the request's id, from is the recipient, post_id is echoed and
// is_sender_post negated, as PROTOCOL.md section 3 says.
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

// Requeue stores frames (replies that could not be written before the
// user's connection ended) at the end of the user's queue, to be delivered
// after the next login.
func (s *Service) Requeue(ctx context.Context, user string, frames [][]byte) error {
	for _, f := range frames {
		if len(f) < 2 || f[0] != '{' {
			continue
		}
		members := f[1 : len(f)-1]
		if _, err := s.b.StoreMessage(ctx, user, members, s.cfg.Clock().UnixMilli(), s.opts(), false); err != nil {
			return err
		}
	}
	return nil
}
