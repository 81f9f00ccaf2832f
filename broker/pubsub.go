package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// pubSub keeps one generation of subscriber connections (subConn) and the
// set of channels this node wants. When any connection of the generation
// breaks, or a cluster slot it serves moves elsewhere, it builds a new
// generation and subscribes every wanted channel again, then tells the
// features (which fetch what they may have missed meanwhile).
type pubSub struct {
	c *Client

	mu       sync.Mutex
	sc       *subConn       // nil while disconnected
	want     map[string]int // channel -> references
	handlers []handler
	onResub  []func()
	ready    bool          // every wanted channel subscribed on sc
	changed  chan struct{} // closed and replaced whenever sc or ready changes

	// stripes serialise SUBSCRIBE/UNSUBSCRIBE of one channel so that a late
	// UNSUBSCRIBE never overtakes a newer SUBSCRIBE.
	stripes [256]sync.Mutex

	stop chan struct{}
	done chan struct{}
}

type handler struct {
	prefix string
	fn     func(channel, payload string)
}

func newPubSub(c *Client) *pubSub {
	p := &pubSub{c: c, want: map[string]int{}, changed: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// signal wakes everyone waiting for a change of sc or ready; p.mu is held.
func (p *pubSub) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Handle routes messages on channels starting with prefix to fn (and to
// every other handler whose prefix matches). fn runs on the connection's
// reader: it must not block.
func (c *Client) Handle(prefix string, fn func(channel, payload string)) {
	c.ps.mu.Lock()
	c.ps.handlers = append(c.ps.handlers, handler{c.prefix + prefix, fn})
	c.ps.mu.Unlock()
}

// OnResubscribed registers fn to run after every re-subscription that
// follows a broken subscriber connection.
func (c *Client) OnResubscribed(fn func()) {
	c.ps.mu.Lock()
	c.ps.onResub = append(c.ps.onResub, fn)
	c.ps.mu.Unlock()
}

// SubscribeReady tells whether the subscriber connection is up and has
// subscribed everything wanted.
func (c *Client) SubscribeReady() bool {
	c.ps.mu.Lock()
	defer c.ps.mu.Unlock()
	return c.ps.sc != nil && c.ps.ready
}

// Subscribe adds a reference to channel and returns once Redis has
// confirmed the subscription. While the subscriber connection is down it
// waits for the re-subscription, up to the command timeout, and then fails
// with ErrUnavailable.
func (c *Client) Subscribe(ctx context.Context, channel string) error {
	p := c.ps
	s := p.stripe(channel)
	s.Lock()
	defer s.Unlock()
	p.mu.Lock()
	p.want[channel]++
	first := p.want[channel] == 1
	sc := p.sc
	p.mu.Unlock()
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var err error
	undo := false
	switch {
	case sc == nil:
		// The next generation's snapshot includes channel.
		err = p.awaitLive(ctx, nil)
	case first:
		err = sc.exec(ctx, c, channel, false)
		if errors.Is(err, errMoved) {
			// The slot has moved since this generation began: the next
			// one asks the cluster where it lives now.
			sc.fail(err)
			err = p.awaitLive(ctx, sc)
		} else {
			// Failed, the SUBSCRIBE may still have reached Redis, or
			// still wait in the batch queue when the caller gave up.
			undo = err != nil
			err = c.wrap("subscribe", err)
		}
	}
	if err != nil {
		p.mu.Lock()
		if p.want[channel]--; p.want[channel] <= 0 {
			delete(p.want, channel)
		}
		p.mu.Unlock()
		if undo {
			// An UNSUBSCRIBE queued behind it (the stripe lock is still
			// held, so nothing of this channel comes between) takes
			// back a subscription nothing wants.
			sc.enqueue(c, channel, true)
		}
	}
	return err
}

// awaitLive waits for a generation other than old with every wanted
// channel subscribed.
func (p *pubSub) awaitLive(ctx context.Context, old *subConn) error {
	for {
		p.mu.Lock()
		sc, ready, changed := p.sc, p.ready, p.changed
		p.mu.Unlock()
		if sc != nil && sc != old && ready {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("subscribe: %w: subscriber connection is down", ErrUnavailable)
		}
	}
}

// Unsubscribe drops a reference to channel, unsubscribing at the last one.
func (c *Client) Unsubscribe(ctx context.Context, channel string) {
	p := c.ps
	s := p.stripe(channel)
	s.Lock()
	defer s.Unlock()
	p.mu.Lock()
	n := p.want[channel] - 1
	if n <= 0 {
		delete(p.want, channel)
	} else {
		p.want[channel] = n
	}
	sc := p.sc
	p.mu.Unlock()
	if n > 0 || sc == nil {
		return
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := sc.unsubscribe(ctx, c, channel); err != nil {
		c.log.Debug("unsubscribe failed; the reconnect will not restore it", zap.String("channel", channel), zap.Error(err))
	}
}

// Publish sends payload on channel and returns how many subscribers got it.
// On a cluster the count of a plain (untagged) channel covers only the
// subscribers of the cluster node that took the PUBLISH.
func (c *Client) Publish(ctx context.Context, channel, payload string) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	cmd := c.rc.B().Publish().Channel(channel).Message(payload).Build()
	if c.sharded(channel) {
		cmd = c.rc.B().Spublish().Channel(channel).Message(payload).Build()
	}
	// After Redis restarts, an idle pooled connection learns it is dead
	// only from the command sent on it. Publishing twice is harmless for
	// every signal we send (presence, notifications, kick and release
	// carry their generation), so let rueidis retry on a fresh connection
	// instead of dropping the signal.
	n, err := c.rc.Do(ctx, cmd.ToRetryable()).AsInt64()
	return n, c.wrap("publish", err)
}

func (p *pubSub) stripe(channel string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(channel))
	return &p.stripes[h.Sum32()%uint32(len(p.stripes))]
}

func (p *pubSub) dispatch(m rueidis.PubSubMessage) {
	p.mu.Lock()
	hs := p.handlers
	p.mu.Unlock()
	// Every handler whose prefix matches: on a node of role all both the
	// posts service and the img half's photo follower read the posts
	// channel.
	for _, h := range hs {
		if strings.HasPrefix(m.Channel, h.prefix) {
			h.fn(m.Channel, m.Message)
		}
	}
}

func (p *pubSub) run() {
	defer close(p.done)
	log := p.c.log
	backoff := Backoff{First: 50 * time.Millisecond, Max: 2 * time.Second}
	connected := false
	fails, lastCause := 0, ""
	for {
		// Connections of their own, made anew for every generation: a
		// recycled dedicated connection can keep a dead RESP2 pub/sub half.
		sc, err := p.connect()
		n := 0
		if err == nil {
			n, err = p.subscribeAll(sc)
		}
		if err == nil {
			backoff.Reset()
			fails, lastCause = 0, ""
			if connected {
				log.Info("redis subscriber reconnected; every channel subscribed again",
					zap.Int("channels", n), zap.Int("connections", len(sc.dcs)))
				p.mu.Lock()
				fns := p.onResub
				p.mu.Unlock()
				for _, fn := range fns {
					fn()
				}
			}
			connected = true
			select {
			case err = <-sc.broken:
			case <-p.stop:
			}
		}
		p.mu.Lock()
		if p.sc != nil || p.ready {
			p.sc, p.ready = nil, false
			p.signal()
		}
		p.mu.Unlock()
		if sc != nil {
			sc.close()
		}
		select {
		case <-p.stop:
			return
		default:
		}
		// Once per cause, with a count, not once per attempt: an outage
		// would otherwise log the same line every two seconds per node.
		fails++
		if cause := err.Error(); cause != lastCause {
			log.Warn("redis subscriber connection lost; reconnecting", zap.Error(err), zap.Int("attempts", fails))
			lastCause = cause
		}
		if !backoff.Wait(p.stop) {
			return
		}
	}
}

// subscribeAll publishes sc as the live generation, then subscribes every
// wanted channel. A Subscribe racing with this either lands in the snapshot
// or sees sc and subscribes itself; a second SUBSCRIBE is harmless.
func (p *pubSub) subscribeAll(sc *subConn) (int, error) {
	p.mu.Lock()
	p.sc = sc
	chans := make([]string, 0, len(p.want))
	for ch := range p.want {
		chans = append(chans, ch)
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.c.tmo+time.Duration(len(chans)/1000)*time.Second)
	defer cancel()
	if err := sc.subscribe(ctx, p.c, chans); err != nil {
		return 0, err
	}
	p.mu.Lock()
	if p.sc == sc && !p.ready {
		p.ready = true
		p.signal()
	}
	p.mu.Unlock()
	return len(chans), nil
}

// onSubscription watches for a cluster node dropping a sharded channel
// this node still wants: Redis does that when the channel's slot moves to
// another shard (a migration, or a failover that demotes the node).
func (p *pubSub) onSubscription(sc *subConn, s rueidis.PubSubSubscription) {
	if s.Kind != "sunsubscribe" {
		return
	}
	p.mu.Lock()
	wanted := p.want[s.Channel] > 0 && p.sc == sc
	p.mu.Unlock()
	if wanted {
		p.c.log.Info("a cluster node dropped a sharded channel (its slot moved); subscribing everything again", zap.String("channel", s.Channel))
		sc.fail(errMoved)
	}
}

func (p *pubSub) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}
