package roles

import (
	"context"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"

	"go.uber.org/zap"
)

// The garbage collector's headroom while the node is quiet (docs/benchmarks.md,
// "Idle memory with pings"). Go lets the heap grow to twice what was live
// at the last collection (GOGC=100) before it collects again, and keeps
// the pages it grew into. A node that took a burst of logins and then
// holds its connections idle keeps that headroom, about as much memory
// again as the connections themselves, for as long as it stays quiet:
// little allocates, so little is collected, and the runtime's scavenger
// returns only what lies above its goal, which follows GOGC.
//
// So while the node allocates little against its live heap, GOGC is
// lowered to Config.QuietGCPercent, and once, when it turns quiet with
// more heap kept beyond its live objects than an eighth of them, the memory
// the last burst left free is handed back (debug.FreeOSMemory: one
// collection and the return of the free pages, on a node that is doing
// nothing else; never on a busy node, and at most once per gcFreeEvery,
// so that bursts a few seconds apart do not make it periodic). The runtime's
// scavenger alone would wait for two more collections, and a quiet node
// collects only every two minutes. The lower GOGC then keeps the heap
// from growing back past a quarter above what is live. The first interval
// that allocates more puts GOGC back, so a busy node collects exactly as
// often as before; a quiet one collects rarely whatever GOGC is, so the
// lower setting costs it almost nothing. GOGC or GOMEMLIMIT set in the
// environment (the operator's own choice) turns the tuner off.

const (
	gcTuneEvery = time.Second
	// An interval is quiet when it allocated less than 1/gcQuietShare of
	// the live heap (1.5 % a second: a collection at GOGC=25 every 16 s
	// at most).
	gcQuietShare = 64
	gcQuietTicks = 5 // quiet intervals in a row before GOGC is lowered
	gcBusyGOGC   = 100
	// gcQuietFloor: below this live heap GOGC's headroom is too small to
	// be worth a collection, and a node that is starting, or holds few
	// connections, keeps the default even when quiet (so a short burst
	// on it never runs at the lower GOGC).
	gcQuietFloor = 16 << 20
	// gcFreeEvery: the free heap is handed back at most this often. A
	// node whose bursts come a few seconds apart turns quiet after each;
	// a forced collection and the return of every free page, which the
	// next burst faults back in, at each of them is work for nothing.
	gcFreeEvery = time.Minute
)

// gcTuner decides; runGCTuner reads the runtime and applies.
type gcTuner struct {
	quietGOGC int
	quietRun  int // quiet intervals in a row
	lowered   bool
	turned    bool // the last step lowered GOGC
	ticks     int  // steps so far
	freedAt   int  // the step of the last hand-back (0: none yet)
}

// step takes one interval's allocation and the live heap, and returns the
// GOGC to set, if it changes.
func (t *gcTuner) step(allocated, live uint64) (gogc int, change bool) {
	t.ticks++
	t.turned = false
	if allocated*gcQuietShare < live && live >= gcQuietFloor {
		t.quietRun++
	} else {
		t.quietRun = 0
	}
	switch {
	case !t.lowered && t.quietRun >= gcQuietTicks:
		t.lowered, t.turned = true, true
		return t.quietGOGC, true
	case t.lowered && t.quietRun == 0:
		t.lowered = false
		return gcBusyGOGC, true
	}
	return 0, false
}

// freeDue tells whether the step just taken, which turned the node quiet,
// is to hand back the free heap (free bytes beyond the live ones): when
// it is more than an eighth of the live heap, and not within gcFreeEvery
// of the last hand-back.
func (t *gcTuner) freeDue(free, live uint64) bool {
	if !t.turned || free <= live/8 {
		return false
	}
	if t.freedAt > 0 && t.ticks-t.freedAt < int(gcFreeEvery/gcTuneEvery) {
		return false
	}
	t.freedAt = t.ticks
	return true
}

// runGCTuner runs until ctx ends, then leaves GOGC as it found it.
func runGCTuner(ctx context.Context, quietGOGC int, log *zap.Logger) {
	if quietGOGC <= 0 || quietGOGC >= gcBusyGOGC || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	t := &gcTuner{quietGOGC: quietGOGC}
	samples := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	rtmetrics.Read(samples)
	last := samples[0].Value.Uint64()
	tick := time.NewTicker(gcTuneEvery)
	defer tick.Stop()
	defer func() {
		if t.lowered {
			debug.SetGCPercent(gcBusyGOGC)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rtmetrics.Read(samples)
		alloc, live := samples[0].Value.Uint64(), samples[1].Value.Uint64()
		gogc, change := t.step(alloc-last, live)
		last = alloc
		if !change {
			continue
		}
		debug.SetGCPercent(gogc)
		// What the heap holds beyond the live objects: free pages, and
		// the garbage and gaps a collection would free.
		free := samples[2].Value.Uint64() + samples[3].Value.Uint64() + samples[4].Value.Uint64() - min(live, samples[3].Value.Uint64())
		if t.freeDue(free, live) {
			start := time.Now()
			debug.FreeOSMemory()
			log.Debug("quiet: free heap returned", zap.Uint64("free", free), zap.Uint64("live_heap", live), zap.Duration("took", time.Since(start)))
		}
		log.Debug("GOGC set", zap.Int("gogc", gogc), zap.Uint64("live_heap", live))
	}
}
