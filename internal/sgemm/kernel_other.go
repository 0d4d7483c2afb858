//go:build purego || !amd64

package sgemm

// kernels lists the microkernels this CPU can run: none without assembly,
// so Gemm uses gonum.
func kernels() []*kernel { return nil }

// transposeRows packs nothing without assembly; the caller packs all.
func transposeRows(dst, src []float32, rows, lds, k int) int { return 0 }

// dealRows packs nothing without assembly; the caller packs all.
func dealRows(dst, src []float32, width, lds, rows, cols, stride int) int { return 0 }
