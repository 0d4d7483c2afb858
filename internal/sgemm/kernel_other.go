//go:build purego || !amd64

package sgemm

// kernels lists the microkernels this CPU can run: none without assembly,
// so Gemm uses gonum.
func kernels() []*kernel { return nil }

// packTransposed16 packs nothing without assembly; the caller packs all.
func packTransposed16(dst, src []float32, lds, k int) int { return 0 }

// dealRows16 packs nothing without assembly; the caller packs all.
func dealRows16(dst, src []float32, lds, rows, cols, stride int) int { return 0 }

// packRows6 packs nothing without assembly; the caller packs all.
func packRows6(dst, src []float32, lds, k int) int { return 0 }

// dealRows6 packs nothing without assembly; the caller packs all.
func dealRows6(dst, src []float32, lds, rows, cols, stride int) int { return 0 }
