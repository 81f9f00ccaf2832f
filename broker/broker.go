// Package broker is the one package that speaks to Redis. It owns the
// connection (a real Redis through rueidis, or an embedded in-process
// Redis-compatible server when no address is given), the key layout, the Lua
// scripts that make each multi-step change atomic, and pub/sub with
// re-subscription after a reconnect.
//
// Key layout (prefix "occase:" by default). Every key that a script touches
// together carries the same hash tag, so the layout already works on Redis
// Cluster:
//
//	<p>user_id          counter of user ids
//	<p>secret           generated password-digest key, when none is configured
//	<p>u:{<id>}         hash: pwd (digest), gen (login generation), login (ms),
//	                    seq (last chat message id)
//	<p>q:{<id>}         list: the user's undelivered chat messages, oldest first
//	<p>n:{<id>}         flag: a node has been told the queue has work (expires)
//	<p>c:{<id>}         pub/sub channel of the node holding user <id>
package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// Options configure Open.
type Options struct {
	// Addrs of a real Redis; empty starts the embedded server.
	Addrs    []string
	Username string
	Password string
	// Prefix is put in front of every key and channel name.
	Prefix string
	// Timeout bounds every command, so that a Redis outage fails requests
	// fast instead of hanging them.
	Timeout time.Duration
}

// Client is a connection to Redis shared by every feature of a node.
type Client struct {
	rc     rueidis.Client
	mini   *miniredis.Miniredis
	prefix string
	log    *zap.Logger
	ps     *pubSub
	tmo    time.Duration
	opt    rueidis.ClientOption
}

// ErrUnavailable wraps every failure to reach Redis.
var ErrUnavailable = errors.New("redis unavailable")

// Open connects to Redis, or starts the embedded server.
func Open(ctx context.Context, opt Options, log *zap.Logger) (*Client, error) {
	if opt.Prefix == "" {
		opt.Prefix = "occase:"
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	c := &Client{prefix: opt.Prefix, log: log, tmo: opt.Timeout}
	addrs := opt.Addrs
	if len(addrs) == 0 {
		m, err := StartEmbedded()
		if err != nil {
			return nil, err
		}
		c.mini = m
		addrs = []string{m.Addr()}
		log.Warn("no --redis given: using the embedded in-process Redis; all data lives in memory only and is lost when the process stops",
			zap.String("addr", m.Addr()))
	}
	c.opt = rueidis.ClientOption{
		InitAddress: addrs,
		Username:    opt.Username,
		Password:    opt.Password,
		// RESP2 keeps pub/sub on its own connection, which the embedded
		// server needs (it refuses commands on a subscribed RESP3
		// connection); a real Redis works the same way.
		AlwaysRESP2:       true,
		DisableCache:      true,
		ConnWriteTimeout:  opt.Timeout,
		Dialer:            dialer(opt.Timeout),
		ForceSingleClient: true,
	}
	rc, err := rueidis.NewClient(c.opt)
	if err != nil {
		if c.mini != nil {
			c.mini.Close()
		}
		return nil, fmt.Errorf("connect to redis %s: %w", strings.Join(addrs, ","), err)
	}
	c.rc = rc
	c.ps = newPubSub(c)
	return c, nil
}

// StartEmbedded starts the in-process Redis-compatible server on a free
// loopback port. Open does this when given no address; tests use it to share
// one embedded server between several nodes.
func StartEmbedded() (*miniredis.Miniredis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return m, nil
}

// Embedded tells whether this client runs the in-process server.
func (c *Client) Embedded() bool { return c.mini != nil }

// Close stops pub/sub, the connection and the embedded server.
func (c *Client) Close() {
	c.ps.close()
	c.rc.Close()
	if c.mini != nil {
		c.mini.Close()
	}
}

// Ping makes one round trip.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.wrap("ping", c.rc.Do(ctx, c.rc.B().Ping().Build()).Error())
}

func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.tmo)
}

// wrap marks connection-level failures as ErrUnavailable; Redis replies
// that are errors (a script error, a wrong type) stay as they are.
func (c *Client) wrap(action string, err error) error {
	if err == nil || rueidis.IsRedisNil(err) {
		return err
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return fmt.Errorf("%s: %w", action, err)
	}
	return fmt.Errorf("%s: %w: %v", action, ErrUnavailable, err)
}

// key names a global key.
func (c *Client) key(name string) string { return c.prefix + name }

// userKey names a per-user key; the {id} hash tag keeps all of one user's
// keys in one cluster slot.
func (c *Client) userKey(kind, id string) string {
	return c.prefix + kind + ":{" + id + "}"
}

// UserChannel is the pub/sub channel of the node that holds user id.
func (c *Client) UserChannel(id string) string { return c.userKey("c", id) }

// Key exposes the key naming to feature scripts kept in this package's
// siblings' tests; features use the typed methods.
func (c *Client) Key(name string) string { return c.key(name) }
