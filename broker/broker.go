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
//	                    seq (last chat message id); expires AccountTTL after
//	                    the last login when that is set
//	<p>q:{<id>}         list: the user's undelivered chat messages, oldest first
//	<p>s:{<id>}         hash: sender id -> that sender's messages in q:{<id>}
//	<p>reg:{<addr>}:day hash: registrations from one client address (group)
//	                    in the current day-long window: s (start ms), n
//	<p>signup:<nonce>   a used sign-up token, kept until the token expires
//	<p>c:{<id>}         pub/sub channel of the node holding user <id>
//	<p>pq:{<id>}        list: times of the user's publishes in the quota window
//	<p>lease:<name>     a lease (lock with expiry) of work one node does at a
//	                    time, e.g. the image sweep: see lock.go
//	<p>{posts}:seq, :data, :owner, :date, and the channel <p>posts: see posts.go
//
// Three deployments: one Redis (or the embedded server), Redis Cluster, and
// a master with replicas watched by Sentinel. On a cluster every channel
// whose name carries a hash tag ("{...}", the per-user channels) is a
// sharded channel (SSUBSCRIBE/SPUBLISH, Redis 7): it lives on the shard that
// owns its slot, so pub/sub load spreads over the shards instead of being
// broadcast to every cluster node. A channel without a hash tag (a global
// broadcast channel that every node subscribes) stays plain
// SUBSCRIBE/PUBLISH, which a cluster delivers to subscribers on any node.
// Elsewhere every channel is plain.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// Options configure Open.
type Options struct {
	// Addrs of a real Redis; empty starts the embedded server. Several
	// addresses are the seed nodes of a Redis Cluster; one address is a
	// cluster node or a lone Redis, told apart by asking the server.
	Addrs    []string
	Username string
	Password string
	// Cluster requires Redis Cluster: Open fails when the servers at Addrs
	// are not one, instead of silently running on a lone Redis.
	Cluster bool
	// Sentinels are the addresses of Redis Sentinels watching the master
	// set MasterName; when set, Addrs must be empty. Username and Password
	// are the master's; the Sentinels take SentinelPassword.
	Sentinels        []string
	MasterName       string
	SentinelPassword string
	// WaitReplicas > 0 acknowledges a chat message only once that many
	// replicas have it (Redis WAIT), so a failover after the ack loses
	// nothing. While fewer replicas are connected, storing fails with
	// ErrUnavailable. 0 acknowledges once the master has it.
	WaitReplicas int
	// Prefix is put in front of every key and channel name.
	Prefix string
	// Timeout bounds every command, so that a Redis outage fails requests
	// fast instead of hanging them.
	Timeout time.Duration
	// FlushDelay, when > 0, lets each Redis connection's writer wait up
	// to this long after a flush to gather more commands into the next
	// write (rueidis MaxFlushDelay): fewer system calls in occase and in
	// Redis under load, at most this much added latency per command.
	FlushDelay time.Duration
	// Metrics, when set, receives the Redis command latency and error
	// series.
	Metrics prometheus.Registerer
	// AccountTTL > 0 deletes an account this long after its last login
	// (or its registration); 0 keeps accounts for ever.
	AccountTTL time.Duration
	// TLS, when set, is used on every connection to Redis and to the
	// Sentinels (TLSConfig builds it from files).
	TLS *tls.Config
	// SnapshotPath, for the embedded server only, keeps its data across
	// restarts: loaded at Open, written every SnapshotEvery (default 5s)
	// and at Close. Empty: memory only.
	SnapshotPath  string
	SnapshotEvery time.Duration
	// BanListMax bounds the list of bans (banlist.go); 0: MaxBanList.
	BanListMax int
	// Once is for a one-shot tool (occase moderate, images gc): a Redis
	// unreachable at Open is Open's error, not retried in the background
	// as a node does.
	Once bool
}

// Client is a connection to Redis shared by every feature of a node.
type Client struct {
	// rc is the client of every command: lazy, or lazy instrumented.
	rc    rueidis.Client
	lazy  *lazyClient
	addrs []string
	// connected closes when the first connection is made; dialDone when
	// the dial loop has ended (stopDial ends it).
	connected, stopDial, dialDone chan struct{}
	mini                          *miniredis.Miniredis
	prefix                        string
	log                           *zap.Logger
	ps                            *pubSub
	tmo                           time.Duration
	dl                            *deadlines // shared bounds of tmo (bound.go)
	opt                           rueidis.ClientOption
	// cluster: the connection is to a Redis Cluster, and tagged channels
	// are sharded. Set once, when the connection is made.
	cluster atomic.Bool
	waitN   int
	// accountTTL: see Options.AccountTTL.
	accountTTL time.Duration
	// banListCap: see Options.BanListMax.
	banListCap int

	closeOnce sync.Once

	// The embedded server's snapshot (snapshot.go); snapLast and
	// snapFails belong to whoever writes it (the loop, then Close).
	snapPath           string
	snapStop, snapDone chan struct{}
	snapLast           []byte
	snapFails          int
}

// Embedded, given as the only Redis address, asks for the embedded server
// by name (--redis=embedded).
const Embedded = "embedded"

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
	c := &Client{prefix: opt.Prefix, log: log, tmo: opt.Timeout, waitN: opt.WaitReplicas, accountTTL: opt.AccountTTL, banListCap: opt.BanListMax}
	c.dl = newDeadlines(opt.Timeout)
	addrs := opt.Addrs
	switch {
	case len(opt.Sentinels) > 0 && len(addrs) > 0:
		return nil, errors.New("give either Redis addresses or Sentinel addresses, not both")
	case len(opt.Sentinels) > 0 && opt.MasterName == "":
		return nil, errors.New("Sentinel needs the name of the master set")
	case len(opt.Sentinels) > 0 && opt.Cluster:
		return nil, errors.New("Sentinel and Redis Cluster exclude each other")
	case (len(addrs) == 0 || (len(addrs) == 1 && addrs[0] == Embedded)) && len(opt.Sentinels) == 0:
		if opt.Cluster {
			return nil, errors.New("Redis Cluster needs the addresses of its nodes")
		}
		m, err := StartEmbedded()
		if err != nil {
			return nil, err
		}
		c.mini = m
		addrs = []string{m.Addr()}
		if opt.SnapshotPath == "" {
			log.Warn("using the embedded in-process Redis without a snapshot: all data lives in memory only and is lost when the process stops",
				zap.String("addr", m.Addr()))
			break
		}
		if err := checkSnapshotDir(opt.SnapshotPath); err != nil {
			m.Close()
			return nil, err
		}
		n, err := restoreSnapshot(m, opt.SnapshotPath)
		if err != nil {
			m.Close()
			return nil, err
		}
		if opt.SnapshotEvery <= 0 {
			opt.SnapshotEvery = 5 * time.Second
		}
		c.snapPath = opt.SnapshotPath
		log.Warn("using the embedded in-process Redis, for one node: its data is kept in a snapshot written every interval and at shutdown; a crash loses what changed since the last snapshot",
			zap.String("addr", m.Addr()), zap.String("snapshot", opt.SnapshotPath), zap.Duration("every", opt.SnapshotEvery), zap.Int("keys_loaded", n))
	}
	c.opt = rueidis.ClientOption{
		InitAddress: addrs,
		Username:    opt.Username,
		Password:    opt.Password,
		// RESP2 keeps pub/sub on its own connection, which the embedded
		// server needs (it refuses commands on a subscribed RESP3
		// connection); a real Redis works the same way.
		AlwaysRESP2:      true,
		DisableCache:     true,
		ConnWriteTimeout: opt.Timeout,
		MaxFlushDelay:    opt.FlushDelay,
		Dialer:           dialer(opt.Timeout),
		TLSConfig:        opt.TLS,
		// The embedded server knows no CLUSTER command; a real Redis is
		// asked, and rueidis runs a cluster client when it is one.
		ForceSingleClient: c.mini != nil,
	}
	if len(opt.Sentinels) > 0 {
		addrs = opt.Sentinels
		c.opt.InitAddress = addrs
		c.opt.Sentinel = rueidis.SentinelOption{
			MasterSet: opt.MasterName,
			Dialer:    dialer(opt.Timeout),
			TLSConfig: opt.TLS,
			Password:  opt.SentinelPassword,
			// Besides the +switch-master events, look again now and then:
			// a missed event would otherwise bind the node to a demoted
			// master for good.
			TopologyRefreshInterval: 5 * time.Second,
		}
	}
	c.lazy = newLazy()
	c.rc = c.lazy
	if opt.Metrics != nil {
		c.rc = &instrumented{Client: c.lazy, m: newMetrics(opt.Metrics)}
	}
	c.connected, c.stopDial, c.dialDone = make(chan struct{}), make(chan struct{}), make(chan struct{})
	c.addrs = addrs
	rc, err := c.dial(ctx, opt)
	switch {
	case err == nil:
		c.connect(ctx, rc, opt)
		close(c.dialDone)
	case errors.As(err, new(*dialError)) && c.mini == nil && !opt.Once:
		// A node must start while Redis is down (pods restarted during an
		// outage would otherwise crash-loop): commands answer unavailable
		// until the connection is made in the background.
		log.Warn("redis is unreachable; starting anyway and retrying in the background (commands answer unavailable until then)",
			zap.Strings("addrs", addrs), zap.Error(err), tlsHint(opt, err))
		go c.dialLoop(opt)
	default:
		if c.mini != nil {
			c.mini.Close()
		}
		return nil, err
	}
	c.ps = newPubSub(c)
	if c.snapPath != "" {
		c.snapStop, c.snapDone = make(chan struct{}), make(chan struct{})
		go c.snapshotLoop(opt.SnapshotEvery)
	}
	return c, nil
}

// dialError is a failure to reach Redis at all, worth retrying; other
// failures of dial (a refused password, a lone Redis where a cluster was
// required) are the operator's to fix.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func dialFailure(err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok && !transient(re) {
		return err
	}
	if badCertificate(err) {
		return err
	}
	return &dialError{err}
}

// badCertificate tells a Redis certificate this node refuses (unknown CA,
// another host name, expired): retrying cannot fix it, so the node stops
// with the error instead of starting and retrying for ever.
func badCertificate(err error) bool {
	var v *tls.CertificateVerificationError
	var h x509.HostnameError
	var u x509.UnknownAuthorityError
	var i x509.CertificateInvalidError
	return errors.As(err, &v) || errors.As(err, &h) || errors.As(err, &u) || errors.As(err, &i)
}

// tlsHint explains a dial that timed out with --redis-tls: a plain Redis
// takes the TLS handshake for the start of a command and never answers,
// so the only symptom would be "context deadline exceeded".
func tlsHint(opt Options, err error) zap.Field {
	var ne net.Error
	if opt.TLS == nil || !(errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) {
		return zap.Skip()
	}
	return zap.String("hint", "TLS is on (--redis-tls) and Redis did not answer the handshake: a Redis without TLS never does; check that it serves TLS on this port")
}

// dial makes the client: it connects and tells a cluster from a lone
// Redis.
func (c *Client) dial(ctx context.Context, opt Options) (rueidis.Client, error) {
	addrs := strings.Join(c.addrs, ",")
	rc, err := rueidis.NewClient(c.opt)
	if err != nil {
		return nil, fmt.Errorf("connect to redis %s: %w", addrs, dialFailure(err))
	}
	if rc.Mode() == rueidis.ClientModeCluster {
		real, err := realCluster(ctx, rc, opt.Timeout)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("ask redis %s for its cluster mode: %w", addrs, dialFailure(err))
		}
		if !real {
			// The embedded server, reached by its address, answers
			// CLUSTER SLOTS as a one-node cluster but has no sharded
			// pub/sub.
			rc.Close()
			c.opt.ForceSingleClient = true
			if rc, err = rueidis.NewClient(c.opt); err != nil {
				return nil, fmt.Errorf("connect to redis %s: %w", addrs, dialFailure(err))
			}
		}
	}
	if opt.Cluster && rc.Mode() != rueidis.ClientModeCluster {
		rc.Close()
		return nil, fmt.Errorf("redis %s is not a Redis Cluster (cluster mode was required)", addrs)
	}
	return rc, nil
}

// connect makes rc the client of every command, and says so.
func (c *Client) connect(ctx context.Context, rc rueidis.Client, opt Options) {
	c.cluster.Store(rc.Mode() == rueidis.ClientModeCluster)
	switch {
	case c.cluster.Load():
		c.log.Info("connected to Redis Cluster; per-user channels are sharded", zap.Strings("seeds", c.addrs))
	case len(opt.Sentinels) > 0:
		c.log.Info("connected to the Redis master through Sentinel", zap.String("master", opt.MasterName), zap.Strings("sentinels", c.addrs))
	}
	c.lazy.set(rc)
	close(c.connected)
	if opt.WaitReplicas > 0 && !c.cluster.Load() {
		c.checkReplicas(ctx, opt.WaitReplicas)
	}
}

// dialLoop retries dial with backoff until it succeeds or Close, logging
// once per cause (with the count of attempts), not once per attempt.
func (c *Client) dialLoop(opt Options) {
	defer close(c.dialDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stopDial:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := Backoff{First: 100 * time.Millisecond, Max: 2 * time.Second}
	var last string
	attempts := 0
	since, lastLog := time.Now(), time.Now()
	for {
		if !backoff.Wait(c.stopDial) {
			return
		}
		attempts++
		rc, err := c.dial(ctx, opt)
		if err == nil {
			c.log.Info("connected to redis", zap.Strings("addrs", c.addrs), zap.Int("attempts", attempts))
			c.connect(ctx, rc, opt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if cause := err.Error(); cause != last || time.Since(lastLog) >= stillUnreachableEvery {
			c.log.Warn("redis still unreachable; retrying", zap.Error(err), zap.Int("attempts", attempts),
				zap.Duration("since", time.Since(since).Round(time.Second)), tlsHint(opt, err))
			last, lastLog = cause, time.Now()
		}
	}
}

// stillUnreachableEvery repeats "redis still unreachable" while the cause
// stays the same: a node that never reached Redis (a mistyped address) is
// not ready, and its log said so once and then nothing about Redis for
// good (the operator's tour).
var stillUnreachableEvery = 30 * time.Second

// Connected is closed once the node has reached Redis (at once when Open
// did).
func (c *Client) Connected() <-chan struct{} { return c.connected }

// checkReplicas warns when the master has fewer replicas than every chat
// message must reach: each store would then fail as unavailable.
func (c *Client) checkReplicas(ctx context.Context, want int) {
	info, err := c.do(ctx, c.rc.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return
	}
	have := strings.Count(info, "state=online")
	if have < want {
		c.log.Warn("fewer replicas are online than --redis-wait-replicas asks for: storing chat messages fails until they are",
			zap.Int("online", have), zap.Int("wanted", want))
	}
}

// realCluster tells whether a server that answers CLUSTER SLOTS has
// cluster mode enabled.
func realCluster(ctx context.Context, rc rueidis.Client, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := rc.Do(ctx, rc.B().Info().Section("cluster").Build()).ToString()
	if _, isReply := rueidis.IsRedisErr(err); err != nil && !isReply {
		return false, err
	}
	return strings.Contains(info, "cluster_enabled:1"), nil
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
	c.closeOnce.Do(c.close)
}

func (c *Client) close() {
	close(c.stopDial)
	<-c.dialDone
	c.ps.close()
	if c.snapPath != "" {
		close(c.snapStop)
		<-c.snapDone
		c.saveSnapshot()
	}
	c.rc.Close()
	if c.mini != nil {
		c.mini.Close()
	}
}

// Ping makes one round trip.
func (c *Client) Ping(ctx context.Context) error {
	return c.wrap("ping", c.do(ctx, c.rc.B().Ping().Build()).Error())
}

// do runs one command within the command timeout. The reply is complete
// when it returns, so the caller converts it and wraps its error after.
func (c *Client) do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.rc.Do(ctx, cmd)
}

// wrap marks connection-level failures as ErrUnavailable, and so are the
// replies of a Redis that is failing over or starting (CLUSTERDOWN,
// TRYAGAIN, LOADING, a write to a just demoted master...); other Redis
// replies that are errors (a script error, a wrong type) stay as they are.
func (c *Client) wrap(action string, err error) error {
	if err == nil || rueidis.IsRedisNil(err) {
		return err
	}
	if re, ok := rueidis.IsRedisErr(err); ok && !transient(re) {
		return fmt.Errorf("%s: %w", action, err)
	}
	return fmt.Errorf("%s: %w: %v", action, ErrUnavailable, err)
}

func transient(re *rueidis.RedisError) bool {
	if re.IsClusterDown() || re.IsTryAgain() || re.IsLoading() {
		return true
	}
	if _, moved := re.IsMoved(); moved {
		return true
	}
	if _, ask := re.IsAsk(); ask {
		return true
	}
	msg := re.Error()
	for _, p := range []string{"READONLY", "MASTERDOWN", "NOREPLICAS", "UNAVAILABLE"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Cluster tells whether the connection is to a Redis Cluster.
func (c *Client) Cluster() bool { return c.cluster.Load() }

// sharded tells whether channel is a sharded channel: on a cluster, one
// whose name carries a hash tag.
func (c *Client) sharded(channel string) bool {
	return c.cluster.Load() && hashTag(channel) != channel
}

// publishCmd is the command a script must use to publish on channel:
// SPUBLISH for a sharded channel, else PUBLISH. Scripts take it as an
// argument (redis.call(ARGV[n], channel, message)), since the same script
// runs on a cluster and on the embedded server, which has no SPUBLISH. A
// script may SPUBLISH only on a channel in the slot of its keys.
func (c *Client) publishCmd(channel string) string {
	if c.sharded(channel) {
		return "SPUBLISH"
	}
	return "PUBLISH"
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

// Key names a global key or channel under the node's prefix (the posts
// service names its broadcast channel with it).
func (c *Client) Key(name string) string { return c.key(name) }
