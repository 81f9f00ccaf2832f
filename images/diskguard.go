package images

import (
	"sync"
	"time"
)

// diskGuard refuses uploads while the store's file system is nearly full,
// before the body is read: a full disk would fail the write after the
// upload's bandwidth and memory were spent, and would also stop the
// writers that share it (logs, the embedded server's snapshot). statfs is
// asked at most once a second, whatever the upload rate.
type diskGuard struct {
	dir      string
	minBytes int64   // <= 0: no byte threshold
	minPct   float64 // <= 0: no percentage threshold
	statfs   func(string) (free, total uint64, err error)
	now      func() time.Time

	mu          sync.Mutex
	at          time.Time
	free, total uint64
	err         error
}

const diskGuardEvery = time.Second

func newDiskGuard(dir string, minBytes int64, minPct float64) *diskGuard {
	if dir == "" || (minBytes <= 0 && minPct <= 0) {
		return nil
	}
	return &diskGuard{dir: dir, minBytes: minBytes, minPct: minPct, statfs: statFS, now: time.Now}
}

// read returns the free and total bytes, at most diskGuardEvery old.
func (g *diskGuard) read() (free, total uint64, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := g.now(); g.at.IsZero() || now.Sub(g.at) >= diskGuardEvery {
		g.free, g.total, g.err = g.statfs(g.dir)
		g.at = now
	}
	return g.free, g.total, g.err
}

// allows reports whether an upload of need bytes (the declared length, or
// 0) leaves the thresholds' free space. A file system that cannot be
// asked lets the upload through: the write then fails on its own.
func (g *diskGuard) allows(need int64) bool {
	if g == nil {
		return true
	}
	free, total, err := g.read()
	if err != nil {
		return true
	}
	left := int64(free) - max(need, 0)
	if g.minBytes > 0 && left < g.minBytes {
		return false
	}
	if g.minPct > 0 && total > 0 && float64(left)*100 < g.minPct*float64(total) {
		return false
	}
	return true
}
