//go:build !purego

package sgemm

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// kernel6x16AVX2 is the AVX2+FMA microkernel (kernel_amd64.s): a 6x16 tile
// held in twelve YMM registers.
//
//go:noescape
func kernel6x16AVX2(k int, a, b, c *float32, ldc int, load bool)

var avx2 = &kernel{name: "avx2-fma-6x16", mr: 6, nr: 16, run: func(k int, a, b, c []float32, ldc int, load bool) {
	// The slices are checked here so that the assembly cannot read or
	// write outside them.
	_, _ = a[6*k-1], b[16*k-1]
	_ = c[5*ldc+15]
	kernel6x16AVX2(k, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, load)
}}

// kernels lists the microkernels this CPU can run, fastest first.
func kernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2)
	}
	return ks
}

func init() {
	if ks := kernels(); len(ks) > 0 {
		best = ks[0]
	}
}
