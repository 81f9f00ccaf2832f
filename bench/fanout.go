package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// The fanout scenario (PROTOCOL.md section 4): Users subscribers, spread
// across the nodes, subscribe to everything; Publishers publish posts at
// PostRate, at most Window unanswered each. Every subscriber must get every
// accepted post exactly once, in order per publisher. A post's opaque body
// carries the run's tag, the publisher, its sequence number and the send
// time: "r<tag> p<publisher> s<seq> t<ns> <padding>", so posts left in Redis
// by earlier runs (catch-up) are told apart and ignored.

type fanCounters struct {
	outstanding atomic.Int64
	accepted    atomic.Uint64
	unique      atomic.Uint64
}

type publisher struct {
	r   *run
	fc  *fanCounters
	idx int
	ws  *websocket.Conn
	out outStream

	mu      sync.Mutex
	pending []pending
	dead    bool
	window  chan struct{}
}

type subscriber struct {
	r   *run
	fc  *fanCounters
	ws  *websocket.Conn
	tag []byte
	in  []inStream // one per publisher
}

func runFanout(ctx context.Context, r *run) (*Report, error) {
	cfg := r.cfg
	fc := &fanCounters{}
	phase := &atomic.Value{}
	phase.Store("setup")
	pctx, pstop := context.WithCancel(ctx)
	defer pstop()
	go r.progress(pctx, phase)

	var tb [4]byte
	rand.Read(tb[:])
	tag := hex.EncodeToString(tb[:])
	marker := []byte(`"body":"r` + tag + ` `)

	setupStart := r.now()
	subs := make([]*subscriber, cfg.Users)
	parallel(ctx, cfg.Users, cfg.Concurrency, func(i int) {
		ws, _, err := register(ctx, cfg.URLs[i%len(cfg.URLs)])
		if err != nil {
			r.fail("register_" + reasonOf(err))
			return
		}
		// Everything: both channel lists empty, any features.
		if _, err := request(ctx, ws, []byte(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0}`), "subscribe_ack"); err != nil {
			r.fail("subscribe_" + reasonOf(err))
			ws.CloseNow()
			return
		}
		r.conns.Add(1)
		subs[i] = &subscriber{r: r, fc: fc, ws: ws, tag: marker, in: make([]inStream, cfg.Publishers)}
	})
	pubs := make([]*publisher, cfg.Publishers)
	parallel(ctx, cfg.Publishers, cfg.Concurrency, func(i int) {
		ws, _, err := register(ctx, cfg.URLs[i%len(cfg.URLs)])
		if err != nil {
			r.fail("register_" + reasonOf(err))
			return
		}
		r.conns.Add(1)
		p := &publisher{r: r, fc: fc, idx: i, ws: ws, window: make(chan struct{}, cfg.Window)}
		for range cfg.Window {
			p.window <- struct{}{}
		}
		pubs[i] = p
	})
	setupTook := r.now() - setupStart
	var live []*subscriber
	var setupConns []*websocket.Conn
	for _, s := range subs {
		if s != nil {
			live = append(live, s)
			setupConns = append(setupConns, s.ws)
		}
	}
	npubs := 0
	for _, p := range pubs {
		if p != nil {
			npubs++
			setupConns = append(setupConns, p.ws)
		}
	}
	if len(live) == 0 || npubs == 0 {
		// Nothing to measure; the errors say why (a node without posts
		// refuses subscribe with "unavailable").
		closeAll(setupConns)
		return r.report(), nil
	}

	loadStart := r.now()
	r.measureFrom = loadStart + cfg.Warmup
	r.measureTo = loadStart + cfg.Duration
	sendCtx, stopSending := context.WithDeadline(ctx, r.start.Add(r.measureTo))
	defer stopSending()
	readCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	var closing atomic.Bool
	var readers, senders sync.WaitGroup
	pad := padding(cfg.Size - 40)
	for _, s := range live {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(&closing)
		}()
	}
	for _, p := range pubs {
		if p == nil {
			continue
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.read(readCtx, &closing)
		}()
		senders.Add(1)
		go func() {
			defer senders.Done()
			p.publish(sendCtx, tag, pad)
		}()
	}
	window := r.sendPhase(phase, &senders)

	phase.Store("drain")
	drainStart := r.now()
	want := func() uint64 { return fc.accepted.Load() * uint64(len(live)) }
	tick := time.NewTicker(5 * time.Millisecond)
	for fc.outstanding.Load() > 0 || fc.unique.Load() < want() {
		if r.now()-drainStart > cfg.Drain || ctx.Err() != nil {
			r.fail("drain_timeout")
			break
		}
		<-tick.C
	}
	tick.Stop()
	drainTook := r.now() - drainStart

	closing.Store(true)
	var conns []*websocket.Conn
	for _, s := range live {
		conns = append(conns, s.ws)
	}
	for _, p := range pubs {
		if p != nil {
			conns = append(conns, p.ws)
		}
	}
	closeAll(conns)
	stopReaders()
	readers.Wait()
	pstop()

	var t Tally
	for _, p := range pubs {
		if p == nil {
			continue
		}
		for j, s := range live {
			t.add(&p.out, &s.in[p.idx], j == 0)
		}
	}
	rep := r.report()
	rep.Connections = len(conns)
	rep.Setup = rateOf(len(conns), setupTook)
	rep.Window = seconds(window)
	rep.Drain = seconds(drainTook)
	rep.Messages = &t
	rep.DeliveredPerSec = float64(r.inWindow.Load()) / window.Seconds()
	rep.WindowCPU = r.windowCPU(window)
	rep.Notes = append(rep.Notes, "messages.sent/accepted count posts; delivered/lost count (post, subscriber) pairs")
	return rep, nil
}

func (p *publisher) publish(sendCtx context.Context, tag, pad string) {
	cfg := p.r.cfg
	var interval time.Duration
	if cfg.PostRate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.PostRate)
	}
	next := p.r.now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var f []byte
	for cfg.Count == 0 || int(p.out.sent) < cfg.Count {
		if wait := next - p.r.now(); interval > 0 && wait > 0 {
			timer.Reset(wait)
			select {
			case <-sendCtx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case <-sendCtx.Done():
			return
		case <-p.window:
		}
		p.out.sent++
		pd := pending{id: p.out.sent, seq: p.out.sent, at: p.r.now()}
		f = append(f[:0], `{"cmd":"publish","items":[{"body":"r`...)
		f = append(f, tag...)
		f = append(f, " p"...)
		f = strconv.AppendInt(f, int64(p.idx), 10)
		f = append(f, " s"...)
		f = strconv.AppendUint(f, pd.seq, 10)
		f = append(f, " t"...)
		f = strconv.AppendInt(f, int64(pd.at), 10)
		f = append(f, ' ')
		f = append(f, pad...)
		f = append(f, `","to":[[[0,0,0]],[[0,0,0]]],"features":1,"range_values":[]}]}`...)
		p.mu.Lock()
		if p.dead {
			p.mu.Unlock()
			return
		}
		p.pending = append(p.pending, pd)
		p.fc.outstanding.Add(1)
		p.mu.Unlock()
		wctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		err := p.ws.Write(wctx, websocket.MessageText, f)
		cancel()
		if err != nil {
			p.r.fail("write_" + reasonOf(err))
			return
		}
		next += interval
	}
}

func (p *publisher) read(ctx context.Context, closing *atomic.Bool) {
	defer func() {
		p.mu.Lock()
		p.dead = true
		n := len(p.pending)
		p.pending = nil
		p.mu.Unlock()
		p.fc.outstanding.Add(-int64(n))
	}()
	for {
		_, b, err := p.ws.Read(ctx)
		if err != nil {
			if !closing.Load() {
				p.r.fail("connection_" + reasonOf(err))
			}
			return
		}
		req, err := wire.ParseRequest(b)
		if err != nil {
			p.r.fail("unreadable_frame")
			continue
		}
		if req.Cmd != "publish_ack" {
			if req.Cmd != "post" {
				p.r.fail("unexpected_" + req.Cmd)
			}
			continue
		}
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.mu.Unlock()
			p.r.fail("unexpected_reply")
			continue
		}
		pd := p.pending[0]
		p.pending = p.pending[1:]
		p.mu.Unlock()
		p.r.settle(req, pd, &p.out, &p.fc.accepted)
		p.window <- struct{}{}
		p.fc.outstanding.Add(-1)
	}
}

func (s *subscriber) read(closing *atomic.Bool) {
	// One buffer per subscriber, reused for every frame, and reads
	// without a cancellable context (readFrame): this loop runs once per
	// delivery, and the bench shares the machine with the servers it
	// measures. It ends when the connection is closed (closeAll).
	b := make([]byte, 0, 1024)
	for {
		var err error
		b, err = readFrame(context.Background(), s.ws, b)
		if err != nil {
			if !closing.Load() {
				s.r.fail("connection_" + reasonOf(err))
			}
			return
		}
		// The hot path of the whole scenario: find this run's bodies
		// without decoding the frame (a live post frame holds one).
		found := false
		for rest := b; ; {
			i := bytes.Index(rest, s.tag)
			if i < 0 {
				break
			}
			rest = rest[i+len(s.tag):]
			pub, seq, ts, ok := parseBody(rest)
			if !ok || pub >= len(s.in) {
				s.r.fail("unreadable_post_body")
				continue
			}
			found = true
			if s.in[pub].receive(seq) {
				s.r.delivery(time.Duration(ts))
				s.fc.unique.Add(1)
			}
		}
		if found || bytes.Contains(b, []byte(`"cmd":"post"`)) {
			continue // our posts, or earlier runs' catch-up
		}
		req, err := wire.ParseRequest(b)
		if err != nil {
			s.r.fail("unreadable_frame")
		} else {
			s.r.fail("unexpected_" + req.Cmd)
		}
	}
}

// parseBody reads "p<pub> s<seq> t<ts>" at the start of b.
func parseBody(b []byte) (pub int, seq uint64, ts int64, ok bool) {
	num := func(prefix byte) (uint64, bool) {
		if len(b) < 2 || b[0] != prefix {
			return 0, false
		}
		j := 1
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		v, err := strconv.ParseUint(string(b[1:j]), 10, 64)
		b = b[j:]
		if len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		}
		return v, err == nil
	}
	p, ok1 := num('p')
	s, ok2 := num('s')
	t, ok3 := num('t')
	return int(p), s, int64(t), ok1 && ok2 && ok3 && s > 0
}
