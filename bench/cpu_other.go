//go:build !unix

package bench

func ownCPU() float64 { return 0 }
