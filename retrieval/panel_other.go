//go:build !amd64 || purego

package retrieval

// Without the amd64 kernels every panel goes through the portable code of
// panel.go.
func availableKernels() []panelKernels { return []panelKernels{goKernels} }

func packPanelAsm(dst []float32, src []byte, rowBytes, dim int, half bool) int {
	panic("retrieval: packPanelAsm without its kernel")
}

func panelNormsAsm(panel []float32, dim int, out *[panelKeys]float64) {
	panic("retrieval: panelNormsAsm without its kernel")
}

func scorePanelsAsm(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	panic("retrieval: scorePanelsAsm without its kernel")
}

func scorePanelsAVX512(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	panic("retrieval: scorePanelsAVX512 without its kernel")
}
