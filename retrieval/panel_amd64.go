//go:build !purego

package retrieval

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The kernels of panel_amd64.s and panel_avx512_amd64.s (see there for
// what each computes).

//go:noescape
func packF16(k8 int, src *byte, lds int, dst *float32)

//go:noescape
func packF32(k8 int, src *byte, lds int, dst *float32)

//go:noescape
func panelNorms(k int, panel *float32, out *[panelKeys]float64)

//go:noescape
func scorePanels(k int, q *float32, keys *float32, panels int, thr *[panelQueries]float32, c *float32, ldc int) uint64

//go:noescape
func scorePanelPairs(k int, q *float32, keys *float32, pairs int, thr *[panelQueries]float32, c *float32, ldc int) uint64

// availableKernels lists the kernels this CPU runs, fastest first: the
// AVX-512 score kernel (AVX-512F, with the AVX2 packing and its tail)
// needs what the AVX2 ones need too. cpu.X86.HasAVX512F is false where
// the OS does not save the ZMM and mask registers.
func availableKernels() []panelKernels {
	avx2 := cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	var ks []panelKernels
	if avx2 && cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernels)
	}
	if avx2 {
		ks = append(ks, avx2Kernels)
	}
	return append(ks, goKernels)
}

// packPanelAsm packs the first 8·⌊dim/8⌋ columns of 16 full rows (src,
// rowBytes apart, float16 or float32) into the key panel dst and returns
// how many columns it packed.
func packPanelAsm(dst []float32, src []byte, rowBytes, dim int, half bool) int {
	k8 := dim / 8
	if k8 == 0 {
		return 0
	}
	size := 4
	if half {
		size = 2
	}
	// The slices are checked here so that the assembly cannot read or
	// write outside them.
	_, _ = src[15*rowBytes+k8*8*size-1], dst[k8*8*panelKeys-1]
	if half {
		packF16(k8, unsafe.SliceData(src), rowBytes, unsafe.SliceData(dst))
	} else {
		packF32(k8, unsafe.SliceData(src), rowBytes, unsafe.SliceData(dst))
	}
	return k8 * 8
}

func panelNormsAsm(panel []float32, dim int, out *[panelKeys]float64) {
	_ = panel[dim*panelKeys-1]
	panelNorms(dim, unsafe.SliceData(panel), out)
}

// checkTile panics unless q, keys and c hold what a score kernel reads
// and writes for panels key panels, so that the assembly cannot go
// outside them.
func checkTile(dim int, q, keys []float32, panels int, c []float32, ldc int) {
	_, _ = q[dim*panelQueries-1], keys[panels*dim*panelKeys-1]
	_ = c[(panelQueries-1)*ldc+panels*panelKeys-1]
}

func scorePanelsAsm(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	checkTile(dim, q, keys, panels, c, ldc)
	return scorePanels(dim, unsafe.SliceData(q), unsafe.SliceData(keys), panels, thr, unsafe.SliceData(c), ldc)
}

// scorePanelsAVX512 is scorePanelsAsm with the AVX-512 kernel, which
// takes the key panels two at a time; an odd last one goes to the AVX2
// kernel (the same FMA chains, so the same scores).
func scorePanelsAVX512(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	checkTile(dim, q, keys, panels, c, ldc)
	var mask uint64
	if pairs := panels / 2; pairs > 0 {
		mask = scorePanelPairs(dim, unsafe.SliceData(q), unsafe.SliceData(keys), pairs, thr, unsafe.SliceData(c), ldc)
	}
	if last := panels - 1; panels%2 == 1 {
		mask |= scorePanels(dim, unsafe.SliceData(q), &keys[last*dim*panelKeys], 1, thr, &c[last*panelKeys], ldc) << last
	}
	return mask
}
