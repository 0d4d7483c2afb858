//go:build !purego

package retrieval

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The kernels of panel_amd64.s (see there for what each computes).

//go:noescape
func packF16(k8 int, src *byte, lds int, dst *float32)

//go:noescape
func packF32(k8 int, src *byte, lds int, dst *float32)

//go:noescape
func panelNorms(k int, panel *float32, out *[panelKeys]float64)

//go:noescape
func scorePanels(k int, q *float32, keys *float32, panels int, thr *[panelQueries]float32, c *float32, ldc int) uint64

// haveAsm says whether this CPU runs the kernels (AVX2, FMA and F16C); a
// variable so that tests can take the portable path too.
var haveAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

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

func scorePanelsAsm(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	_, _ = q[dim*panelQueries-1], keys[panels*dim*panelKeys-1]
	_ = c[(panelQueries-1)*ldc+panels*panelKeys-1]
	return scorePanels(dim, unsafe.SliceData(q), unsafe.SliceData(keys), panels, thr, unsafe.SliceData(c), ldc)
}
