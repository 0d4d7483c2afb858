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

//go:noescape
func transpose16x8(k8 int, src *float32, lds int, dst *float32)

// packTransposed16 sets dst[q*16+j] = src[j*lds+q] for j < 16 and q below
// the largest multiple of 8 not above k, and returns that multiple, or 0
// when the CPU lacks AVX (the caller packs what is left).
func packTransposed16(dst, src []float32, lds, k int) int {
	k8 := k / 8
	if k8 == 0 || !cpu.X86.HasAVX {
		return 0
	}
	_, _ = dst[k8*8*16-1], src[15*lds+k8*8-1]
	transpose16x8(k8, unsafe.SliceData(src), lds, unsafe.SliceData(dst))
	return k8 * 8
}

//go:noescape
func deal16(panels int, src, dst *float32, stride int)

// dealRow16 sets dst[t*stride+j] = src[t*16+j] for j < 16 and t below
// len(src)/16, and returns 16 times that (the columns it packed), or 0 when
// the CPU lacks AVX.
func dealRow16(dst, src []float32, stride int) int {
	panels := len(src) / 16
	if panels == 0 || !cpu.X86.HasAVX {
		return 0
	}
	_, _ = src[panels*16-1], dst[(panels-1)*stride+15]
	deal16(panels, unsafe.SliceData(src), unsafe.SliceData(dst), stride)
	return panels * 16
}

//go:noescape
func transpose6x8(k8 int, src *float32, lds int, dst *float32)

// packRows6 sets dst[q*6+i] = src[i*lds+q] for i < 6 and q below the
// largest multiple of 8 not above k, and returns that multiple, or 0 when
// the CPU lacks AVX (the caller packs what is left).
func packRows6(dst, src []float32, lds, k int) int {
	k8 := k / 8
	if k8 == 0 || !cpu.X86.HasAVX {
		return 0
	}
	_, _ = dst[k8*8*6-1], src[5*lds+k8*8-1]
	transpose6x8(k8, unsafe.SliceData(src), lds, unsafe.SliceData(dst))
	return k8 * 8
}

//go:noescape
func deal6(panels int, src, dst *float32, stride int)

// dealRow6 sets dst[t*stride+j] = src[t*6+j] for j < 6 and t below
// len(src)/6, and returns 6 times that (the rows it packed), or 0 when the
// CPU lacks AVX.
func dealRow6(dst, src []float32, stride int) int {
	panels := len(src) / 6
	if panels == 0 || !cpu.X86.HasAVX {
		return 0
	}
	_, _ = src[panels*6-1], dst[(panels-1)*stride+5]
	deal6(panels, unsafe.SliceData(src), unsafe.SliceData(dst), stride)
	return panels * 6
}
