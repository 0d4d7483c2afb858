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

//go:noescape
func transpose6x8(k8 int, src *float32, lds int, dst *float32)

//go:noescape
func deal16(rows, panels int, src *float32, lds int, dst *float32, stride int)

//go:noescape
func deal6(rows, panels int, src *float32, lds int, dst *float32, stride int)

// packTransposed16 sets dst[q*16+j] = src[j*lds+q] for j < 16 and q below
// the largest multiple of 8 not above k, and returns that multiple, or 0
// when the CPU lacks AVX (the caller packs what is left).
func packTransposed16(dst, src []float32, lds, k int) int {
	return transposeRows(transpose16x8, 16, dst, src, lds, k)
}

// packRows6 is packTransposed16 for 6 rows: dst[q*6+i] = src[i*lds+q].
func packRows6(dst, src []float32, lds, k int) int {
	return transposeRows(transpose6x8, 6, dst, src, lds, k)
}

// dealRows16 sets dst[r*16+t*stride+j] = src[r*lds+t*16+j] for j < 16,
// r < rows and t below cols/16, and returns 16 times that (the columns it
// packed), or 0 when the CPU lacks AVX.
func dealRows16(dst, src []float32, lds, rows, cols, stride int) int {
	return dealRows(deal16, 16, dst, src, lds, rows, cols, stride)
}

// dealRows6 is dealRows16 for panels 6 wide: dst[r*6+t*stride+j] =
// src[r*lds+t*6+j].
func dealRows6(dst, src []float32, lds, rows, cols, stride int) int {
	return dealRows(deal6, 6, dst, src, lds, rows, cols, stride)
}

// transposeRows runs transpose (transpose16x8 or transpose6x8, for rows
// rows of src) over the multiples of 8 of k, after checking the bounds the
// assembly does not.
func transposeRows(transpose func(k8 int, src *float32, lds int, dst *float32), rows int, dst, src []float32, lds, k int) int {
	k8 := k / 8
	if k8 == 0 || !cpu.X86.HasAVX {
		return 0
	}
	_, _ = dst[k8*8*rows-1], src[(rows-1)*lds+k8*8-1]
	transpose(k8, unsafe.SliceData(src), lds, unsafe.SliceData(dst))
	return k8 * 8
}

// dealRows runs deal (deal16 or deal6, for panels width wide) over the
// whole panels of cols columns of rows rows, after checking the bounds the
// assembly does not.
func dealRows(deal func(rows, panels int, src *float32, lds int, dst *float32, stride int), width int, dst, src []float32, lds, rows, cols, stride int) int {
	panels := cols / width
	if panels == 0 || rows == 0 || !cpu.X86.HasAVX {
		return 0
	}
	_, _ = src[(rows-1)*lds+panels*width-1], dst[(panels-1)*stride+rows*width-1]
	deal(rows, panels, unsafe.SliceData(src), lds, unsafe.SliceData(dst), stride)
	return panels * width
}
