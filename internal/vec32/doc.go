// Package vec32 holds the vectorised float32 passes of the CPU engine
// (package nn), in Go assembly for AVX2 on amd64: AdamW, GELU and its
// derivative, LayerNorm's normalisation and backward pass, the loss's
// combination of rows, and the float64-accumulated reductions over rows
// (Sum, Dot, SumSqDev) and over columns (AddTo, Accumulate) that
// LayerNorm, the loss and the bias gradients use, and LayerNorm's backward
// pass over a block of rows in one sweep (LayerNormBackwardRows).
//
// Every function is defined by a Go loop that rounds each operation
// explicitly, and a reduction by a fixed order of additions (reduce.go).
// The assembly is an exact copy of that loop for the longest prefix of
// whole 8-float vectors, the Go loop doing the rest, so results are the
// same bits with and without it: where the CPU lacks AVX2, on other
// architectures and under the purego build tag only the Go loops run, and
// the tests compare the two paths bit for bit. AdamW alone leaves its Go
// loop to the caller (nn.AdamW): it returns how many elements it did.
//
// No pass but GELU fuses a multiply and an add: Go does not fuse where a
// product is converted explicitly (float32(a*b)), and an exact float32 FMA
// in pure Go (internal/exactfma) costs far more than the rounding saves.
// GELU's polynomials need the FMA's accuracy and speed: its Go definition
// calls exactfma (about 100 ns an element), and its assembly needs FMA
// besides AVX2.
package vec32

// UseAssembly turns the assembly loops on or off and returns whether they
// were on; turning them on where this build or CPU has none leaves them
// off. It is for tests that compare the two paths across packages (the
// CPU engine's bits must not depend on it) and for benchmarks; it must not
// be called while a pass runs.
func UseAssembly(on bool) (was bool) {
	was, useAsm = useAsm, on && haveAsm
	return was
}
