package bench

import (
	"context"
	"fmt"
	"time"
)

// Run plays cfg's scenario and returns its report. It returns when the run
// is over: after at most Duration of load plus the setup, the drain and
// the closing, each bounded, or earlier when ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A hard ceiling over every phase, so the bench stops by itself
	// whatever the server does.
	ceiling := cfg.Duration + cfg.Drain + 3*time.Minute
	if cfg.Scenario == Abuse {
		// Two chat phases, the attackers' ramp and the seeding.
		ceiling = 2*ceiling + cfg.Abuse.Ramp + 5*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, ceiling)
	defer cancel()
	r := newRun(cfg)
	cpu0 := ownCPU()
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go r.watchdog(wctx)
	var rep *Report
	var err error
	switch cfg.Scenario {
	case Chat:
		rep, err = runChat(ctx, r)
	case Fanout:
		rep, err = runFanout(ctx, r)
	case Connect:
		rep, err = runConnect(ctx, r)
	case Idle:
		rep, err = runIdle(ctx, r)
	case Abuse:
		rep, err = runAbuse(ctx, r)
	default:
		return nil, fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	stopWatchdog()
	if err != nil {
		return nil, err
	}
	rep.StallMs = float64(r.stall.Load()) / 1e6
	rep.BenchCPU = ownCPU() - cpu0
	if rep.StallMs > 500 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the bench was not scheduled for up to %.1f s: the machine was overloaded, and the figures are those of a starved run", rep.StallMs/1000))
	}
	if rep.Server == nil && rep.Abuse == nil && len(cfg.Metrics)+len(cfg.ServerPIDs) > 0 {
		// Scenarios other than idle report the server's figures after the
		// load, without a per-connection split.
		rep.Server = serverFigures(sampleServers(ctx, cfg, nil, true), 0)
	}
	if rep.Connections == 0 {
		return rep, fmt.Errorf("no connection could take part (errors: %v)", rep.Errors)
	}
	return rep, nil
}
