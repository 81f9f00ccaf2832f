package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"

	"github.com/redis/rueidis"
)

// errMoved says a sharded channel's slot is not (or no longer) where this
// generation of subscriber connections thinks it is.
var errMoved = errors.New("the slot of a sharded channel has moved")

// batch bounds the channels of one SUBSCRIBE and the commands of one
// round trip.
const batch = 1000

// subConn is one generation of subscriber connections: a dedicated
// connection for the plain channels and, on a cluster, one per master for
// the sharded channels of the slots it owns (the plain channels then ride
// on one of them, picked at random so that nodes spread over the masters).
// The first failure of any of them ends the generation.
type subConn struct {
	plain  rueidis.DedicatedClient
	shards map[string]rueidis.DedicatedClient // master address -> connection
	owner  []string                           // slot -> master address

	clients []rueidis.Client
	dcs     []rueidis.DedicatedClient
	broken  chan error // the first failure; buffered 1
	wg      sync.WaitGroup

	// The operations of sessions waiting for the next batch
	// (subbatch.go), and whether a sendLoop runs.
	qmu     sync.Mutex
	queue   []*subOp
	sending bool
}

func (sc *subConn) fail(err error) {
	select {
	case sc.broken <- err:
	default:
	}
}

// connect builds a generation: on a cluster it first asks which master
// owns which slot.
func (p *pubSub) connect() (*subConn, error) {
	sc := &subConn{broken: make(chan error, 1)}
	hooks := rueidis.PubSubHooks{
		OnMessage:      p.dispatch,
		OnSubscription: func(s rueidis.PubSubSubscription) { p.onSubscription(sc, s) },
	}
	select {
	case <-p.c.connected: // c.opt and c.cluster are set
	default:
		return nil, errNotConnected
	}
	if !p.c.cluster.Load() {
		dc, err := sc.dial(p.c.opt, hooks)
		if err != nil {
			return nil, err
		}
		sc.plain = dc
		return sc, nil
	}
	owner, masters, err := p.c.slotOwners(context.Background())
	if err != nil {
		return nil, err
	}
	sc.owner = owner
	sc.shards = make(map[string]rueidis.DedicatedClient, len(masters))
	for _, addr := range masters {
		opt := p.c.opt
		opt.InitAddress = []string{addr}
		opt.ForceSingleClient = true
		dc, err := sc.dial(opt, hooks)
		if err != nil {
			sc.close()
			return nil, fmt.Errorf("connect to cluster master %s: %w", addr, err)
		}
		sc.shards[addr] = dc
	}
	sc.plain = sc.shards[masters[rand.IntN(len(masters))]]
	return sc, nil
}

func (sc *subConn) dial(opt rueidis.ClientOption, hooks rueidis.PubSubHooks) (rueidis.DedicatedClient, error) {
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, err
	}
	dc, _ := rc.Dedicate()
	sc.clients = append(sc.clients, rc)
	sc.dcs = append(sc.dcs, dc)
	wait := dc.SetPubSubHooks(hooks)
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		err, ok := <-wait
		if !ok || err == nil {
			err = errors.New("subscriber connection closed")
		}
		sc.fail(err)
	}()
	return dc, nil
}

func (sc *subConn) close() {
	for _, dc := range sc.dcs {
		dc.Close()
	}
	for _, rc := range sc.clients {
		rc.Close()
	}
	sc.wg.Wait()
}

// subscribe subscribes chans: plain ones on the plain connection, sharded
// ones on the master owning their slot, in batches of one round trip. With
// no plain channel at all it subscribes a placeholder, which proves the
// connection works (SUBSCRIBE needs at least one channel).
func (sc *subConn) subscribe(ctx context.Context, c *Client, chans []string) error {
	var plain []string
	bySlot := map[string]map[uint16][]string{}
	for _, ch := range chans {
		if !c.sharded(ch) {
			plain = append(plain, ch)
			continue
		}
		slot := keySlot(ch)
		addr := sc.owner[slot]
		if sc.shards[addr] == nil {
			return fmt.Errorf("%w: slot %d of %s has no known master", errMoved, slot, ch)
		}
		if bySlot[addr] == nil {
			bySlot[addr] = map[uint16][]string{}
		}
		bySlot[addr][slot] = append(bySlot[addr][slot], ch)
	}
	if len(chans) == 0 {
		plain = []string{c.key("ping")}
	}
	var cmds rueidis.Commands
	for len(plain) > 0 {
		n := min(len(plain), batch)
		cmds = append(cmds, sc.plain.B().Subscribe().Channel(plain[:n]...).Build())
		plain = plain[n:]
	}
	if err := doAll(ctx, sc.plain, cmds); err != nil {
		return err
	}
	for addr, slots := range bySlot {
		dc := sc.shards[addr]
		cmds = cmds[:0]
		for _, chs := range slots {
			// One SSUBSCRIBE names channels of one slot only.
			for len(chs) > 0 {
				n := min(len(chs), batch)
				cmds = append(cmds, dc.B().Ssubscribe().Channel(chs[:n]...).Build())
				chs = chs[n:]
			}
		}
		if err := doAll(ctx, dc, cmds); err != nil {
			return fmt.Errorf("on cluster master %s: %w", addr, err)
		}
	}
	return nil
}

func doAll(ctx context.Context, dc rueidis.DedicatedClient, cmds rueidis.Commands) error {
	for len(cmds) > 0 {
		n := min(len(cmds), batch)
		for _, r := range dc.DoMulti(ctx, cmds[:n]...) {
			if err := r.Error(); err != nil {
				if re, ok := rueidis.IsRedisErr(err); ok {
					if _, moved := re.IsMoved(); moved {
						return fmt.Errorf("%w: %v", errMoved, err)
					}
				}
				return err
			}
		}
		cmds = cmds[n:]
	}
	return nil
}

func (sc *subConn) unsubscribe(ctx context.Context, c *Client, ch string) error {
	return sc.exec(ctx, c, ch, true)
}

// slotOwners asks the cluster which master serves each slot.
func (c *Client) slotOwners(ctx context.Context) (owner, masters []string, err error) {
	ranges, err := c.do(ctx, c.rc.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, nil, fmt.Errorf("read the cluster's slots: %w", err)
	}
	owner = make([]string, 16384)
	seen := map[string]bool{}
	for _, r := range ranges {
		v, err := r.ToArray()
		if err != nil || len(v) < 3 {
			return nil, nil, fmt.Errorf("unexpected CLUSTER SLOTS entry %v", r)
		}
		lo, err1 := v[0].AsInt64()
		hi, err2 := v[1].AsInt64()
		node, err3 := v[2].ToArray()
		if err := errors.Join(err1, err2, err3); err != nil || len(node) < 2 || lo < 0 || hi >= 16384 {
			return nil, nil, fmt.Errorf("unexpected CLUSTER SLOTS entry %v", r)
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		if host == "" || host == "?" {
			return nil, nil, fmt.Errorf("the master of slots %d-%d announces no address", lo, hi)
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		for s := lo; s <= hi; s++ {
			owner[s] = addr
		}
		if !seen[addr] {
			seen[addr] = true
			masters = append(masters, addr)
		}
	}
	if len(masters) == 0 {
		return nil, nil, errors.New("the cluster has no master serving slots")
	}
	sort.Strings(masters)
	return owner, masters, nil
}
