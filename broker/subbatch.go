package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// The SUBSCRIBE of every login and the UNSUBSCRIBE of every close (which
// rueidis follows with a PING, to tell its reply from the notifications)
// were one command each: under a login storm, hundreds of commands for
// Redis and as many replies for the node to match. The subscribes and
// unsubscribes that sessions ask for while one batch is in flight now go
// together in the next: one SUBSCRIBE naming all their channels, one
// UNSUBSCRIBE (and one PING) naming the others, in one write.
//
// Ordering: the callers hold their channel's stripe lock until their
// operation is answered, so one channel has at most one operation queued;
// should a caller give up waiting (its context ended) and the channel's
// next operation be queued behind its own, a batch ends before the second
// one, so Redis always gets the operations of one channel in the order
// they were asked for. A SUBSCRIBE's caller returns once Redis confirmed
// it: Redis runs a whole SUBSCRIBE before it answers, so every channel of
// the batch is live by then.

type subOp struct {
	ch    string
	unsub bool
	done  chan error // buffered 1
}

// maxSubBatch bounds the channels of one batch.
const maxSubBatch = batch

// exec runs a SUBSCRIBE (unsub false) or UNSUBSCRIBE of ch in the next
// batch and returns its answer, or ctx's error when ctx ends first.
func (sc *subConn) exec(ctx context.Context, c *Client, ch string, unsub bool) error {
	op := sc.enqueue(c, ch, unsub)
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue puts an operation in the next batch and returns it; its answer
// comes on op.done (buffered: nobody need wait for it).
func (sc *subConn) enqueue(c *Client, ch string, unsub bool) *subOp {
	op := &subOp{ch: ch, unsub: unsub, done: make(chan error, 1)}
	sc.qmu.Lock()
	sc.queue = append(sc.queue, op)
	start := !sc.sending
	sc.sending = true
	sc.qmu.Unlock()
	if start {
		go sc.sendLoop(c)
	}
	return op
}

// sendLoop sends batches while operations wait.
func (sc *subConn) sendLoop(c *Client) {
	for {
		sc.qmu.Lock()
		ops := sc.queue
		// One operation per channel in a batch (see above), and at most
		// maxSubBatch.
		n := 0
		seen := make(map[string]struct{}, len(ops))
		for n < len(ops) && n < maxSubBatch {
			if _, dup := seen[ops[n].ch]; dup {
				break
			}
			seen[ops[n].ch] = struct{}{}
			n++
		}
		if n == 0 {
			sc.sending = false
			sc.queue = nil
			sc.qmu.Unlock()
			return
		}
		if n == len(ops) {
			sc.queue = nil
		} else {
			sc.queue = append([]*subOp(nil), ops[n:]...)
		}
		sc.qmu.Unlock()
		sc.sendBatch(c, ops[:n])
	}
}

// sendBatch sends ops, each of its own channel, and answers them.
func (sc *subConn) sendBatch(c *Client, ops []*subOp) {
	ctx := c.dl.get(time.Now())
	type group struct {
		dc      rueidis.DedicatedClient
		sharded bool
		sub     []*subOp
		unsub   []*subOp
	}
	// Plain channels on the plain connection; sharded ones by master and
	// slot (an SSUBSCRIBE names channels of one slot only).
	groups := map[any]*group{}
	var order []*group
	for _, op := range ops {
		var key any = "plain"
		dc := sc.plain
		sharded := c.sharded(op.ch)
		if sharded {
			slot := keySlot(op.ch)
			dc = sc.shards[sc.owner[slot]]
			if dc == nil {
				op.done <- fmt.Errorf("%w: slot %d of %s has no known master", errMoved, slot, op.ch)
				continue
			}
			key = slot
		}
		g := groups[key]
		if g == nil {
			g = &group{dc: dc, sharded: sharded}
			groups[key] = g
			order = append(order, g)
		}
		if op.unsub {
			g.unsub = append(g.unsub, op)
		} else {
			g.sub = append(g.sub, op)
		}
	}
	// The commands of one connection go in one DoMulti (one write); the
	// connections are asked one after the other, as subscribe does.
	byConn := map[rueidis.DedicatedClient][]rueidis.Completed{}
	opsOf := map[rueidis.DedicatedClient][][]*subOp{}
	var conns []rueidis.DedicatedClient
	for _, g := range order {
		if _, ok := byConn[g.dc]; !ok {
			conns = append(conns, g.dc)
			byConn[g.dc] = nil
		}
		if len(g.sub) > 0 {
			chs := channels(g.sub)
			cmd := g.dc.B().Subscribe().Channel(chs...).Build()
			if g.sharded {
				cmd = g.dc.B().Ssubscribe().Channel(chs...).Build()
			}
			byConn[g.dc] = append(byConn[g.dc], cmd)
			opsOf[g.dc] = append(opsOf[g.dc], g.sub)
		}
		if len(g.unsub) > 0 {
			chs := channels(g.unsub)
			cmd := g.dc.B().Unsubscribe().Channel(chs...).Build()
			if g.sharded {
				cmd = g.dc.B().Sunsubscribe().Channel(chs...).Build()
			}
			byConn[g.dc] = append(byConn[g.dc], cmd)
			opsOf[g.dc] = append(opsOf[g.dc], g.unsub)
		}
	}
	for _, dc := range conns {
		cmds := byConn[dc]
		for i, r := range dc.DoMulti(ctx, cmds...) {
			err := r.Error()
			if re, ok := rueidis.IsRedisErr(err); ok {
				if _, moved := re.IsMoved(); moved {
					err = fmt.Errorf("%w: %v", errMoved, err)
				}
			}
			for _, op := range opsOf[dc][i] {
				op.done <- err
			}
		}
	}
}

func channels(ops []*subOp) []string {
	chs := make([]string, len(ops))
	for i, op := range ops {
		chs[i] = op.ch
	}
	return chs
}
