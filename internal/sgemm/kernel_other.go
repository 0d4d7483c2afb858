//go:build purego || !amd64

package sgemm

// kernels lists the microkernels this CPU can run: none without assembly,
// so Gemm uses gonum.
func kernels() []*kernel { return nil }
