package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The connect scenario: a storm of Users bare WebSocket connections (the
// baseline), then a storm of as many that register, then, once they have
// all closed, a storm of as many that log in with the credentials just
// made. Concurrency bounds the dials in flight, as a
// server restart with thousands of apps reconnecting would.
func runConnect(ctx context.Context, r *run) (*Report, error) {
	cfg := r.cfg
	phase := &atomic.Value{}
	phase.Store("register")
	pctx, pstop := context.WithCancel(ctx)
	defer pstop()
	go r.progress(pctx, phase)

	// The baseline, against the same nodes in the same run: connections
	// that only open the WebSocket (TCP and the HTTP upgrade) and close,
	// so the report tells what register and login add to the handshake.
	phase.Store("dial")
	sctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	conns := make([]*websocket.Conn, cfg.Users)
	var ok atomic.Int64
	t0 := r.now()
	parallel(sctx, cfg.Users, cfg.Concurrency, func(i int) {
		c, err := dial(sctx, cfg.URLs[i%len(cfg.URLs)])
		if err != nil {
			r.fail("dial_" + reasonOf(err))
			return
		}
		conns[i] = c
		ok.Add(1)
	})
	dialTook := r.now() - t0
	cancel()
	dials := int(ok.Load())
	closeAll(conns)

	// Each storm is bounded by Duration.
	phase.Store("register")
	sctx, cancel = context.WithTimeout(ctx, cfg.Duration)
	accts := make([]account, cfg.Users)
	ok.Store(0)
	t0 = r.now()
	parallel(sctx, cfg.Users, cfg.Concurrency, func(i int) {
		c, a, err := register(sctx, cfg.URLs[i%len(cfg.URLs)])
		if err != nil {
			r.fail("register_" + reasonOf(err))
			return
		}
		accts[i], conns[i] = a, c
		ok.Add(1)
		r.conns.Add(1)
	})
	regTook := r.now() - t0
	cancel()
	regs := int(ok.Load())
	phase.Store("close")
	closeAll(conns)
	r.conns.Store(0)

	// The login storm, LoginRounds times over the same accounts (each
	// round closes its connections before the next), between two readings
	// of each --server-pid's CPU: what the servers spent on logins alone,
	// registrations left out. The readings wait for the servers to settle
	// after the closes that precede them.
	var loginLat Histogram
	sctx, cancel = context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	ok.Store(0)
	cpu0 := settledCPU(cfg.ServerPIDs)
	cmds0 := loginCommands(ctx, cfg)
	t0 = r.now()
	var loginTook time.Duration
	for round := 0; round < max(cfg.LoginRounds, 1) && sctx.Err() == nil; round++ {
		phase.Store("login")
		t1 := r.now()
		parallel(sctx, cfg.Users, cfg.Concurrency, func(i int) {
			conns[i] = nil
			if accts[i].id == "" {
				return
			}
			s := r.now()
			c, err := login(sctx, cfg.URLs[(i+1)%len(cfg.URLs)], accts[i])
			if err != nil {
				r.fail("login_" + reasonOf(err))
				return
			}
			loginLat.Record(r.now() - s)
			conns[i] = c
			ok.Add(1)
			r.conns.Add(1)
		})
		loginTook += r.now() - t1
		phase.Store("close")
		closeAll(conns)
		r.conns.Store(0)
	}
	logins := int(ok.Load())
	cpu1 := settledCPU(cfg.ServerPIDs)
	cmds1 := loginCommands(ctx, cfg)
	pstop()

	rep := r.report()
	rep.Connections = logins
	rep.Dials = rateOf(dials, dialTook)
	rep.Setup = rateOf(regs, regTook)
	rep.Logins = rateOf(logins, loginTook)
	rep.LoginLatency = latencyOf(&loginLat)
	rep.LoginCPU = phaseCPU(cfg.ServerPIDs, cpu0, cpu1, logins)
	if cmds0 != nil && cmds1 != nil && logins > 0 {
		rep.LoginRedis = map[string]float64{}
		for k, v := range cmds1 {
			if n := v[0] - cmds0[k][0]; n > 0 {
				rep.LoginRedis[k] = n / float64(logins)
			}
		}
	}
	if len(cfg.URLs) > 1 {
		rep.Notes = append(rep.Notes, "each user logs in on another node than the one it registered on")
	}
	return rep, nil
}

// settledCPU reads the CPU time of each of pids once the servers have
// finished with the closes just made: it waits until a 100 ms interval
// adds under 1 ms to their sum (at most 3 s).
func settledCPU(pids []int) cpuMark {
	if len(pids) == 0 {
		return cpuMark{}
	}
	m := markCPU(pids)
	for i := 0; i < 30; i++ {
		time.Sleep(100 * time.Millisecond)
		n := markCPU(pids)
		d := 0.0
		for j := range pids {
			d += n.cpu[j] - m.cpu[j]
		}
		m = n
		if d < 0.001 {
			break
		}
	}
	return m
}

// loginCommands reads Redis' command counts (--redis-addr), or nil.
func loginCommands(ctx context.Context, cfg Config) map[string][2]float64 {
	if cfg.Abuse.RedisAddr == "" {
		return nil
	}
	info, err := redisInfo(ctx, cfg.Abuse.RedisAddr, "commandstats")
	if err != nil {
		return nil
	}
	return commandCalls(info)
}

// phaseCPU is what each of pids spent between a and b, per operation.
func phaseCPU(pids []int, a, b cpuMark, ops int) []PhaseCPU {
	var out []PhaseCPU
	for i, p := range pids {
		if a.cpu[i] < 0 || b.cpu[i] < 0 {
			continue
		}
		c := PhaseCPU{PID: p, Seconds: b.cpu[i] - a.cpu[i]}
		if ops > 0 {
			c.PerOpUs = c.Seconds * 1e6 / float64(ops)
		}
		out = append(out, c)
	}
	return out
}

// The idle scenario: Users connections register and then stay, answering
// the server's pings and nothing else, for Duration; the server's memory is
// read before the first connects and again at the end, so the report gives
// the memory one idle logged-in connection costs.
func runIdle(ctx context.Context, r *run) (*Report, error) {
	cfg := r.cfg
	phase := &atomic.Value{}
	phase.Store("connect")
	pctx, pstop := context.WithCancel(ctx)
	defer pstop()
	go r.progress(pctx, phase)

	samples := sampleServers(ctx, cfg, nil, false)
	conns := make([]*websocket.Conn, cfg.Users)
	readCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	var closing, dropped atomic.Bool
	var readers sync.WaitGroup
	var ok atomic.Int64
	t0 := r.now()
	sctx, cancel := context.WithTimeout(ctx, cfg.Duration+time.Minute)
	parallel(sctx, cfg.Users, cfg.Concurrency, func(i int) {
		c, _, err := register(sctx, cfg.URLs[i%len(cfg.URLs)])
		if err != nil {
			r.fail("register_" + reasonOf(err))
			return
		}
		conns[i] = c
		ok.Add(1)
		r.conns.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			// A read must be pending for the client to answer pings.
			for {
				_, _, err := c.Read(readCtx)
				if err != nil {
					if !closing.Load() {
						r.fail("dropped_" + reasonOf(err))
						dropped.Store(true)
						r.conns.Add(-1)
					}
					return
				}
				r.fail("unexpected_frame")
			}
		}()
	})
	cancel()
	connTook := r.now() - t0
	n := int(ok.Load())

	phase.Store("hold")
	hold := time.NewTimer(cfg.Duration)
	select {
	case <-hold.C:
	case <-ctx.Done():
		hold.Stop()
	}
	samples = sampleServers(ctx, cfg, samples, true)
	held := int(r.conns.Load())

	phase.Store("close")
	closing.Store(true)
	closeAll(conns)
	stopReaders()
	readers.Wait()
	pstop()

	rep := r.report()
	rep.Connections = held
	rep.Setup = rateOf(n, connTook)
	rep.Server = serverFigures(samples, n)
	if dropped.Load() {
		rep.Notes = append(rep.Notes, "some idle connections were dropped by the server (see errors)")
	}
	if len(cfg.Metrics)+len(cfg.ServerPIDs) == 0 {
		rep.Notes = append(rep.Notes, "no --metrics or --server-pid given: server memory not measured")
	}
	return rep, nil
}
