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

// kernel8x32AVX512 is the AVX-512 microkernel (kernel_avx512_amd64.s): an
// 8x32 tile held in sixteen of the 32 ZMM registers.
//
//go:noescape
func kernel8x32AVX512(k int, a, b, c *float32, ldc int, load bool)

var (
	avx2   = asmKernel("avx2-fma-6x16", 6, 16, kernel6x16AVX2)
	avx512 = asmKernel("avx512-8x32", 8, 32, kernel8x32AVX512)
)

// asmKernel wraps an assembly microkernel of an mr x nr tile, checking
// the slices first so that the assembly cannot read or write outside them.
func asmKernel(name string, mr, nr int, tile func(k int, a, b, c *float32, ldc int, load bool)) *kernel {
	return &kernel{name: name, mr: mr, nr: nr, run: func(k int, a, b, c []float32, ldc int, load bool) {
		_, _ = a[mr*k-1], b[nr*k-1]
		_ = c[(mr-1)*ldc+nr-1]
		tile(k, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, load)
	}}
}

// kernels lists the microkernels this CPU can run, fastest first. The
// AVX-512 kernel ran the model's products 1.4-2.1x as fast as the AVX2 one
// on a Zen 5 (bench_test.go; the numbers are in the commit that added it).
// cpu.X86.HasAVX512F is false where the OS does not save the ZMM and mask
// registers.
func kernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512)
	}
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
func transposeBy8(k8, groups int, src *float32, lds int, dst *float32)

//go:noescape
func transpose6x8(k8 int, src *float32, lds int, dst *float32)

//go:noescape
func dealBy8(rows, panels, width int, src *float32, lds int, dst *float32, stride int)

//go:noescape
func deal6(rows, panels int, src *float32, lds int, dst *float32, stride int)

// transposeRows packs rows rows of src into a panel rows wide (or tall):
// dst[q*rows+i] = src[i*lds+q] for i < rows and q below the largest
// multiple of 8 not above k, and returns that multiple. It returns 0,
// packing nothing, when the CPU lacks AVX or there is no assembly for the
// panel (rows neither 6 nor a multiple of 8): the caller packs what is
// left.
func transposeRows(dst, src []float32, rows, lds, k int) int {
	k8 := k / 8
	if k8 == 0 || !cpu.X86.HasAVX || (rows != 6 && rows%8 != 0) {
		return 0
	}
	// The bounds the assembly does not check.
	_, _ = dst[k8*8*rows-1], src[(rows-1)*lds+k8*8-1]
	if rows == 6 {
		transpose6x8(k8, unsafe.SliceData(src), lds, unsafe.SliceData(dst))
	} else {
		transposeBy8(k8, rows/8, unsafe.SliceData(src), lds, unsafe.SliceData(dst))
	}
	return k8 * 8
}

// dealRows deals rows rows of src out to panels width wide:
// dst[r*width+t*stride+j] = src[r*lds+t*width+j] for j < width, r < rows
// and t below cols/width, and returns width times that (the columns it
// packed). It returns 0, packing nothing, when the CPU lacks AVX or there
// is no assembly for the width (neither 6 nor a multiple of 8).
func dealRows(dst, src []float32, width, lds, rows, cols, stride int) int {
	panels := cols / width
	if panels == 0 || rows == 0 || !cpu.X86.HasAVX || (width != 6 && width%8 != 0) {
		return 0
	}
	_, _ = src[(rows-1)*lds+panels*width-1], dst[(panels-1)*stride+rows*width-1]
	if width == 6 {
		deal6(rows, panels, unsafe.SliceData(src), lds, unsafe.SliceData(dst), stride)
	} else {
		dealBy8(rows, panels, width, unsafe.SliceData(src), lds, unsafe.SliceData(dst), stride)
	}
	return panels * width
}
