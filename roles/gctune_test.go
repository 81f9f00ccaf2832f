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
