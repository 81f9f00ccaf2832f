package roles

import "testing"

// GOGC goes down after a run of quiet intervals and back up at the first
// busy one.
func TestGCTunerLowersGOGCOnlyWhileQuiet(t *testing.T) {
	const live = 64 << 20
	quiet, busy := uint64(live/gcQuietShare/2), uint64(live/gcQuietShare*2)
	tests := []struct {
		name  string
		steps []uint64
		want  []int // GOGC set after each step; 0: unchanged
	}{
		{"busy stays", []uint64{busy, busy, busy, busy}, []int{0, 0, 0, 0}},
		{"quiet lowers after five", []uint64{quiet, quiet, quiet, quiet, quiet, quiet}, []int{0, 0, 0, 0, 25, 0}},
		{"a busy one resets the run", []uint64{quiet, quiet, busy, quiet, quiet, quiet, quiet, quiet}, []int{0, 0, 0, 0, 0, 0, 0, 25}},
		{"busy restores at once", []uint64{quiet, quiet, quiet, quiet, quiet, busy, busy, quiet}, []int{0, 0, 0, 0, 25, 100, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &gcTuner{quietGOGC: 25}
			for i, a := range tt.steps {
				gogc, change := g.step(a, live)
				if !change {
					gogc = 0
				}
				if gogc != tt.want[i] {
					t.Fatalf("step %d: GOGC %d, want %d", i, gogc, tt.want[i])
				}
			}
		})
	}
}

// A small heap (a node starting, or holding few connections) keeps the
// default GOGC however quiet it is.
func TestGCTunerLeavesASmallHeapAlone(t *testing.T) {
	g := &gcTuner{quietGOGC: 25}
	for i := range 20 {
		if _, change := g.step(0, gcQuietFloor-1); change {
			t.Fatalf("step %d: GOGC changed for a heap below the floor", i)
		}
	}
}

// A node whose load comes in bursts a few seconds apart turns quiet again
// and again: the free heap is handed back (a forced collection and the
// return of every free page, which the next burst faults back in) at most
// once per gcFreeEvery, not at every quiet turn.
func TestGCTunerHandsBackAtMostOncePerInterval(t *testing.T) {
	const live = 64 << 20
	quiet, busy := uint64(live/gcQuietShare/2), uint64(live/gcQuietShare*2)
	g := &gcTuner{quietGOGC: 25}
	frees, turns := 0, 0
	const ticks = 600 // ten minutes at one tick a second
	for i := range ticks {
		a := quiet
		if i%6 == 5 {
			a = busy // a burst every six seconds
		}
		gogc, change := g.step(a, live)
		if change && gogc == 25 {
			turns++
		}
		if g.freeDue(live, live) { // the burst left as much free as live
			frees++
		}
	}
	if turns < 50 {
		t.Fatalf("%d quiet turns in %d ticks; the test expects one per burst", turns, ticks)
	}
	if max := ticks/int(gcFreeEvery/gcTuneEvery) + 1; frees > max {
		t.Fatalf("the free heap was handed back %d times in %d ticks, want at most %d", frees, ticks, max)
	}
	if frees == 0 {
		t.Fatal("never handed back")
	}
}
