package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// errNotConnected answers every command until the first connection to
// Redis has been made; wrap turns it into ErrUnavailable.
var errNotConnected = errors.New("not connected to redis yet")

// noSlot is rueidis' marker of a command built by a non-cluster builder.
const noSlot = 1 << 15

// lazyClient is the shared client of a node that started while Redis was
// unreachable: commands fail fast (unavailable) until the background
// connect has made the real client, then go to it. Open's dial loop sets
// real once; nothing is swapped after that (rueidis reconnects by itself).
type lazyClient struct {
	real atomic.Pointer[rueidis.Client]
	b    rueidis.Builder // a plain builder for commands built before real is set
}

func newLazy() *lazyClient {
	// A single client that never dials lends its plain builder; rueidis
	// gives builders only through a client.
	rc, _ := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{"127.0.0.1:0"},
		ForceSingleClient: true,
		DisableCache:      true,
		DialCtxFn: func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
			return nil, errNotConnected
		},
	})
	l := &lazyClient{}
	if rc != nil {
		l.b = rc.B()
		rc.Close()
	}
	return l
}

func (l *lazyClient) get() rueidis.Client {
	if p := l.real.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *lazyClient) set(rc rueidis.Client) { l.real.Store(&rc) }

// usable tells whether cmd can go to rc: a command built by the plain
// builder before the connection was made must not reach a cluster client.
func usable(rc rueidis.Client, cmd rueidis.Completed) bool {
	return rc != nil && !(rc.Mode() == rueidis.ClientModeCluster && cmd.Slot()&noSlot != 0)
}

func (l *lazyClient) B() rueidis.Builder {
	if rc := l.get(); rc != nil {
		return rc.B()
	}
	return l.b
}

func (l *lazyClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if rc := l.get(); usable(rc, cmd) {
		return rc.Do(ctx, cmd)
	}
	return rueidis.NewErrorResult(errNotConnected)
}

func (l *lazyClient) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	rc := l.get()
	ok := rc != nil
	for _, cmd := range multi {
		ok = ok && usable(rc, cmd)
	}
	if ok {
		return rc.DoMulti(ctx, multi...)
	}
	rs := make([]rueidis.RedisResult, len(multi))
	for i := range rs {
		rs[i] = rueidis.NewErrorResult(errNotConnected)
	}
	return rs
}

func (l *lazyClient) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	if rc := l.get(); usable(rc, subscribe) {
		return rc.Receive(ctx, subscribe, fn)
	}
	return errNotConnected
}

func (l *lazyClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	if rc := l.get(); rc != nil {
		return rc.DoCache(ctx, cmd, ttl)
	}
	return rueidis.NewErrorResult(errNotConnected)
}

func (l *lazyClient) DoMultiCache(ctx context.Context, multi ...rueidis.CacheableTTL) []rueidis.RedisResult {
	if rc := l.get(); rc != nil {
		return rc.DoMultiCache(ctx, multi...)
	}
	rs := make([]rueidis.RedisResult, len(multi))
	for i := range rs {
		rs[i] = rueidis.NewErrorResult(errNotConnected)
	}
	return rs
}

func (l *lazyClient) DoStream(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResultStream {
	if rc := l.get(); usable(rc, cmd) {
		return rc.DoStream(ctx, cmd)
	}
	return rueidis.NewErrorResultStream(errNotConnected)
}

func (l *lazyClient) DoMultiStream(ctx context.Context, multi ...rueidis.Completed) rueidis.MultiRedisResultStream {
	if rc := l.get(); rc != nil {
		return rc.DoMultiStream(ctx, multi...)
	}
	return rueidis.NewErrorResultStream(errNotConnected)
}

func (l *lazyClient) Dedicated(fn func(rueidis.DedicatedClient) error) error {
	if rc := l.get(); rc != nil {
		return rc.Dedicated(fn)
	}
	return errNotConnected
}

// Dedicate is not used on the shared client (pub/sub makes clients of
// its own); before the connection it has nothing to lend.
func (l *lazyClient) Dedicate() (rueidis.DedicatedClient, func()) {
	if rc := l.get(); rc != nil {
		return rc.Dedicate()
	}
	return nil, func() {}
}

func (l *lazyClient) Nodes() map[string]rueidis.Client {
	if rc := l.get(); rc != nil {
		return rc.Nodes()
	}
	return map[string]rueidis.Client{}
}

func (l *lazyClient) Mode() rueidis.ClientMode {
	if rc := l.get(); rc != nil {
		return rc.Mode()
	}
	return rueidis.ClientModeStandalone
}

func (l *lazyClient) Close() {
	if rc := l.get(); rc != nil {
		rc.Close()
	}
}
