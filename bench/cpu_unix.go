//go:build unix

package bench

import "syscall"

// ownCPU is the CPU time (user + system, seconds) this process has used,
// so the report can say what the load generator itself cost on a machine
// it shares with the servers it measures.
func ownCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
