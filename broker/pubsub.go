package broker

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// pubSub keeps one dedicated subscriber connection and the set of channels
// this node wants. After the connection breaks it reconnects and subscribes
// every wanted channel again, then tells the features (which fetch what they
// may have missed meanwhile).
type pubSub struct {
	c *Client

	mu       sync.Mutex
	dc       rueidis.DedicatedClient // nil while disconnected
	want     map[string]int          // channel -> references
	handlers []handler
	onResub  []func()
	ready    bool          // every wanted channel subscribed on the current connection
	readyCh  chan struct{} // closed when ready; replaced when the connection drops

	// stripes serialise SUBSCRIBE/UNSUBSCRIBE of one channel so that a late
	// UNSUBSCRIBE never overtakes a newer SUBSCRIBE.
	stripes [64]sync.Mutex

	stop chan struct{}
	done chan struct{}
}

type handler struct {
	prefix string
	fn     func(channel, payload string)
}

func newPubSub(c *Client) *pubSub {
	p := &pubSub{c: c, want: map[string]int{}, readyCh: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// Handle routes messages on channels starting with prefix to fn. fn runs on
// the connection's reader: it must not block.
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
	return c.ps.dc != nil && c.ps.ready
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
	dc, ready := p.dc, p.readyCh
	p.mu.Unlock()
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var err error
	switch {
	case dc == nil:
		// The next subscribeAll snapshot includes channel.
		select {
		case <-ready:
		case <-ctx.Done():
			err = fmt.Errorf("subscribe: %w: subscriber connection is down", ErrUnavailable)
		}
	case first:
		err = c.wrap("subscribe", dc.Do(ctx, dc.B().Subscribe().Channel(channel).Build()).Error())
	}
	if err != nil {
		p.mu.Lock()
		if p.want[channel]--; p.want[channel] <= 0 {
			delete(p.want, channel)
		}
		p.mu.Unlock()
	}
	return err
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
	dc := p.dc
	p.mu.Unlock()
	if n > 0 || dc == nil {
		return
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := dc.Do(ctx, dc.B().Unsubscribe().Channel(channel).Build()).Error(); err != nil {
		c.log.Debug("unsubscribe failed; the reconnect will not restore it", zap.String("channel", channel), zap.Error(err))
	}
}

// Publish sends payload on channel and returns how many subscribers got it.
func (c *Client) Publish(ctx context.Context, channel, payload string) (int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n, err := c.rc.Do(ctx, c.rc.B().Publish().Channel(channel).Message(payload).Build()).AsInt64()
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
	for _, h := range hs {
		if strings.HasPrefix(m.Channel, h.prefix) {
			h.fn(m.Channel, m.Message)
			return
		}
	}
}

func (p *pubSub) run() {
	defer close(p.done)
	log := p.c.log
	backoff := 50 * time.Millisecond
	connected := false
	for {
		// A client of its own, made anew for every connection: a recycled
		// dedicated connection can keep a dead RESP2 pub/sub half.
		var err error
		var wait <-chan error
		rc, err := rueidis.NewClient(p.c.opt)
		cancel := func() {}
		if err == nil {
			var dc rueidis.DedicatedClient
			dc, cancel = rc.Dedicate()
			wait = dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: p.dispatch})
			err = p.subscribeAll(dc)
		}
		if err == nil {
			backoff = 50 * time.Millisecond
			if connected {
				log.Info("redis subscriber reconnected; every channel subscribed again")
				p.mu.Lock()
				fns := p.onResub
				p.mu.Unlock()
				for _, fn := range fns {
					fn()
				}
			}
			connected = true
			select {
			case err = <-wait:
			case <-p.stop:
			}
		}
		p.mu.Lock()
		p.dc = nil
		if p.ready {
			p.ready, p.readyCh = false, make(chan struct{})
		}
		p.mu.Unlock()
		cancel()
		if rc != nil {
			rc.Close()
		}
		select {
		case <-p.stop:
			return
		default:
		}
		log.Warn("redis subscriber connection lost; reconnecting", zap.Error(err), zap.Duration("retry_in", backoff))
		select {
		case <-time.After(backoff):
		case <-p.stop:
			return
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// subscribeAll publishes dc as the live connection, then subscribes every
// wanted channel. A Subscribe racing with this either lands in the snapshot
// or sees dc and subscribes itself; a second SUBSCRIBE is harmless.
func (p *pubSub) subscribeAll(dc rueidis.DedicatedClient) error {
	p.mu.Lock()
	p.dc = dc
	chans := make([]string, 0, len(p.want))
	for ch := range p.want {
		chans = append(chans, ch)
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.c.tmo+time.Duration(len(chans)/1000)*time.Second)
	defer cancel()
	// A PING first proves the connection works even with nothing to
	// subscribe (SUBSCRIBE needs at least one channel).
	if len(chans) == 0 {
		if err := dc.Do(ctx, dc.B().Subscribe().Channel(p.c.key("ping")).Build()).Error(); err != nil {
			return err
		}
	}
	for len(chans) > 0 {
		n := min(len(chans), 1000)
		if err := dc.Do(ctx, dc.B().Subscribe().Channel(chans[:n]...).Build()).Error(); err != nil {
			return err
		}
		chans = chans[n:]
	}
	p.mu.Lock()
	if p.dc == dc && !p.ready {
		p.ready = true
		close(p.readyCh)
	}
	p.mu.Unlock()
	return nil
}

func (p *pubSub) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}
